"""The broker runs panel of the Risk page (registered in apps.py): the latest runs with
each order's outcome."""

from __future__ import annotations

from typing import Any

from killswitch import domain as L

from .models import BrokerRun
from .selectors import instrument_of, plain

RECENT_RUNS = 5


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def recent_runs() -> list[dict[str, Any]]:
    """The latest broker runs with their per-order actions, JSON-ready."""
    runs = list(BrokerRun.objects.order_by("-created_at", "-pk").prefetch_related("actions")[:RECENT_RUNS])
    return [{
        "id": r.pk, "event_seq": r.event_seq, "kind": r.kind,
        "scope": L.label(r.scope_kind, r.scope_key) if r.scope_kind in L.SCOPE_KINDS else r.scope_kind,
        "level": r.level, "account": r.account, "broker": r.broker, "state": r.state, "error": r.error,
        "notes": r.notes, "created_at": _iso(r.created_at), "finished_at": _iso(r.finished_at),
        "actions": [
            {"action": a.action, "account": a.account, "broker_order_id": a.broker_order_id,
             # The page shows `symbol`: the whole instrument, so an option never reads as its stock.
             "symbol": instrument_of(a).label or a.symbol, "instrument": instrument_of(a).as_dict(),
             "side": a.side, "quantity": plain(a.quantity),
             "filled_quantity": plain(a.filled_quantity), "outcome": a.outcome, "detail": a.detail}
            for a in sorted(r.actions.all(), key=lambda a: a.pk)
        ],
    } for r in runs]
