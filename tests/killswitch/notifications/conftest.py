"""Delivery tests use the dashboard's real Celery worker and its webhook endpoints."""

from __future__ import annotations

from tests.killswitch.web.conftest import celery_worker, notify_endpoints  # noqa: F401 - fixtures
