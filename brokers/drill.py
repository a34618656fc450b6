"""The broker side of `manage.py killswitch drill` (registered in apps.py): paper broker
accounts, and MetaTrader 5 demo accounts named with --account (drill_mt5.py); never
both in one drill, never any other broker. The drill account is seeded with long and
short positions and working limit orders; afterwards, the runs and what is left are
read from the broker.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction

from killswitch.drill.hooks import BrokerObservation
from killswitch.drill.plan import DrillRefused

from .config import MT5, PAPER, brokers_config
from .models import (
    PAPER_WORKING,
    TERMINAL_STATES,
    BrokerAction,
    BrokerRun,
    PaperOrder,
    PaperPosition,
)
from .selectors import plain

# What the drill puts on each account: prices are only set where none exists (setting a
# price fills other accounts' resting limits that it crosses); limits sit 20% away
# from the market so no order fills during the drill.
PRICES = {"AAPL": "190.00", "MSFT": "410.00", "TSLA": "240.00", "SPY": "520.00", "NVDA": "900.00"}
POSITIONS = (("AAPL", "100"), ("TSLA", "-50"), ("MSFT", "30"), ("SPY", "-20"))
ORDERS = (
    ("AAPL", "BUY", "50", "momentum"),
    ("TSLA", "SELL", "25", "mean_reversion"),
    ("NVDA", "BUY", "10", "momentum"),
    ("MSFT", "SELL", "15", "momentum"),
    ("SPY", "BUY", "40", "index_arb"),
    ("AAPL", "SELL", "20", "index_arb"),
)


class PaperDrill:
    """killswitch.drill.hooks.BrokerDrill for the paper broker."""

    def check_accounts(self, accounts: list[str] | None, *, default: str) -> tuple[list[str], bool]:
        configured = brokers_config().accounts
        dedicated = not accounts
        if dedicated:
            if not getattr(settings, "PAPER_ONLY", True):
                raise DrillRefused(
                    "PAPER_ONLY is false on this installation: name the paper accounts to drill "
                    f"with --account (e.g. --account {default}); the drill never picks one itself here.")
            accounts = [default]
            if configured.get(default) != PAPER:
                raise DrillRefused(
                    f"The drill account {default} is not a paper broker account: add it to "
                    "brokers.paper.accounts in risk_limits.yaml (and restart the worker), or name "
                    "paper accounts with --account.")
        accounts = list(dict.fromkeys(a.strip() for a in accounts))
        for account in accounts:
            kind = configured.get(account)
            if kind is None:
                raise DrillRefused(f"Account {account!r} is not configured under brokers: in risk_limits.yaml; "
                                   "the drill runs on paper broker accounts only.")
            if kind != PAPER:
                raise DrillRefused(f"Account {account!r} is at the {kind!r} broker, not the paper broker (nor an MT5 "
                                   "demo account); the drill never touches it.")
        return accounts, dedicated

    def seed(self, accounts: list[str], *, reset: bool, stamp: str) -> dict[str, list[str]]:
        from .adapters import paper

        placed: dict[str, list[str]] = {}
        with transaction.atomic():
            for symbol, price in PRICES.items():
                if paper.last_price(symbol) is None:
                    paper.set_price(symbol, price)
            for account in accounts:
                paper.ensure_account(account)
                if reset:
                    for order in PaperOrder.objects.filter(account__code=account, status__in=PAPER_WORKING):
                        paper.cancel(order.pk)
                    PaperPosition.objects.filter(account__code=account).exclude(quantity=0).update(quantity=0)
                held = set(PaperPosition.objects.filter(account__code=account).exclude(quantity=0)
                           .values_list("symbol", flat=True))
                for symbol, qty in POSITIONS:
                    if symbol not in held:
                        paper.set_position(account=account, symbol=symbol, quantity=qty,
                                           avg_cost=paper.last_price(symbol))
                placed[account] = []
                for n, (symbol, side, qty, strategy) in enumerate(ORDERS, 1):
                    price = paper.last_price(symbol)
                    factor = Decimal("0.8") if side == "BUY" else Decimal("1.2")
                    order = paper.place_order(account=account, symbol=symbol, side=side, quantity=qty,
                                              limit_price=(price * factor).quantize(Decimal("0.01")),
                                              strategy=strategy, client_order_id=f"drill-{stamp}-{account}-{n}")
                    placed[account].append(str(order.pk))
        return placed

    def observe(self, accounts: list[str], *, event_seqs: list[int],
                placed: dict[str, list[str]]) -> BrokerObservation:
        runs = list(BrokerRun.objects.filter(kind="switch", event_seq__in=event_seqs).order_by("id"))
        seeded_ids = [int(pk) for ids in placed.values() for pk in ids]
        seeded = {o.pk: o for o in PaperOrder.objects.filter(pk__in=seeded_ids).select_related("account")}
        actions = list(BrokerAction.objects.filter(run__in=runs).order_by("run_id", "id"))
        acted = {a.broker_order_id: a for a in actions if a.action == "cancel"}
        orders: list[dict[str, Any]] = []
        for pk, order in sorted(seeded.items()):
            action = acted.get(str(pk))
            orders.append({
                "account": order.account.code, "order_id": str(pk), "kind": "order", "symbol": order.symbol,
                "strategy": order.strategy, "side": order.side, "quantity": plain(order.quantity),
                "action": action.action if action else "", "outcome": action.outcome if action else "not acted on",
                "broker_status": order.status, "attempts": action.attempts if action else 0,
                "detail": action.detail if action else "",
            })
        for action in actions:
            if action.action == "cancel" and action.broker_order_id.isdigit() and int(action.broker_order_id) in seeded:
                continue
            orders.append({
                "account": action.account, "order_id": " ".join(filter(None, [action.broker_order_id,
                                                                              action.client_ref])),
                "kind": "position" if action.action == "close" else "order", "symbol": action.symbol,
                "strategy": action.strategy, "side": action.side, "quantity": plain(action.quantity),
                "action": action.action, "outcome": action.outcome, "broker_status": "",
                "attempts": action.attempts, "detail": action.detail,
            })
        positions = PaperPosition.objects.filter(account__code__in=accounts).exclude(quantity=0).select_related("account")
        return BrokerObservation(
            runs=[{"id": r.pk, "account": r.account, "level": r.level, "state": r.state, "attempts": r.attempts,
                   "event_seq": r.event_seq, "created_at": r.created_at, "finished_at": r.finished_at,
                   "notes": r.notes, "error": r.error} for r in runs],
            finished=len(runs) == len(accounts) and all(r.state in TERMINAL_STATES for r in runs),
            orders_left=PaperOrder.objects.filter(account__code__in=accounts, status__in=PAPER_WORKING).count(),
            positions_left=[f"{p.account.code} {p.symbol} {plain(p.quantity)}" for p in positions],
            seeded_orders=len(seeded_ids), orders=orders)

    def settings(self) -> dict[str, Any]:
        return {"verify_rounds": brokers_config().runs.verify_rounds}


class BrokerDrills:
    """killswitch.drill.hooks.BrokerDrill: the paper broker's drill, or the MT5 drill for
    MT5 demo accounts named with --account; one broker per drill (each reads its own
    broker afterwards)."""

    def __init__(self) -> None:
        from .drill_mt5 import MT5Drill

        self.paper, self.mt5 = PaperDrill(), MT5Drill()
        self._kind = PAPER

    def _steps(self) -> PaperDrill | Any:
        return self.mt5 if self._kind == MT5 else self.paper

    def check_accounts(self, accounts: list[str] | None, *, default: str) -> tuple[list[str], bool]:
        configured = brokers_config().accounts
        named = list(dict.fromkeys(a.strip() for a in accounts or []))
        kinds = {configured.get(a) for a in named}
        if MT5 not in kinds:
            self._kind = PAPER
            return self.paper.check_accounts(accounts, default=default)
        for account in named:
            kind = configured.get(account)
            if kind is None:
                raise DrillRefused(f"Account {account!r} is not configured under brokers: in risk_limits.yaml; the "
                                   "drill runs on paper broker accounts and MT5 demo accounts only.")
            if kind != MT5:
                raise DrillRefused(f"Account {account!r} is at the {kind!r} broker: drill MT5 accounts on their own "
                                   "(each drill reads one broker's accounts afterwards).")
        self.mt5.check_accounts(named)
        self._kind = MT5
        return named, False

    def seed(self, accounts: list[str], *, reset: bool, stamp: str) -> dict[str, list[str]]:
        if self._kind == MT5:
            return self.mt5.seed(accounts, stamp=stamp)
        return self.paper.seed(accounts, reset=reset, stamp=stamp)

    def observe(self, accounts: list[str], *, event_seqs: list[int],
                placed: dict[str, list[str]]) -> BrokerObservation:
        return self._steps().observe(accounts, event_seqs=event_seqs, placed=placed)

    def settings(self) -> dict[str, Any]:
        return {**self.paper.settings(), "broker": self._kind}
