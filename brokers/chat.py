"""What the Telegram bot shows of the broker side (registered in apps.py): the latest
runs, what a kill in a scope would close, and what stays open before a resume.

Reads only, one text line each. Paper accounts are read from the paper broker's
tables, the same reads a run makes. Other brokers are not connected to from the bot:
an IB session needs a client id of its own and the runs' and the sweep's are held by
the worker and the sweep loop, so the line says the run reads them at the broker.
"""

from __future__ import annotations

from killswitch import domain as L

from . import selectors
from .adapters import BrokerError, broker_of
from .adapters.base import BrokerScope
from .adapters.paper import PaperAdapter
from .config import PAPER
from .runs.cancelling import is_own_closing_order
from .runs.planning import accounts_in_scope
from .selectors import plain


def _scope_at(account: str, scope: L.ScopeRef) -> BrokerScope:
    return BrokerScope(account=account, strategy=scope.key if scope.kind == L.STRATEGY else None,
                       symbol=scope.key.upper() if scope.kind == L.SYMBOL else None)


def _paper_accounts(scope: L.ScopeRef, lines: list[str]) -> list[str]:
    """The paper accounts in scope; a line for each account that cannot be read here."""
    paper = []
    for account in accounts_in_scope(scope):
        try:
            kind = broker_of(account)
        except BrokerError as exc:
            lines.append(f"{account}: {exc.message}")
            continue
        if kind == PAPER:
            paper.append(account)
        else:
            lines.append(f"{account} ({kind}): read at the broker when the run starts; not shown here")
    return paper


def recent_runs(limit: int) -> list[str]:
    lines = []
    for run in selectors.runs(limit=limit):
        actions = list(run.actions.all())
        line = (f"run {run.pk} (#{run.event_seq or '-'}) {run.kind} {run.level} {run.scope_label} "
                f"{run.account} [{run.broker}]: {run.state}, {len(actions)} action(s), "
                f"{run.created_at:%Y-%m-%d %H:%M:%S} UTC")
        if run.error:
            line += f"; error: {run.error[:150]}"
        lines.append(line)
    return lines


def kill_would_close(scope: L.ScopeRef) -> list[str]:
    if scope.kind == L.STRATEGY:
        return ["nothing is closed for a strategy scope: brokers keep one net position per account and "
                "symbol, so its positions are left for manual management (its working orders are cancelled)"]
    lines: list[str] = []
    adapter = PaperAdapter()
    for account in _paper_accounts(scope, lines):
        try:
            positions = adapter.positions(_scope_at(account, scope))
        except BrokerError as exc:
            lines.append(f"{account}: {exc.message}")
            continue
        for p in positions:
            side = "long" if p.quantity > 0 else "short"
            lines.append(f"{account} {p.symbol}: {side} {plain(abs(p.quantity))}, closed at market")
    return lines


def still_open(scope: L.ScopeRef) -> list[str]:
    lines: list[str] = []
    adapter = PaperAdapter()
    for account in _paper_accounts(scope, lines):
        where = _scope_at(account, scope)
        try:
            # Positions are net per account and symbol: a strategy scope shows its account's.
            positions = adapter.positions(BrokerScope(account=account, symbol=where.symbol))
            orders = adapter.working_orders(where)
        except BrokerError as exc:
            lines.append(f"{account}: {exc.message}")
            continue
        for p in positions:
            lines.append(f"{account} {p.symbol}: position {'long' if p.quantity > 0 else 'short'} "
                         f"{plain(abs(p.quantity))}")
        for o in orders:
            if not is_own_closing_order(o):
                lines.append(f"{account} {o.symbol}: working order {o.order_id} {o.side} {plain(o.remaining)}"
                             + (f" ({o.strategy})" if o.strategy else ""))
    return lines
