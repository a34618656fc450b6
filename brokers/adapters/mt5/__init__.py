"""MetaTrader 5: the MetaTrader5 module on Windows, the mt5linux rpyc bridge elsewhere.

Split by concern: `bridge` (the link: module or rpyc, plain values only), `session`
(initialize, the account check, checked reads, order_send), `mapping` (records as
instruments, positions, orders, executions), `trading` (closing deals, finding them
again), `cancels` (removing pending orders), `retcodes` (every return code, named,
retryable or not). Guarantees, in short:
- working orders are `orders_get()` (pending orders, and market orders whose rest
  works on), positions `positions_get()`: one per ticket on hedging accounts, one per
  symbol on netting accounts (account_info().margin_mode), listed oldest first;
- every read is checked: an answer of None, a broken bridge or a terminal logged into
  another account is BrokerError, never "nothing" (never flat);
- halt removes each pending order in scope by ticket (TRADE_ACTION_REMOVE); kill closes
  each position by ticket with a deal of the opposite type (trading.py), and what
  each ticket came to is on its own action row;
- a lost reply is settled from the terminal's history by the closing reference (the
  deal's comment), never by a second deal.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from ...config import MT5Terminal
from ..base import (
    BrokerAdapter,
    BrokerError,
    BrokerScope,
    Execution,
    Instrument,
    Position,
    WorkingOrder,
)
from .cancels import CancelMixin
from .mapping import execution_of, instrument_of, is_trade_deal, order_of, position_of
from .session import SessionMixin
from .trading import DAY, TradingMixin


class MT5Adapter(TradingMixin, CancelMixin, SessionMixin, BrokerAdapter):
    """One session with one MT5 terminal, for one of its accounts (opened on first use,
    closed by close())."""

    kind = "mt5"

    def __init__(self, terminal: MT5Terminal, account: str) -> None:
        self._init_session(terminal, account)

    def _for(self, account: str) -> None:
        if account != self.account:
            raise BrokerError(f"{self._where}: asked about account {account}, which this session does not serve",
                              retryable=False)

    def _instrument(self, symbol: str) -> Instrument:
        return instrument_of(symbol, self.symbol_info(symbol))

    def _listing(self, fn: str, *args: Any) -> list[dict[str, Any]]:
        """A listing that is this account's: the login is checked after it was read."""
        found = self._read("records", fn, *args)
        self._check_account()
        return found

    def working_orders(self, scope: BrokerScope) -> list[WorkingOrder]:
        self._for(scope.account)
        orders = [order_of(r, self.account, self._instrument(r["symbol"]), self.terminal)
                  for r in self._listing("orders_get")]
        return [o for o in orders if scope.matches(account=o.account, strategy=o.strategy, instrument=o.instrument)]

    def positions(self, scope: BrokerScope) -> list[Position]:
        self._for(scope.account)
        # Oldest first: an account under the FIFO rule must close a symbol's oldest ticket first.
        records = sorted(self._listing("positions_get"), key=lambda r: (r.get("time_msc", 0), r["ticket"]))
        result = []
        for record in records:
            if not record.get("volume"):
                continue
            position = position_of(record, self.account, self._instrument(record["symbol"]))
            if scope.matches(account=self.account, instrument=position.instrument):
                result.append(position)
        return result

    def executions(self, *, account: str, since: datetime) -> list[Execution]:
        self._for(account)
        # Trade-server time may be a day either side of UTC: read a day more each way.
        window = (int(since.timestamp() - DAY), int(time.time() + DAY))
        deals = self._listing("history_deals_get", *window)
        return [execution_of(d, self.account, self._instrument(d["symbol"])) for d in deals
                if is_trade_deal(d) and d.get("symbol")]

    def close(self) -> None:
        SessionMixin.close(self)


__all__ = ["MT5Adapter"]
