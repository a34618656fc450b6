"""Reads of the audit log: filtered, newest first, keyset-paginated."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from killswitch import domain as L
from killswitch.models import Event

MAX_PAGE = 500


def history(*, scope: L.ScopeRef | None = None, action: str | None = None, actor: str | None = None,
            source: str | None = None, since: datetime | None = None, until: datetime | None = None,
            before_seq: int | None = None, limit: int = 50) -> list[Event]:
    """Events newest first. Keyset pagination on `seq` (pass the last seq seen as
    `before_seq`), so page 10,000 costs what page 1 costs."""
    qs: QuerySet[Event] = Event.objects.all()
    if scope is not None:
        qs = qs.filter(scope_kind=scope.kind, scope_key=scope.key)
    if action:
        qs = qs.filter(action=action)
    if actor:
        qs = qs.filter(actor=actor)
    if source:
        qs = qs.filter(source=source)
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    if before_seq is not None:
        qs = qs.filter(seq__lt=before_seq)
    return list(qs.order_by("-seq")[: max(1, min(limit, MAX_PAGE))])


def event_as_dict(event: Event) -> dict[str, Any]:
    entry = event.as_log_entry()
    entry.update({
        "timestamp": event.created_at,
        "requested_level": event.requested_level,
        "client_address": event.client_address,
        "hash": event.hash,
    })
    return entry
