"""Removing pending orders at MetaTrader 5 (TRADE_ACTION_REMOVE), one by one.

MT5 has no broker-wide cancel: every order in scope is removed by its ticket. The
outcome of each is read from the answer and, when the order is no longer there, from
the terminal's order history: removed (cancelled), filled before the removal arrived
(too late), or partly filled first. A code that repeating can help with (retcodes.py:
frozen near the market, too many requests, no connection) is an `error` the run
retries; one it cannot (the market closed, which blocks removals too) is `rejected`,
and the order stays working for the run's verification and the sweep to report. A
code about the whole terminal (AutoTrading off, no trade server: 10026, 10027,
10031) is raised as BrokerError, as for closing deals.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..base import (
    CANCELLED,
    ERROR,
    FILLED_BEFORE_CANCEL,
    REJECTED,
    TOO_LATE,
    BrokerError,
    CancelResult,
    WorkingOrder,
)
from .mapping import dec
from .retcodes import DONE, INVALID, TERMINAL_WIDE, retcode, trade_error
from .session import ReplyLost

TRADE_ACTION_REMOVE = 8
# Not found as a working order (10013), or no longer a valid one (10035).
GONE = frozenset({INVALID, 10035})


class CancelMixin:
    """The cancelling half of MT5Adapter (needs the session and trading halves)."""

    def cancel_order(self, order: WorkingOrder) -> CancelResult:
        self._for(order.account)
        try:
            result = self.order_send({"action": TRADE_ACTION_REMOVE, "order": int(order.order_id)})
        except ReplyLost as lost:
            # The removal may or may not have been applied: the terminal says which.
            if any(str(o["ticket"]) == order.order_id for o in self._read("records", "orders_get")):
                raise BrokerError(f"{self._where}: the answer to removing order {order.order_id} was lost "
                                  f"({lost}); it is still working", retryable=True) from None
            return self._classify(order, "answer lost; no longer working")
        code = int(result["retcode"])
        if code == DONE:
            return self._classify(order, "")
        rc = retcode(code)
        if code in GONE and not any(str(o["ticket"]) == order.order_id for o in self._read("records", "orders_get")):
            return self._classify(order, f"{rc}: not working any more")
        if code in TERMINAL_WIDE:
            raise trade_error(code, f"{self._where}: removing order {order.order_id}", str(result.get("comment") or ""))
        detail = f"{rc}; server comment {result.get('comment')!r}"
        return CancelResult(order, ERROR if rc.retryable else REJECTED, order.filled, detail)

    def settle(self, orders: list[WorkingOrder]) -> list[CancelResult]:
        return [self._classify(o, "no longer working when re-read") for o in orders]

    def history_order(self, ticket: str) -> dict[str, Any] | None:
        found = self._read("records", "history_orders_get", ticket=int(ticket))
        return found[-1] if found else None

    def _classify(self, order: WorkingOrder, note: str) -> CancelResult:
        """An order no longer working, from the terminal's history: fully executed ->
        too late; partly -> filled before the removal; not at all -> cancelled."""
        done = self.history_order(order.order_id)
        if done is None:
            return CancelResult(order, CANCELLED, order.filled,
                                "; ".join(filter(None, [note, "not in the terminal's history"])))
        filled = dec(done["volume_initial"]) - dec(done["volume_current"])
        filled = max(filled, order.filled, Decimal(0))
        if filled >= order.quantity:
            return CancelResult(order, TOO_LATE, filled, "filled before the removal arrived")
        if filled > 0:
            return CancelResult(order, FILLED_BEFORE_CANCEL, filled,
                                f"{filled} filled before the removal; the rest was removed")
        return CancelResult(order, CANCELLED, filled, note)
