"""The drill on MetaTrader 5 demo accounts (brokers/drill.py hands MT5 accounts here).

Safety: an MT5 account is drilled only when it is named with `--account`, PAPER_ONLY
is off (the worker could not reach the terminal otherwise), and the terminal reports
it as a demo account (`account_info().trade_mode`): contest and real accounts are
refused before anything is sent, and checked again right before seeding.

Seeding trades at the terminal, as a strategy would: for each of the terminal's
`drill_symbols`, a position of the symbol's minimum volume (buy and sell in turn) and
two pending limit orders 20% away from the market (none fills during the drill),
tagged with the drill's strategies (magic numbers from `strategy_magics`, else 0) and
a `drill-<stamp>` comment. What is left afterwards is read from the terminal itself.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from killswitch.drill.hooks import BrokerObservation
from killswitch.drill.plan import STRATEGIES, DrillError, DrillRefused

from .adapters.base import BrokerError, BrokerScope
from .adapters.mt5 import MT5Adapter
from .adapters.mt5.retcodes import SUCCESS, retcode
from .adapters.mt5.session import ReplyLost
from .adapters.mt5.trading import (
    ORDER_FILLING_RETURN,
    ORDER_TIME_GTC,
    TRADE_ACTION_DEAL,
    closing_fillings,
)
from .config import brokers_config
from .models import TERMINAL_STATES, BrokerAction, BrokerRun
from .selectors import plain

TRADE_ACTION_PENDING = 5
ORDER_TYPE_BUY, ORDER_TYPE_SELL, ORDER_TYPE_BUY_LIMIT, ORDER_TYPE_SELL_LIMIT = 0, 1, 2, 3
ORDER_STATES = {0: "started", 1: "placed", 2: "canceled", 3: "partial", 4: "filled", 5: "rejected", 6: "expired"}
DEMO = "demo"


class MT5Drill:
    """The broker side of the drill for MT5 demo accounts (one open session per account)."""

    def __init__(self) -> None:
        self._sessions: dict[str, MT5Adapter] = {}

    def _session(self, account: str) -> MT5Adapter:
        if account not in self._sessions:
            self._sessions[account] = MT5Adapter(brokers_config().mt5_terminal_for(account), account)
        return self._sessions[account]

    def _drop(self, account: str) -> None:
        session = self._sessions.pop(account, None)
        if session is not None:
            session.close()

    def _demo_only(self, account: str) -> MT5Adapter:
        """The account's session once the terminal says it is a demo account. Raises
        DrillRefused for any other, DrillError when the terminal cannot be asked."""
        session = self._session(account)
        try:
            mode = session.account_mode()
        except BrokerError as exc:
            self._drop(account)
            raise DrillError(f"MT5 account {account}: {exc.message}") from None
        if mode != DEMO:
            raise DrillRefused(f"MT5 account {account} is a {mode} account (account_info().trade_mode); the drill "
                               "runs on demo accounts only and never trades any other.")
        return session

    def check_accounts(self, accounts: list[str]) -> None:
        if getattr(settings, "PAPER_ONLY", True):
            raise DrillRefused(f"PAPER_ONLY is set: the broker worker refuses MT5, so MT5 account(s) "
                               f"{', '.join(accounts)} cannot be drilled here; set PAPER_ONLY=false.")
        for account in accounts:
            self._demo_only(account)

    def seed(self, accounts: list[str], *, stamp: str) -> dict[str, list[str]]:
        placed: dict[str, list[str]] = {}
        for account in accounts:
            session = self._demo_only(account)  # again: the terminal may have been logged into another
            placed[account] = []
            magics = dict(session.terminal.strategy_magics)
            for n, symbol in enumerate(session.terminal.drill_symbols):
                magic = magics.get(STRATEGIES[n % len(STRATEGIES)], 0)
                info, quote = session.symbol_info(symbol), session.quote(symbol)
                volume, digits = float(info["volume_min"]), int(info["digits"])
                side = ORDER_TYPE_BUY if n % 2 == 0 else ORDER_TYPE_SELL
                self._send(session, symbol, {
                    "action": TRADE_ACTION_DEAL, "symbol": symbol, "volume": volume, "type": side,
                    "price": float(quote["ask"] if side == ORDER_TYPE_BUY else quote["bid"]),
                    "deviation": int(session.terminal.deviation), "magic": magic, "comment": f"drill-{stamp}",
                    "type_time": ORDER_TIME_GTC, "type_filling": closing_fillings(info)[0]})
                for kind, price in ((ORDER_TYPE_BUY_LIMIT, quote["bid"] * 0.8), (ORDER_TYPE_SELL_LIMIT, quote["ask"] * 1.2)):
                    result = self._send(session, symbol, {
                        "action": TRADE_ACTION_PENDING, "symbol": symbol, "volume": volume, "type": kind,
                        "price": round(float(price), digits), "magic": magic, "comment": f"drill-{stamp}",
                        "type_time": ORDER_TIME_GTC, "type_filling": ORDER_FILLING_RETURN})
                    placed[account].append(str(result["order"]))
        return placed

    @staticmethod
    def _send(session: MT5Adapter, symbol: str, request: dict[str, Any]) -> dict[str, Any]:
        try:
            result = session.order_send(request)
        except (BrokerError, ReplyLost) as exc:
            raise DrillError(f"seeding {symbol} on MT5 account {session.account} failed ({exc}); look at the "
                             "terminal before drilling again") from None
        if int(result["retcode"]) not in SUCCESS:
            raise DrillError(f"seeding {symbol} on MT5 account {session.account}: the terminal answered "
                             f"{retcode(int(result['retcode']))}")
        return result

    def observe(self, accounts: list[str], *, event_seqs: list[int],
                placed: dict[str, list[str]]) -> BrokerObservation:
        runs = list(BrokerRun.objects.filter(kind="switch", event_seq__in=event_seqs).order_by("id"))
        actions = list(BrokerAction.objects.filter(run__in=runs).order_by("run_id", "id"))
        seeded = {ticket: account for account, tickets in placed.items() for ticket in tickets}
        cancels = {a.broker_order_id: a for a in actions if a.action == "cancel"}
        orders_left, positions_left, status = 0, [], {}
        for account in accounts:
            session = self._session(account)
            try:
                working = session.working_orders(BrokerScope(account))
                positions = session.positions(BrokerScope(account))
                for ticket, owner in seeded.items():
                    if owner == account:
                        done = session.history_order(ticket)
                        status[ticket] = "working" if done is None else ORDER_STATES.get(int(done["state"]), "")
            except BrokerError as exc:
                self._drop(account)
                # Unknown is never flat: the figures fail and say why.
                orders_left += max(1, sum(1 for owner in seeded.values() if owner == account))
                positions_left.append(f"{account}: unknown ({exc.message})")
                continue
            orders_left += len([o for o in working if not o.is_own_close])
            positions_left += [f"{account} {p.symbol} {plain(p.quantity)} (ticket {p.ticket})" for p in positions]
        rows: list[dict[str, Any]] = []
        for ticket, account in seeded.items():
            action = cancels.get(ticket)
            rows.append({"account": account, "order_id": ticket, "kind": "order",
                         "symbol": action.symbol if action else "", "strategy": action.strategy if action else "",
                         "side": action.side if action else "", "quantity": plain(action.quantity) if action else "",
                         "action": action.action if action else "",
                         "outcome": action.outcome if action else "not acted on",
                         "broker_status": status.get(ticket, ""), "attempts": action.attempts if action else 0,
                         "detail": action.detail if action else ""})
        for action in actions:
            if action.action == "cancel" and action.broker_order_id in seeded:
                continue
            rows.append({"account": action.account,
                         "order_id": " ".join(filter(None, [action.broker_order_id, action.client_ref])),
                         "kind": "position" if action.action == "close" else "order", "symbol": action.symbol,
                         "strategy": action.strategy, "side": action.side, "quantity": plain(action.quantity),
                         "action": action.action, "outcome": action.outcome, "broker_status": "",
                         "attempts": action.attempts, "detail": action.detail})
        return BrokerObservation(
            runs=[{"id": r.pk, "account": r.account, "level": r.level, "state": r.state, "attempts": r.attempts,
                   "event_seq": r.event_seq, "created_at": r.created_at, "finished_at": r.finished_at,
                   "notes": r.notes, "error": r.error} for r in runs],
            finished=len(runs) == len(accounts) and all(r.state in TERMINAL_STATES for r in runs),
            orders_left=orders_left, positions_left=positions_left, seeded_orders=len(seeded), orders=rows)

    def close(self) -> None:
        for account in list(self._sessions):
            self._drop(account)
