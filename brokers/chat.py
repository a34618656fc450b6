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
from .open_items import orders_and_positions
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
    """What stays open before a resume, as lines: the same read every resume answer carries
    (open_items.orders_and_positions)."""
    found = orders_and_positions(scope)
    lines = [f"{p['account']} {p['symbol']}: position {'short' if p['quantity'].startswith('-') else 'long'} "
             f"{p['quantity'].lstrip('-')}" for p in found["positions"]]
    lines += [f"{o['account']} {o['symbol']}: working order {o['order_id']} {o['side']} {o['remaining']}"
              + (f" ({o['strategy']})" if o["strategy"] else "") for o in found["working_orders"]]
    return lines + found["not_read"]
