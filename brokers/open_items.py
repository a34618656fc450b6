"""What is still open at the brokers in a scope, for every resume answer and the Risk
page (killswitch.selectors.open_items; registered in apps.py): working orders,
positions, and the broker runs not completed or failed.

Paper accounts are read from the paper broker's tables, the same reads a run makes.
Other brokers are not connected to from a web process (an IB session needs a client id
of its own; the runs' and the sweep's are held by the worker and the sweep loop): they
are listed as "not read here", never as empty.
"""

from __future__ import annotations

from typing import Any

from killswitch import domain as L
from killswitch.models import Scope

from .adapters import BrokerError, broker_of
from .adapters.base import BrokerScope
from .adapters.paper import PaperAdapter
from .config import PAPER
from .models import TERMINAL_STATES, BrokerRun, RunState
from .runs.cancelling import is_own_closing_order
from .runs.planning import accounts_in_scope
from .selectors import plain


def _where(account: str, ref: L.ScopeRef) -> BrokerScope:
    return BrokerScope(account=account, strategy=ref.key if ref.kind == L.STRATEGY else None,
                       symbol=ref.key.upper() if ref.kind == L.SYMBOL else None)


def orders_and_positions(ref: L.ScopeRef) -> dict[str, Any]:
    orders: list[dict[str, Any]] = []
    positions: list[dict[str, Any]] = []
    not_read: list[str] = []
    adapter = PaperAdapter()
    for account in accounts_in_scope(ref):
        try:
            kind = broker_of(account)
        except BrokerError as exc:
            not_read.append(f"{account}: {exc.message}")
            continue
        if kind != PAPER:
            not_read.append(f"{account} ({kind}): not read from here; the next run reads it at the broker")
            continue
        where = _where(account, ref)
        try:
            working = adapter.working_orders(where)
            # Positions are net per account and symbol: a strategy scope shows its account's.
            held = adapter.positions(BrokerScope(account=account, symbol=where.symbol))
        except BrokerError as exc:
            not_read.append(f"{account}: {exc.message}")
            continue
        orders += [{"account": account, "order_id": o.order_id, "symbol": o.symbol, "side": o.side,
                    "remaining": plain(o.remaining), "strategy": o.strategy}
                   for o in working if not is_own_closing_order(o)]
        positions += [{"account": account, "symbol": p.symbol, "quantity": plain(p.quantity)} for p in held]
    return {"working_orders": orders, "positions": positions, "not_read": not_read}


def runs(ref: L.ScopeRef) -> dict[str, Any]:
    """Runs of the scope since the activation in force: unfinished ones, and failed ones
    whose account no later run of the scope completed."""
    row = Scope.objects.filter(kind=ref.kind, key=ref.key).first()
    rows = BrokerRun.objects.filter(scope_kind=ref.kind, scope_key=ref.key)
    if row is not None:
        rows = rows.filter(created_at__gte=row.since)
    ordered = list(rows.order_by("created_at", "pk"))
    unfinished = [r for r in ordered if r.state not in TERMINAL_STATES]
    failed = [r for r in ordered if r.state == RunState.FAILED
              and not any(later.account == r.account and later.state == RunState.COMPLETED
                          and later.created_at > r.created_at for later in ordered)]

    def shown(r: BrokerRun) -> dict[str, Any]:
        return {"id": r.pk, "account": r.account, "level": r.level, "state": r.state, "error": r.error[:300]}

    return {"unfinished": [shown(r) for r in unfinished], "failed": [shown(r) for r in failed]}
