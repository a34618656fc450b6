"""The service's notion of now. Tests and the property-based model advance it to
cross cooldowns without sleeping; production never touches the offset."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

_offset = timedelta(0)


def now() -> datetime:
    return timezone.now() + _offset


def advance(**delta: float) -> None:
    global _offset
    _offset += timedelta(**delta)


def reset() -> None:
    global _offset
    _offset = timedelta(0)
