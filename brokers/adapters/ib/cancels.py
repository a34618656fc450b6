"""Cancelling at IB: one reqGlobalCancel for a global scope, else order by order.

IB only lets the API client that placed an order cancel it, so an order placed by
another client id is cancelled from a short session opened with that client id
(possible once the owner has disconnected, e.g. a strategy that exited on the switch;
if the owner is still connected the action is recorded as an error and retried).

reqGlobalCancel reaches every order of every account on the gateway, the kill
switch's own working closing orders included. While any of those is working, the
global scope is cancelled order by order instead; only if some order cannot be
cancelled that way is reqGlobalCancel sent after all, and the run's note says that
the closing orders it cancelled are sent again (for what is left to close).
"""

from __future__ import annotations

import time
from collections import defaultdict
from decimal import Decimal
from typing import Any

from ..base import (
    CANCELLED,
    CLOSE_REF_PREFIX,
    ERROR,
    FILLED_BEFORE_CANCEL,
    TOO_LATE,
    BrokerError,
    BrokerScope,
    CancelAllResult,
    CancelResult,
    WorkingOrder,
)
from .session import dec

WORKING_STATUSES = frozenset({"PendingSubmit", "ApiPending", "PreSubmitted", "Submitted", "ApiUpdate",
                              "ValidationError", "PendingCancel"})
NOT_FOUND_CODE = 10147


class CancelMixin:
    """The cancelling half of IBAdapter (needs the session and reads halves)."""

    def cancel_order(self, order: WorkingOrder) -> CancelResult:
        return self._cancel(BrokerScope(order.account), [order], global_cancel=False).results[0]

    def cancel_all(self, scope: BrokerScope, orders: list[WorkingOrder],
                   *, global_scope: bool = False) -> CancelAllResult:
        if not orders and not global_scope:
            return CancelAllResult()
        return self._cancel(scope, orders, global_cancel=global_scope)

    def _recent_open(self) -> list[Any]:
        # The listing the caller just made covers every account: do not read 1,000s again.
        recent = self._last_open
        return recent[1] if recent and time.monotonic() - recent[0] < 2 else self._all_open()

    def _cancel(self, scope: BrokerScope, orders: list[WorkingOrder], *, global_cancel: bool) -> CancelAllResult:
        note = ""
        if global_cancel:
            trades = self._recent_open()
            closing = [t for t in trades if t.orderStatus.status in WORKING_STATUSES
                       and (t.order.orderRef or "").startswith(CLOSE_REF_PREFIX)]
            if not closing:
                return self._global_cancel(scope, orders, trades, {}, "")
            failures = self._cancel_by_owner(orders)
            if not failures:
                note = (f"reqGlobalCancel not used: {len(closing)} closing order(s) of the kill switch were "
                        "working on this gateway and it would have cancelled them too; the orders in scope "
                        "were cancelled one by one.")
                return CancelAllResult(self._outcomes(scope, orders, {}), note=note)
            note = (f"reqGlobalCancel sent although {len(closing)} closing order(s) of the kill switch were "
                    f"working: {len(failures)} order(s) could not be cancelled one by one (their API client "
                    "is still connected). The closing orders it cancelled are sent again for what is left "
                    "to close.")
            return self._global_cancel(scope, orders, self._all_open(), {}, note)
        failures = self._cancel_by_owner(orders)
        return CancelAllResult(self._outcomes(scope, orders, failures))

    def _global_cancel(self, scope: BrokerScope, orders: list[WorkingOrder], trades: list[Any],
                       failures: dict[str, str], note: str) -> CancelAllResult:
        # reqGlobalCancel reaches every account of this gateway: list the other
        # accounts' orders first, so that each cancelled order is reported.
        listed = {o.order_id for o in orders}
        orders = orders + [
            self._to_working(t) for t in trades
            if t.orderStatus.status in WORKING_STATUSES and str(t.order.permId) not in listed
            and t.order.account in self.connection.accounts
            and not (t.order.orderRef or "").startswith(CLOSE_REF_PREFIX)
        ]
        self._session().reqGlobalCancel()
        return CancelAllResult(self._outcomes(scope, orders, failures), global_cancel=True, note=note)

    def _cancel_by_owner(self, orders: list[WorkingOrder]) -> dict[str, str]:
        """Send one cancel per order from its owner's client id. Returns the orders that
        could not be cancelled (order id -> why)."""
        from ib_async import Order

        from . import IBAdapter

        failures: dict[str, str] = {}
        by_owner: dict[int, list[WorkingOrder]] = defaultdict(list)
        for order in orders:
            by_owner[int(order.owner or self.client_id)].append(order)
        for owner, owned in by_owner.items():
            if owner == self.client_id:
                session, adapter = self._session(), self
            else:
                # Only the placing client may cancel an order at IB: borrow its id.
                adapter = IBAdapter(self.connection, client_id=owner, persistent=False)
                try:
                    session = adapter._session()
                except BrokerError as exc:
                    for order in owned:
                        failures[order.order_id] = (
                            f"placed by API client {owner}, which could not be borrowed: {exc.message}")
                    continue
            try:
                if adapter is not self:
                    # The owner's session learns its orders from reqOpenOrders.
                    adapter._request("reqOpenOrders", lambda ib: ib.reqOpenOrdersAsync())
                for order in owned:
                    session.cancelOrder(Order(orderId=int(order.native_id), clientId=owner,
                                              permId=int(order.order_id)))
                if adapter is not self:
                    # Let the throttled cancels drain, then read the owner's errors.
                    adapter._settle_sent(len(owned))
                    for order in owned:
                        for code, text in adapter._order_errors.get(int(order.native_id), []):
                            if code == NOT_FOUND_CODE:
                                failures[order.order_id] = f"IB error {code}: {text}"
            finally:
                if adapter is not self:
                    adapter.close()
        return failures

    def _settle_sent(self, messages: int) -> None:
        """Wait until ib_async's throttle has sent `messages` queued messages: a request
        queued behind them (reqCurrentTime) returns only after they went out."""
        budget = self.connection.confirm_timeout_seconds + messages / self.connection.max_messages_per_second
        self._request("reqCurrentTime", lambda ib: ib.reqCurrentTimeAsync(), budget)

    def _outcomes(self, scope: BrokerScope, orders: list[WorkingOrder],
                  failures: dict[str, str]) -> list[CancelResult]:
        """Re-read the broker until the listed orders are no longer working (or the
        confirmation time is up), then classify each from IB's executions."""
        pending = {o.order_id for o in orders if o.order_id not in failures}
        budget = self.connection.confirm_timeout_seconds + len(orders) / self.connection.max_messages_per_second
        deadline = time.monotonic() + budget
        still: set[str] = set(pending)
        while pending:
            still = {str(t.order.permId) for t in self._all_open(timeout=budget)
                     if t.orderStatus.status in WORKING_STATUSES} & pending
            if not still or time.monotonic() > deadline:
                break
            self._sleep(0.05)
        fills = self._fills_by_order() if orders else {}
        results = []
        for order in orders:
            if order.order_id in failures:
                results.append(CancelResult(order, ERROR, order.filled, failures[order.order_id]))
            elif order.order_id in still:
                results.append(CancelResult(order, ERROR, order.filled,
                                            f"still working {budget:.1f}s after the cancel was sent"))
            else:
                results.append(self._classify(order, fills.get(order.order_id, Decimal(0))))
        return results

    def settle(self, orders: list[WorkingOrder]) -> list[CancelResult]:
        fills = self._fills_by_order()
        return [self._classify(o, fills.get(o.order_id, Decimal(0))) for o in orders]

    def _fills_by_order(self) -> dict[str, Decimal]:
        """Quantity executed per order (permId) today: far fewer messages to read than
        every completed order, and enough to tell a cancel from a fill."""
        shares: dict[str, Decimal] = defaultdict(Decimal)
        for fill in self._request("reqExecutions", lambda ib: ib.reqExecutionsAsync()):
            shares[str(fill.execution.permId)] += dec(fill.execution.shares)
        return shares

    @staticmethod
    def _classify(order: WorkingOrder, filled: Decimal) -> CancelResult:
        """An order no longer working: fully executed -> too late; partly -> filled
        before cancel (the rest cancelled); not at all -> cancelled."""
        if filled >= order.quantity:
            return CancelResult(order, TOO_LATE, filled, "filled before the cancel arrived")
        if filled > 0:
            return CancelResult(order, FILLED_BEFORE_CANCEL, filled,
                                f"{filled} filled before the cancel; the rest was cancelled")
        return CancelResult(order, CANCELLED, filled)
