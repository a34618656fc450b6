"""Broker routes under /api/ (GET /api/risk/runs, /api/risk/runs/<id>)."""

from __future__ import annotations

from .apis import urlpatterns

__all__ = ["urlpatterns"]
