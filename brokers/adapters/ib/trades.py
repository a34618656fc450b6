"""Reads (open orders, positions, executions) and closing orders at IB.

Every read is a fresh request (reqAllOpenOrders, reqPositions, reqExecutions,
reqCompletedOrders) checked against the connection afterwards. Closing orders are
market orders of the opposite side and exact size on the position's own contract,
qualified by conId (contracts.py), tagged orderRef = the run's client reference, so a
retry finds them (find_order) instead of sending a second one; find_order reports the
cumulative fills of the order, from its status and, once it is done, its executions.
"""

from __future__ import annotations

import time
from collections import defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ..base import (
    DONE_CANCELLED,
    DONE_REJECTED,
    FILLED,
    WORKING,
    BrokerScope,
    Execution,
    OrderState,
    Position,
    WorkingOrder,
)
from .cancels import WORKING_STATUSES
from .contracts import TIF, closing_contract, instrument_of, refuse_before_qualifying
from .session import dec


class TradesMixin:
    """The reading and closing half of IBAdapter."""

    def _all_open(self, timeout: float | None = None) -> list[Any]:
        trades = self._request("reqAllOpenOrders", lambda ib: ib.reqAllOpenOrdersAsync(), timeout)
        self._last_open = (time.monotonic(), trades)
        return trades

    def _completed(self) -> list[Any]:
        return self._request("reqCompletedOrders", lambda ib: ib.reqCompletedOrdersAsync(False))

    @staticmethod
    def _to_working(trade: Any) -> WorkingOrder:
        order = trade.order
        return WorkingOrder(
            account=order.account, order_id=str(order.permId), instrument=instrument_of(trade.contract),
            side=order.action, quantity=dec(order.totalQuantity), filled=dec(trade.orderStatus.filled),
            strategy=order.orderRef or "", client_ref=order.orderRef or "", owner=str(order.clientId),
            native_id=str(order.orderId),
        )

    def working_orders(self, scope: BrokerScope) -> list[WorkingOrder]:
        orders = []
        for trade in self._all_open():
            if trade.orderStatus.status not in WORKING_STATUSES:
                continue
            order = self._to_working(trade)
            if scope.matches(account=order.account, strategy=order.strategy, instrument=order.instrument):
                orders.append(order)
        return orders

    def positions(self, scope: BrokerScope) -> list[Position]:
        found = self._request("reqPositions", lambda ib: ib.reqPositionsAsync())
        result = []
        for p in found:
            if not p.position:
                continue
            instrument = instrument_of(p.contract)
            if scope.matches(account=p.account, instrument=instrument):
                result.append(Position(p.account, instrument, dec(p.position), dec(p.avgCost)))
        return result

    def executions(self, *, account: str, since: datetime) -> list[Execution]:
        from ib_async import ExecutionFilter

        stamp = since.astimezone(UTC).strftime("%Y%m%d-%H:%M:%S")
        fills = self._request("reqExecutions",
                              lambda ib: ib.reqExecutionsAsync(ExecutionFilter(acctCode=account, time=stamp)))
        result = []
        for fill in fills:
            ex = fill.execution
            when = ex.time if isinstance(ex.time, datetime) else None
            result.append(Execution(
                account=ex.acctNumber, instrument_key=instrument_of(fill.contract).key,
                side="BUY" if ex.side == "BOT" else "SELL", quantity=dec(ex.shares), order_id=str(ex.permId),
                client_ref=ex.orderRef or "", exec_id=ex.execId, time=when))
        return [e for e in result if e.account == account]

    # --- closing orders ---------------------------------------------------------------------

    def close_position(self, position: Position, *, quantity: Decimal, client_ref: str) -> OrderState:
        from ib_async import Contract, MarketOrder

        refuse_before_qualifying(position)
        [qualified] = self._request(
            "qualifyContracts",
            lambda ib: ib.qualifyContractsAsync(Contract(conId=int(position.instrument.broker_key))))
        contract = closing_contract(qualified, position)
        ib = self._session()
        action = "SELL" if position.quantity > 0 else "BUY"
        order = MarketOrder(action, float(quantity), account=position.account, orderRef=client_ref,
                            tif=TIF.get(contract.secType, "DAY"))
        trade = ib.placeOrder(contract, order)
        deadline = time.monotonic() + self.connection.confirm_timeout_seconds
        while not trade.isDone() and time.monotonic() < deadline:
            self._checked(ib, "closing order")
            ib.sleep(0.02)
        self._checked(ib, "closing order")
        return self._state_of(trade, client_ref)

    def _state_of(self, trade: Any, client_ref: str, filled: Decimal | None = None) -> OrderState:
        status = trade.orderStatus.status
        if filled is None:
            filled = dec(trade.orderStatus.filled) or dec(trade.order.filledQuantity)
        errors = [e for e in trade.log if getattr(e, "errorCode", 0)] if trade.log else []
        detail = "; ".join(f"IB error {e.errorCode}: {e.message}" for e in errors)
        if status == "Filled":
            state = FILLED
        elif status in ("Cancelled", "ApiCancelled", "Inactive"):
            state = DONE_REJECTED if errors and not filled else DONE_CANCELLED
        else:
            state = WORKING
        return OrderState(order_id=str(trade.order.permId or trade.order.orderId), client_ref=client_ref,
                          status=state, quantity=dec(trade.order.totalQuantity), filled=filled,
                          avg_price=dec(trade.orderStatus.avgFillPrice) or None, detail=detail)

    def find_order(self, *, account: str, client_ref: str) -> OrderState | None:
        for trade in self._all_open():
            if trade.order.orderRef == client_ref and trade.order.account == account:
                return self._state_of(trade, client_ref)
        for trade in self._completed():
            if trade.order.orderRef == client_ref and trade.order.account == account:
                # A completed order's cumulative fills: its executions, the broker's own record.
                by_ref: dict[str, Decimal] = defaultdict(Decimal)
                for fill in self._request("reqExecutions", lambda ib: ib.reqExecutionsAsync()):
                    if fill.execution.orderRef == client_ref and fill.execution.acctNumber == account:
                        by_ref[client_ref] += dec(fill.execution.shares)
                filled = by_ref.get(client_ref) or dec(trade.order.filledQuantity)
                return self._state_of(trade, client_ref, filled=filled)
        return None
