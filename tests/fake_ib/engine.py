"""The gateway's loop-side core: the book, the connected clients, and what they are told.

Everything here runs on the gateway's asyncio loop thread (the control API in
:mod:`.gateway` marshals calls onto it).  Every change is applied to the book
before the messages that report it are written, so a client that has seen a
reply also sees the change in the control API's snapshots.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from . import wire
from .contracts import ContractSpec, NoSecurityDefinition
from .orders import PlaceRequest, Reject, check_order, parse_place_order
from .protocol import (
    NO_SECURITY_DEFINITION,
    OUT_TICK_PRICE,
    TICK_ASK,
    TICK_BID,
    TICK_LAST,
    Conn,
    Reader,
    ib_time,
)
from .state import Book, Order, Position

log = logging.getLogger("tests.fake_ib")


class Engine:
    """Book + connections + fault switches of one gateway."""

    def __init__(self, accounts: tuple[str, ...], master_client_id: int | None) -> None:
        self.book = Book(accounts)
        self.conns: set[Conn] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        #: A client with this id receives updates of every client's orders (TWS "Master API client ID").
        self.master_client_id = master_client_id
        #: Error code for cancelling an order that is already done (IB uses 10148, older TWS 161).
        self.cancel_too_late_code = 10148
        #: Register unknown stock symbols on first use (see ContractRegistry.find).
        self.implicit_stocks = True
        #: Seconds by which position reports trail the fills that change them (inf: held
        #: until release_held_reports).
        self.position_lag = 0.0
        self.held_reports: list[tuple[Position, tuple[float, float, int]]] = []
        self.global_cancel_count = 0
        self.placed: list[dict[str, Any]] = []
        self.cancels: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.unhandled: list[list[str]] = []
        self.reject_left = 0
        self.reject_code = 201
        self.reject_message = ""
        self.partial_on_cancel: dict[int, float] = {}  # perm_id -> qty filled when cancel arrives
        self.fill_on_cancel: set[int] = set()  # perm_ids that fill completely when cancel arrives
        #: At most this quantity of a new market order fills at once; the rest rests,
        #: working, until fill_order (None: market orders fill completely at once).
        self.market_liquidity: float | None = None
        self._report_seq = 0

    @property
    def accounts(self) -> tuple[str, ...]:
        return self.book.accounts

    # ---------------------------------------------------------------- who sees what

    def sees(self, conn: Conn, order: Order) -> bool:
        """Does ``conn`` get this order's live updates and see it in reqOpenOrders?"""
        return conn.client_id is not None and (
            conn.client_id == order.client_id or conn.client_id == self.master_client_id
        )

    def order_conns(self, order: Order) -> list[Conn]:
        return [c for c in self.conns if self.sees(c, order)]

    def send_order(self, conn: Conn, order: Order) -> None:
        conn.send(*wire.open_order_fields(order))
        conn.send(*wire.status_fields(order))

    def publish_order(self, order: Order) -> None:
        for conn in self.order_conns(order):
            self.send_order(conn, order)

    # ---------------------------------------------------------------- positions, quotes, P&L

    def publish_position(self, pos: Position, *, lagged: bool) -> None:
        """Report ``pos`` as it is now; after ``position_lag`` seconds if ``lagged`` and a lag is set."""
        self._report_seq += 1
        report = (pos.qty, pos.avg_cost, self._report_seq)
        if lagged and math.isinf(self.position_lag):
            self.held_reports.append((pos, report))
        elif lagged and self.position_lag > 0 and self.loop is not None:
            self.loop.call_later(self.position_lag, self._report_position, pos, report)
        else:
            self._report_position(pos, report)
        self.publish_pnl(pos.account, pos.contract.con_id)

    def release_held_reports(self) -> None:
        """Send the position reports held back by an infinite lag, oldest first."""
        held, self.held_reports = self.held_reports, []
        for pos, report in held:
            self._report_position(pos, report)

    def _report_position(self, pos: Position, report: tuple[float, float, int]) -> None:
        qty, avg_cost, seq = report
        if seq <= pos.shown_seq:  # a newer report already went out (the lag was changed)
            return
        pos.shown_qty, pos.shown_avg_cost, pos.shown_seq = qty, avg_cost, seq
        for conn in self.conns:
            if conn.positions_subscribed:
                conn.send(*wire.position_fields(pos))
            if conn.account_updates == pos.account:
                conn.send(*wire.portfolio_fields(pos, self.book.mark(pos.contract, pos)))

    def publish_quote(self, spec: ContractSpec) -> None:
        """Stream bid/ask/last to subscribers; refresh portfolio values and P&L of holders."""
        quote = self.book.quotes[spec.con_id]
        for conn in self.conns:
            for req_id, con_id in conn.mkt_data.items():
                if con_id == spec.con_id:
                    for tick, price in ((TICK_BID, quote.bid), (TICK_ASK, quote.ask), (TICK_LAST, quote.last)):
                        conn.send(OUT_TICK_PRICE, 6, req_id, tick, price, 100, 0)
        for pos in list(self.book.positions.values()):
            if pos.contract.con_id == spec.con_id:
                for conn in self.conns:
                    if conn.account_updates == pos.account and pos.shown_qty:
                        conn.send(*wire.portfolio_fields(pos, quote.last))
                self.publish_pnl(pos.account, spec.con_id)

    def publish_pnl(self, account: str, con_id: int) -> None:
        for conn in self.conns:
            for req_id, acct in conn.pnl.items():
                if acct == account:
                    conn.send(*wire.pnl_fields(req_id, self.book.pnl(account)))
            for req_id, key in conn.pnl_single.items():
                if key == (account, con_id):
                    conn.send(*wire.pnl_single_fields(req_id, self.book.pnl_single(account, con_id)))

    # ---------------------------------------------------------------- control (loop side)
    # The loop halves of FakeGateway's control calls (documented there).

    def set_price(self, instrument: str | int, price: float, bid: float | None,
                  ask: float | None, close: float | None) -> None:
        spec = self.book.contract(instrument)
        self.book.set_quote(spec, price, None if bid is None else float(bid),
                            None if ask is None else float(ask), None if close is None else float(close))
        self.publish_quote(spec)

    def set_position(self, account: str, instrument: str | int, qty: float, avg_cost: float) -> None:
        book = self.book
        pos = book.set_position(account, book.contract(instrument), qty, avg_cost)
        self.publish_position(pos, lagged=False)

    def add_working_order(
        self, account: str, instrument: str | int, action: str, qty: float,
        limit_price: float | None, order_ref: str, client_id: int, order_type: str,
        stop_price: float | None, exchange: str | None,
    ) -> int:
        book = self.book
        book.check_account(account)
        if action not in ("BUY", "SELL"):
            raise ValueError(f"action must be BUY or SELL, not {action!r}")
        if qty <= 0:
            raise ValueError(f"qty must be positive, not {qty}")
        needs = {"LMT": (True, False), "STP": (False, True), "STP LMT": (True, True)}
        if order_type not in needs:
            raise ValueError(f"order_type must be LMT, STP or STP LMT, not {order_type!r}")
        if needs[order_type][0] and limit_price is None:
            raise ValueError(f"a {order_type} order needs limit_price")
        if needs[order_type][1] and stop_price is None:
            raise ValueError(f"a {order_type} order needs stop_price")
        spec = book.contract(instrument)
        order = book.new_order(
            order_id=book.next_order_id, client_id=client_id, account=account, contract=spec,
            exchange=exchange or spec.exchange, action=action, qty=qty, order_type=order_type,
            limit_price=limit_price if needs[order_type][0] else None,
            aux_price=stop_price, tif="DAY", order_ref=order_ref,
        )
        self.publish_order(order)
        return order.order_id

    def fill_order(
        self, order_id: int, qty: float | None, price: float | None, client_id: int | None
    ) -> None:
        book = self.book
        order = book.find(order_id, client_id)
        if not order.working:
            raise ValueError(f"order {order_id} is {order.status}, not working")
        fill_qty = order.remaining if qty is None else min(float(qty), order.remaining)
        self.fill(order, fill_qty, book.fill_price(order) if price is None else float(price))

    # ---------------------------------------------------------------- fills and cancels

    def venue(self, order: Order) -> str:
        """The exchange an execution reports: the routed one, or for SMART a listing venue."""
        if order.exchange != "SMART":
            return order.exchange
        spec = order.contract
        if spec.sec_type == "STK":
            return "ISLAND"
        return next((e for e in spec.valid_exchanges if e != "SMART"), "SMART")

    def fill(self, order: Order, qty: float, price: float) -> None:
        """Execute ``qty`` of a working order at ``price`` and tell everybody concerned.

        execDetails, orderStatus and commissionReport go out at once; the position
        report follows after the position lag, if one is set.
        """
        if qty <= 0:
            return
        ex = self.book.apply_fill(order, qty, price, self.venue(order))
        for conn in self.order_conns(order):
            conn.send(*wire.exec_fields(-1, ex))
            conn.send(*wire.status_fields(order))
            conn.send(*wire.commission_fields(ex))
        self.publish_position(self.book.position(order.account, order.contract), lagged=True)

    def cancel(self, order: Order) -> None:
        order.status = "Cancelled"
        order.completed_time = ib_time()
        order.completed_status = "Cancelled by Trader"
        for conn in self.order_conns(order):
            conn.error(order.order_id, 202, "Order Canceled - reason:")
            conn.send(*wire.status_fields(order))

    def race_cancel(self, order: Order) -> None:
        """Apply an armed fill that 'wins the race' against an incoming cancel."""
        if not order.working:
            return
        if order.perm_id in self.fill_on_cancel:
            self.fill_on_cancel.discard(order.perm_id)
            self.fill(order, order.remaining, self.book.fill_price(order))
        elif order.perm_id in self.partial_on_cancel:
            qty = min(self.partial_on_cancel.pop(order.perm_id), order.remaining)
            if qty > 0:
                self.fill(order, qty, self.book.fill_price(order))

    # ---------------------------------------------------------------- order messages

    def on_place_order(self, conn: Conn, fields: list[str]) -> None:
        assert conn.client_id is not None
        req = parse_place_order(fields)
        q = req.contract
        existing = self.book.by_key.get((conn.client_id, req.order_id))
        entry: dict[str, Any] = {
            "client_id": conn.client_id, "order_id": req.order_id, "perm_id": existing,
            "account": req.account, "symbol": q.symbol, "con_id": q.con_id, "sec_type": q.sec_type,
            "requested_con_id": q.con_id, "exchange": q.exchange, "action": req.action,
            "qty": req.qty, "order_type": req.order_type, "limit_price": req.limit_price,
            "order_ref": req.order_ref, "tif": req.tif, "transmit": req.transmit,
            "what_if": req.what_if, "modify": existing is not None,
            "outcome": "", "error_code": None, "time": time.time(),
        }
        if not req.what_if:
            self.placed.append(entry)
        try:
            if self.reject_left > 0 and not req.what_if:
                self.reject_left -= 1
                raise Reject(self.reject_code, self.reject_message)
            try:
                spec = self.book.contracts.resolve(q, implicit_stocks=self.implicit_stocks)
            except NoSecurityDefinition:
                raise Reject(200, NO_SECURITY_DEFINITION) from None
            entry.update(symbol=spec.symbol, con_id=spec.con_id, sec_type=spec.sec_type)
            account = check_order(req, self.accounts)
            if req.what_if:
                self._send_what_if(conn, req, account, spec)
                return
            if existing is not None:
                self._modify(self.book.orders[existing], req)
                entry["outcome"] = "modified"
                return
            order = self.book.new_order(
                order_id=req.order_id, client_id=conn.client_id, account=account, contract=spec,
                exchange=q.exchange, action=req.action, qty=req.qty, order_type=req.order_type,
                limit_price=req.limit_price, aux_price=req.aux_price, tif=req.tif or "DAY",
                order_ref=req.order_ref, outside_rth=req.outside_rth,
            )
            entry["perm_id"] = order.perm_id
            entry["outcome"] = "working"
            self.publish_order(order)
            if order.order_type == "MKT":
                qty = order.qty if self.market_liquidity is None else min(order.qty, self.market_liquidity)
                if qty > 0:
                    self.fill(order, qty, self.book.fill_price(order))
                entry["outcome"] = "filled" if qty >= order.qty else "working"
        except Reject as rej:
            entry["outcome"] = "rejected"
            entry["error_code"] = rej.code
            conn.error(req.order_id, rej.code, rej.message)

    def _send_what_if(self, conn: Conn, req: PlaceRequest, account: str, spec: ContractSpec) -> None:
        price = req.limit_price or self.book.mark(spec)
        notional = req.qty * price * spec.factor
        preview = Order(
            perm_id=0, order_id=req.order_id, client_id=conn.client_id or 0, account=account,
            contract=spec, exchange=req.contract.exchange, action=req.action, qty=req.qty,
            order_type=req.order_type, limit_price=req.limit_price, aux_price=req.aux_price,
            tif=req.tif, order_ref=req.order_ref, status="PreSubmitted",
        )
        conn.send(*wire.open_order_fields(preview, what_if_margin=f"{notional * 0.25:.2f}"))

    def _modify(self, order: Order, req: PlaceRequest) -> None:
        if not order.working:
            if order.status == "Filled":
                raise Reject(104, "Can't modify a filled order.")
            raise Reject(103, "Duplicate order id")
        if req.qty < order.filled:
            raise Reject(201, "Order rejected - reason:Quantity is below the filled quantity")
        order.qty, order.order_type = req.qty, req.order_type
        order.limit_price, order.aux_price = req.limit_price, req.aux_price
        order.order_ref, order.tif = req.order_ref, req.tif or order.tif
        self.publish_order(order)
        if order.order_type == "MKT":
            self.fill(order, order.remaining, self.book.fill_price(order))

    def on_cancel_order(self, conn: Conn, fields: list[str]) -> None:
        assert conn.client_id is not None
        r = Reader(fields)
        r.integer()  # version
        order_id = r.integer()
        entry: dict[str, Any] = {
            "client_id": conn.client_id, "order_id": order_id, "outcome": "",
            "error_code": None, "time": time.time(),
        }
        self.cancels.append(entry)
        perm = self.book.by_key.get((conn.client_id, order_id))
        order = self.book.orders.get(perm) if perm is not None else None
        if order is None:
            # Also the answer for another client's order: IB only lets the owner cancel.
            entry["outcome"], entry["error_code"] = "not_found", 10147
            conn.error(order_id, 10147, f"OrderId {order_id} that needs to be cancelled is not found.")
            return
        self.race_cancel(order)
        if not order.working:
            entry["outcome"], entry["error_code"] = "too_late", self.cancel_too_late_code
            if self.cancel_too_late_code == 161:
                text = ("Cancel attempted when order is not in a cancellable state. "
                        f"Order permId = {order.perm_id}")
            else:
                text = (f"OrderId {order_id} that needs to be cancelled cannot be cancelled, "
                        f"state: {order.status}.")
            conn.error(order_id, self.cancel_too_late_code, text)
            return
        entry["outcome"] = "cancelled" if not order.filled else "partially_filled_then_cancelled"
        self.cancel(order)

    def on_global_cancel(self, conn: Conn, fields: list[str]) -> None:
        self.global_cancel_count += 1
        for order in list(self.book.orders.values()):
            if order.working:
                self.race_cancel(order)
                if order.working:
                    self.cancel(order)
