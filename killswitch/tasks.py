"""Celery tasks of the killswitch app (found by autodiscover_tasks)."""

from __future__ import annotations

from .notifications.tasks import deliver  # noqa: F401
