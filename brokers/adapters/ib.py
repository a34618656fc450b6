"""Interactive Brokers through ib_async (the maintained continuation of ib_insync).

Guarantees:
- Every read is a fresh request (reqAllOpenOrders, reqPositions, reqCompletedOrders)
  checked against the connection afterwards. ib_async empties its cached orders and
  positions when the socket drops, so an empty answer on a dead connection would read
  as "flat": here it raises BrokerError(retryable=True) instead; the run reconnects
  (a new session on the next attempt) and reads again.
- A global scope uses one reqGlobalCancel (IB's only way to cancel every client's
  orders, manual TWS orders included). Narrower scopes cancel order by order. IB only
  lets the API client that placed an order cancel it, so an order placed by another
  client id is cancelled from a short session opened with that client id (possible
  once the owner has disconnected, e.g. a strategy that exited on the switch; if the
  owner is still connected the action is recorded as an error and retried).
- Messages are throttled by ib_async to `max_messages_per_second` (40 by default)
  over a 1.1 s window, under IB's 50 messages per second per session.
- Closing orders are market orders of the opposite side and exact size, tagged with
  orderRef = the run's client reference, so a retry finds them (find_order) instead
  of sending a second one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from decimal import Decimal
from typing import Any

from ..config import IBConnection
from .base import (
    CANCELLED,
    DONE_CANCELLED,
    DONE_REJECTED,
    ERROR,
    FILLED,
    FILLED_BEFORE_CANCEL,
    TOO_LATE,
    WORKING,
    BrokerAdapter,
    BrokerError,
    BrokerScope,
    CancelAllResult,
    CancelResult,
    OrderState,
    Position,
    WorkingOrder,
)

logger = logging.getLogger("brokers.ib")

WORKING_STATUSES = frozenset({"PendingSubmit", "ApiPending", "PreSubmitted", "Submitted", "ApiUpdate",
                              "ValidationError", "PendingCancel"})
# IB's answers to a cancel that came too late (order already filled / not cancellable).
TOO_LATE_CODES = frozenset({10148, 161})
NOT_FOUND_CODE = 10147
CLIENT_ID_IN_USE = 326

# Open sessions of this process by (host, port, client id); a Celery worker or the
# sweep loop reuses its session from run to run.
_SESSIONS: dict[tuple[str, int, int], Any] = {}


def _dec(value: Any) -> Decimal:
    try:
        if value is None or float(value) >= 1.7e308:  # IB's "unset" double
            return Decimal(0)
    except (TypeError, ValueError):
        return Decimal(0)
    result = Decimal(str(value))
    # 10.0 -> 10, 0.50 -> 0.5 (never 1E+1)
    return result.quantize(Decimal(1)) if result == result.to_integral_value() else result.normalize()


class IBAdapter(BrokerAdapter):
    """One API session to one TWS / IB Gateway (opened on first use, closed by close())."""

    kind = "ib"

    def __init__(self, connection: IBConnection, *, client_id: int | None = None,
                 persistent: bool = True) -> None:
        self.connection = connection
        self.client_id = connection.client_id if client_id is None else client_id
        # The process keeps its own sessions open between runs; a borrowed owner
        # session (another client's id) is always closed, so its owner can return.
        self.persistent = persistent
        self._last_open: tuple[float, list[Any]] | None = None
        self._ib: Any = None
        self._order_errors: dict[int, list[tuple[int, str]]] = defaultdict(list)
        self._session_errors: list[tuple[int, str]] = []

    # --- session ---------------------------------------------------------------------------

    def _on_error(self, req_id: int, code: int, message: str, contract: Any) -> None:
        if req_id > 0:
            self._order_errors[req_id].append((code, message))
        else:
            self._session_errors.append((code, message))

    def _session(self) -> Any:
        if self._ib is not None and self._ib.isConnected():
            return self._ib
        self.close()
        key = (self.connection.host, self.connection.port, self.client_id)
        cached = _SESSIONS.get(key) if self.persistent else None
        if cached is not None and cached.isConnected():
            self._ib = cached
            return cached
        from ib_async import IB
        from ib_async.ib import StartupFetchNONE

        # ib_async's sync calls run the event loop of the current thread; a worker thread
        # (the sweep loop in tests) has none yet.
        try:
            asyncio.get_event_loop()
        except RuntimeError:
            asyncio.set_event_loop(asyncio.new_event_loop())
        ib = IB()
        ib.client.MaxRequests = self.connection.max_messages_per_second
        # A 10% longer window: messages sent in one burst reach the gateway spread out,
        # and a gateway counting on arrival must still never see more than 50 in a second.
        ib.client.RequestsInterval = 1.1
        ib.errorEvent += self._on_error
        self._session_errors.clear()
        self.connection.secrets()  # a deployment that names secrets must provide them
        try:
            ib.connect(self.connection.host, self.connection.port, clientId=self.client_id,
                       timeout=self.connection.connect_timeout_seconds, fetchFields=StartupFetchNONE)
        except BaseException as exc:  # ConnectionRefused, TimeoutError, client id in use...
            try:
                ib.disconnect()
            except Exception:  # noqa: BLE001 - already broken
                pass
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            in_use = any(code == CLIENT_ID_IN_USE for code, _ in self._session_errors)
            what = "client id is in use" if in_use else f"{type(exc).__name__}: {exc}"
            raise BrokerError(
                f"cannot connect to IB {self.connection.name} at {self.connection.host}:"
                f"{self.connection.port} as client {self.client_id}: {what}", retryable=True
            ) from None
        if not ib.isConnected():
            raise BrokerError(f"IB {self.connection.name}: connection refused for client {self.client_id}",
                              retryable=True)
        self._ib = ib
        if self.persistent:
            _SESSIONS[key] = ib
        return ib

    def _checked(self, ib: Any, what: str) -> None:
        if not ib.isConnected():
            self.close()
            _SESSIONS.pop((self.connection.host, self.connection.port, self.client_id), None)
            raise BrokerError(f"IB {self.connection.name}: connection lost during {what}; "
                              "the broker's state is unknown until re-read", retryable=True)

    def _request(self, what: str, awaitable_factory, timeout: float | None = None) -> Any:
        ib = self._session()
        timeout = timeout or self.connection.confirm_timeout_seconds
        try:
            result = ib.run(asyncio.wait_for(awaitable_factory(ib), timeout))
        except (ConnectionError, OSError) as exc:
            self.close()
            raise BrokerError(f"IB {self.connection.name}: {what} failed: {exc}", retryable=True) from None
        except TimeoutError:
            self._checked(ib, what)
            raise BrokerError(f"IB {self.connection.name}: no answer to {what} within {timeout:g}s",
                              retryable=True) from None
        self._checked(ib, what)
        return result

    def _sleep(self, seconds: float) -> None:
        ib = self._session()
        ib.sleep(seconds)

    def close(self) -> None:
        ib, self._ib = self._ib, None
        if ib is not None and self.persistent and ib.isConnected():
            return  # kept for the next run in this process (connecting costs ~0.5 s)
        if ib is not None:
            _SESSIONS.pop((self.connection.host, self.connection.port, self.client_id), None)
            try:
                ib.disconnect()
            except Exception:  # noqa: BLE001 - closing a broken session
                logger.debug("disconnect failed", exc_info=True)

    # --- reads ------------------------------------------------------------------------------

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
            account=order.account, order_id=str(order.permId), symbol=trade.contract.symbol,
            side=order.action, quantity=_dec(order.totalQuantity), filled=_dec(trade.orderStatus.filled),
            strategy=order.orderRef or "", client_ref=order.orderRef or "", owner=str(order.clientId),
            native_id=str(order.orderId),
        )

    def _open_in(self, scope: BrokerScope, timeout: float | None = None) -> list[Any]:
        return [
            t for t in self._all_open(timeout)
            if t.orderStatus.status in WORKING_STATUSES
            and scope.matches(account=t.order.account, strategy=t.order.orderRef or "",
                              symbol=t.contract.symbol)
        ]

    def working_orders(self, scope: BrokerScope) -> list[WorkingOrder]:
        return [self._to_working(t) for t in self._open_in(scope)]

    def positions(self, scope: BrokerScope) -> list[Position]:
        found = self._request("reqPositions", lambda ib: ib.reqPositionsAsync())
        return [
            Position(p.account, p.contract.symbol, _dec(p.position), _dec(p.avgCost))
            for p in found
            if p.position and scope.matches(account=p.account, symbol=p.contract.symbol)
        ]

    # --- cancels ----------------------------------------------------------------------------

    def cancel_order(self, order: WorkingOrder) -> CancelResult:
        return self._cancel(BrokerScope(order.account), [order], global_cancel=False).results[0]

    def cancel_all(self, scope: BrokerScope, orders: list[WorkingOrder],
                   *, global_scope: bool = False) -> CancelAllResult:
        if not orders and not global_scope:
            return CancelAllResult()
        return self._cancel(scope, orders, global_cancel=global_scope)

    def _cancel(self, scope: BrokerScope, orders: list[WorkingOrder], *, global_cancel: bool) -> CancelAllResult:
        from ib_async import Order

        failures: dict[str, str] = {}
        if global_cancel:
            # reqGlobalCancel reaches every account of this gateway: list the other
            # accounts' orders first, so that each cancelled order is reported.
            listed = {o.order_id for o in orders}
            # The listing the caller just made covers every account: do not read 1,000s again.
            recent = self._last_open
            trades = recent[1] if recent and time.monotonic() - recent[0] < 2 else self._all_open()
            orders = orders + [
                self._to_working(t) for t in trades
                if t.orderStatus.status in WORKING_STATUSES and str(t.order.permId) not in listed
                and t.order.account in self.connection.accounts
            ]
            ib = self._session()
            ib.reqGlobalCancel()
        else:
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
                                f"placed by API client {owner}, which could not be borrowed: {exc.message}"
                            )
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
        return CancelAllResult(self._outcomes(scope, orders, failures), global_cancel=global_cancel)

    def _settle_sent(self, messages: int) -> None:
        """Wait until ib_async's throttle has sent `messages` queued messages: a request
        queued behind them (reqCurrentTime) returns only after they went out."""
        budget = self.connection.confirm_timeout_seconds + messages / self.connection.max_messages_per_second
        self._request("reqCurrentTime", lambda ib: ib.reqCurrentTimeAsync(), budget)

    def _outcomes(self, scope: BrokerScope, orders: list[WorkingOrder],
                  failures: dict[str, str]) -> list[CancelResult]:
        """Re-read the broker until the listed orders are no longer working (or the
        confirmation time is up), then classify each from IB's completed orders."""
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
        fills = self._fills() if orders else {}
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
        fills = self._fills()
        return [self._classify(o, fills.get(o.order_id, Decimal(0))) for o in orders]

    def _fills(self) -> dict[str, Decimal]:
        """Shares executed per order (permId) today: far fewer messages to read than
        every completed order, and enough to tell a cancel from a fill."""
        found = self._request("reqExecutions", lambda ib: ib.reqExecutionsAsync())
        shares: dict[str, Decimal] = defaultdict(Decimal)
        for fill in found:
            shares[str(fill.execution.permId)] += _dec(fill.execution.shares)
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

    # --- closing orders ---------------------------------------------------------------------

    def close_position(self, position: Position, *, quantity: Decimal, client_ref: str) -> OrderState:
        from ib_async import MarketOrder, Stock

        ib = self._session()
        action = "SELL" if position.quantity > 0 else "BUY"
        order = MarketOrder(action, float(quantity), account=position.account, orderRef=client_ref, tif="DAY")
        trade = ib.placeOrder(Stock(position.symbol, "SMART", "USD"), order)
        deadline = time.monotonic() + self.connection.confirm_timeout_seconds
        while not trade.isDone() and time.monotonic() < deadline:
            self._checked(ib, "closing order")
            ib.sleep(0.02)
        self._checked(ib, "closing order")
        return self._state_of(trade, client_ref)

    def _state_of(self, trade: Any, client_ref: str) -> OrderState:
        status = trade.orderStatus.status
        filled = _dec(trade.orderStatus.filled) or _dec(trade.order.filledQuantity)
        errors = [e for e in trade.log if getattr(e, "errorCode", 0)] if trade.log else []
        detail = "; ".join(f"IB error {e.errorCode}: {e.message}" for e in errors)
        if status == "Filled":
            state = FILLED
        elif status in ("Cancelled", "ApiCancelled", "Inactive"):
            state = DONE_REJECTED if errors and not filled else DONE_CANCELLED
        else:
            state = WORKING
        return OrderState(order_id=str(trade.order.permId or trade.order.orderId), client_ref=client_ref,
                          status=state, quantity=_dec(trade.order.totalQuantity), filled=filled,
                          avg_price=_dec(trade.orderStatus.avgFillPrice) or None, detail=detail)

    def find_order(self, *, account: str, client_ref: str) -> OrderState | None:
        for trade in self._all_open():
            if trade.order.orderRef == client_ref and trade.order.account == account:
                return self._state_of(trade, client_ref)
        for trade in self._completed():
            if trade.order.orderRef == client_ref and trade.order.account == account:
                state = self._state_of(trade, client_ref)
                filled = _dec(trade.order.filledQuantity)
                return OrderState(state.order_id, client_ref, state.status, state.quantity, filled,
                                  state.avg_price, state.detail)
        return None

