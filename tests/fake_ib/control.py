"""The thread-safe control API of the fake gateway: settings, snapshots, fault switches.

:class:`GatewayControl` is the base of :class:`.gateway.FakeGateway`; every
method runs on the gateway loop (through :meth:`_call`) and returns after it
took effect there, so it may be called from any thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .engine import Engine

T = TypeVar("T")


class GatewayControl:
    """Settings, snapshots and fault switches over one :class:`.engine.Engine`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the gateway loop and return its result (direct call if not running)."""
        loop = self._loop
        if loop is None or not loop.is_running() or threading.current_thread() is self._thread:
            return fn(*args)
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return future.result(timeout=10)

    # ------------------------------------------------------------------ settings

    @property
    def accounts(self) -> tuple[str, ...]:
        return self._engine.accounts

    @property
    def master_client_id(self) -> int | None:
        """A client with this id receives updates of every client's orders."""
        return self._engine.master_client_id

    @master_client_id.setter
    def master_client_id(self, value: int | None) -> None:
        self._engine.master_client_id = value

    @property
    def cancel_too_late_code(self) -> int:
        """Error code for cancelling an order that is already done (IB 10148, older TWS 161)."""
        return self._engine.cancel_too_late_code

    @cancel_too_late_code.setter
    def cancel_too_late_code(self, value: int) -> None:
        self._engine.cancel_too_late_code = int(value)

    @property
    def implicit_stocks(self) -> bool:
        """Whether a request for an unknown stock symbol registers that stock (default
        True; a scenario turns it off unless it says otherwise: only its contracts exist)."""
        return self._engine.implicit_stocks

    @implicit_stocks.setter
    def implicit_stocks(self, value: bool) -> None:
        self._engine.implicit_stocks = bool(value)

    @property
    def global_cancel_count(self) -> int:
        return self._engine.global_cancel_count

    # ------------------------------------------------------------------ snapshots

    def contract(self, instrument: str | int) -> dict[str, Any]:
        """The registered contract a conId or US stock symbol names (snake_case fields).

        Raises KeyError if there is none (a snapshot never registers an implicit stock).
        """

        def find() -> dict[str, Any]:
            registry = self._engine.book.contracts
            if isinstance(instrument, int):
                return registry.require(instrument).as_dict()
            for spec in registry.all():
                if spec.sec_type == "STK" and spec.symbol == instrument and spec.currency == "USD":
                    return spec.as_dict()
            raise KeyError(f"no US stock {instrument!r} is registered")

        return self._call(find)

    def contracts(self) -> list[dict[str, Any]]:
        """Every registered contract, in registration order."""
        return self._call(lambda: [c.as_dict() for c in self._engine.book.contracts.all()])

    def orders(self) -> list[dict[str, Any]]:
        """Snapshot of every order the gateway knows (working and done), oldest first."""
        return self._call(lambda: [o.as_dict() for o in self._engine.book.orders.values()])

    def positions(self) -> list[dict[str, Any]]:
        """Non-zero positions as they truly are (never lagged): account, symbol, con_id,
        qty, avg_cost (IB's avgCost: average price x multiplier)."""
        return self._call(
            lambda: [
                {"account": p.account, "symbol": p.contract.symbol, "con_id": p.contract.con_id,
                 "qty": p.qty, "avg_cost": p.avg_cost}
                for p in self._engine.book.positions.values() if p.qty
            ]
        )

    def executions(self) -> list[dict[str, Any]]:
        """Every fill, oldest first: exec_id, time (epoch), account, con_id, symbol,
        sec_type, side (BOT/SLD), shares, price, exchange, order_id, perm_id, client_id,
        order_ref, commission, realized_pnl (None for an opening fill)."""
        return self._call(
            lambda: [
                {"exec_id": e.exec_id, "time": e.time, "account": e.order.account,
                 "con_id": e.order.contract.con_id, "symbol": e.order.contract.symbol,
                 "sec_type": e.order.contract.sec_type, "side": e.side, "shares": e.shares,
                 "price": e.price, "exchange": e.venue, "order_id": e.order.order_id,
                 "perm_id": e.order.perm_id, "client_id": e.order.client_id,
                 "order_ref": e.order.order_ref, "commission": e.commission,
                 "realized_pnl": e.realized_pnl}
                for e in self._engine.book.executions
            ]
        )

    def pnl(self, account: str) -> dict[str, float]:
        """The figures reqPnL streams for ``account``: daily, unrealized, realized."""
        return self._call(lambda: self._engine.book.pnl(account))

    def pnl_single(self, account: str, con_id: int) -> dict[str, float]:
        """The figures reqPnLSingle streams: position, daily, unrealized, realized, value."""
        return self._call(lambda: self._engine.book.pnl_single(account, con_id))

    @property
    def placed_orders(self) -> list[dict[str, Any]]:
        """Every placeOrder processed (new, modify, rejected), oldest first.  ``con_id``,
        ``symbol`` and ``sec_type`` are the resolved contract's (the request's if none
        resolved); ``requested_con_id`` is what the client sent."""
        return self._call(lambda: [dict(p) for p in self._engine.placed])

    @property
    def cancel_requests(self) -> list[dict[str, Any]]:
        """Every cancelOrder processed with its outcome, oldest first."""
        return self._call(lambda: [dict(c) for c in self._engine.cancels])

    @property
    def internal_errors(self) -> list[str]:
        """Exceptions raised inside the fake while handling messages (should stay empty)."""
        return self._call(lambda: list(self._engine.errors))

    @property
    def unhandled_messages(self) -> list[list[str]]:
        """Messages with an id the fake does not implement (they get no answer)."""
        return self._call(lambda: [list(m) for m in self._engine.unhandled])

    @property
    def connected_client_ids(self) -> list[int]:
        """Client ids of the API sessions currently open."""
        return self._call(
            lambda: sorted(
                c.client_id for c in self._engine.conns if c.client_id is not None and not c.closed
            )
        )

    # ------------------------------------------------------------------ fault switches

    def reject_next_orders(
        self, n: int, code: int = 201,
        message: str = "Order rejected - reason:Rejected by fake gateway",
    ) -> None:
        """Reject the next ``n`` placeOrder messages with error ``code`` (no order is created)."""

        def arm() -> None:
            e = self._engine
            e.reject_left, e.reject_code, e.reject_message = int(n), int(code), message

        self._call(arm)

    def partial_fill_on_cancel(
        self, order_id: int, filled_qty: float, client_id: int | None = None
    ) -> None:
        """When this order's cancel arrives, first fill ``filled_qty`` of it, then cancel the rest."""

        def arm() -> None:
            perm = self._engine.book.find(order_id, client_id).perm_id
            self._engine.partial_on_cancel[perm] = float(filled_qty)

        self._call(arm)

    def fill_before_cancel(self, order_id: int, client_id: int | None = None) -> None:
        """When this order's cancel arrives, it fills completely first; the cancel is 'too late'."""
        self._call(lambda: self._engine.fill_on_cancel.add(
            self._engine.book.find(order_id, client_id).perm_id))

    def market_liquidity(self, qty: float | None) -> None:
        """From now on, a new market order fills at most ``qty`` at once and the rest stays
        working (a thin market) until :meth:`fill_order`; 0 leaves it all working; None
        (the default) fills market orders completely. Raises ValueError if negative."""
        if qty is not None and not float(qty) >= 0:
            raise ValueError(f"liquidity must be >= 0 or None, not {qty}")

        def arm() -> None:
            self._engine.market_liquidity = None if qty is None else float(qty)

        self._call(arm)

    def position_report_lag(self, seconds: float) -> None:
        """From now on, position reports (pushed updates, reqPositions, portfolio) trail the
        fills that change them by ``seconds``: until then they show the old position.
        Fills (execDetails, orderStatus, commissionReport) are still reported at once.

        ``math.inf`` holds the reports until :meth:`release_position_reports` (for
        tests that must not depend on timing); a finite value releases held reports.
        0 switches the lag off (reports already scheduled still arrive when due).
        Raises ValueError if ``seconds`` is negative or NaN.
        """
        seconds = float(seconds)
        if not seconds >= 0:
            raise ValueError(f"lag must be >= 0 seconds (or math.inf), not {seconds}")

        def set_lag() -> None:
            self._engine.position_lag = seconds
            if seconds != float("inf"):
                self._engine.release_held_reports()

        self._call(set_lag)

    def release_position_reports(self) -> None:
        """Send every position report held back by ``position_report_lag(math.inf)``."""
        self._call(self._engine.release_held_reports)
