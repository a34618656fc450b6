"""What is still open in a scope: the picture every resume answer carries (and the Risk
page shows) so a person resumes knowing what trading meets.

Sources register themselves (the brokers app: working orders, positions, broker runs;
the breakers when they exist); this module adds the trading processes and whether they
acknowledged the last change. Each source returns JSON-ready data for a scope, or
raises; a failing source reads as `{"error": ...}`, never as "nothing open".
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from killswitch import domain as L
from killswitch.runtime import clock

logger = logging.getLogger("killswitch")

Source = Callable[[L.ScopeRef], Any]
_sources: dict[str, Source] = {}


def register(name: str, source: Source) -> None:
    """Add (or replace, by name) a source of open items, e.g. "runs", "positions"."""
    _sources[name] = source


def processes(ref: L.ScopeRef) -> dict[str, Any]:
    """Connected trading processes in scope, and those that have not acknowledged the
    latest state version."""
    from killswitch.models import TradingClient

    from .scopes import state_version

    version = state_version()
    rows = TradingClient.objects.filter(disconnected_at__isnull=True,
                                        last_seen_at__gte=clock.now() - timedelta(seconds=10))
    if ref.kind == L.ACCOUNT:
        rows = rows.filter(account=ref.key)
    elif ref.kind == L.STRATEGY:
        rows = rows.filter(strategy=ref.key)
    listed = [{"name": r.name, "client_id": r.client_id, "account": r.account, "strategy": r.strategy,
               "level_seen": r.level_seen, "applied_version": r.applied_version,
               "acknowledged": (r.applied_version or 0) >= version} for r in rows.order_by("name")[:200]]
    return {"connected": len(listed), "not_acknowledged": [p for p in listed if not p["acknowledged"]],
            "processes": listed, "version": version}


def open_in_scope(ref: L.ScopeRef) -> dict[str, Any]:
    """Everything still open in `ref`, by source name."""
    found: dict[str, Any] = {"processes": _safely("processes", processes, ref)}
    for name, source in _sources.items():
        found[name] = _safely(name, source, ref)
    return found


def _safely(name: str, source: Source, ref: L.ScopeRef) -> Any:
    try:
        return source(ref)
    except Exception as exc:  # unknown is reported as unknown, never as nothing open
        logger.warning("open items source %s failed for %s", name, ref, exc_info=True)
        return {"error": f"{name} could not be read: {exc}"}
