"""A fake Interactive Brokers gateway speaking the real TWS API wire protocol.

The gateway is a small, in-memory broker for US stocks that the real
``ib_async`` client (2.1.0) can connect to and trade against in tests.  It is
written from the protocol description (message ids and field orders as the
client encodes/decodes them); no client code is reused.

Guarantees
----------
* Wire protocol: the v100+ handshake (``"API\\0"`` + length-prefixed
  ``"vMIN..MAX"``), answered with server version :data:`SERVER_VERSION` and a
  connection time, then ``startApi``; every message afterwards is framed as a
  4-byte big-endian length followed by NUL-terminated fields.  All outgoing
  messages use the field layout that a client negotiated at
  :data:`SERVER_VERSION` expects.
* Everything ``IB.connect()`` issues at startup is answered with its ``...End``
  message, so connect never waits for a timeout.
* All state lives on one asyncio loop in a background thread.  The control
  API (``set_price``, ``add_working_order``, fault switches, snapshots ...) may
  be called from any other thread: each call is executed on the loop thread
  and returns only after it took effect (including messages pushed to clients).
* Orders are identified like at IB: by ``(client_id, order_id)``; every order
  additionally has a gateway-unique ``perm_id``.  A client may only cancel its
  own orders (as at IB); ``reqGlobalCancel`` cancels everybody's.

Run ``python -m tests.fake_ib.gateway --port N`` to use it as a process; it
prints ``READY <port>`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import signal
import struct
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

__all__ = ["FakeGateway", "SERVER_VERSION"]

log = logging.getLogger("tests.fake_ib")

#: Protocol version announced in the handshake; the newest ib_async 2.1.0 speaks.
SERVER_VERSION = 178
#: Messages per second per connection that IB tolerates before error 100.
PACING_LIMIT = 50
#: Length of the sliding pacing window.  Slightly under a second because receive
#: times jitter by a few ms: ib_async's own throttle (45 msgs, then the next 45
#: exactly 1.000 s later by its clock) must never be flagged.
PACING_WINDOW = 0.95
#: Price used for a market fill when the test never called ``set_price``.
DEFAULT_PRICE = 100.0
#: IB's "unset double"; sent where TWS sends it (e.g. realizedPNL of an opening fill).
UNSET_DOUBLE = 1.7976931348623157e308

# Messages sent by the client (only the ones we understand).
IN_REQ_MKT_DATA = 1
IN_CANCEL_MKT_DATA = 2
IN_PLACE_ORDER = 3
IN_CANCEL_ORDER = 4
IN_REQ_OPEN_ORDERS = 5
IN_REQ_ACCOUNT_UPDATES = 6
IN_REQ_EXECUTIONS = 7
IN_REQ_IDS = 8
IN_REQ_CONTRACT_DETAILS = 9
IN_REQ_AUTO_OPEN_ORDERS = 15
IN_REQ_ALL_OPEN_ORDERS = 16
IN_REQ_MANAGED_ACCTS = 17
IN_REQ_CURRENT_TIME = 49
IN_REQ_GLOBAL_CANCEL = 58
IN_REQ_MARKET_DATA_TYPE = 59
IN_REQ_POSITIONS = 61
IN_REQ_ACCOUNT_SUMMARY = 62
IN_CANCEL_ACCOUNT_SUMMARY = 63
IN_CANCEL_POSITIONS = 64
IN_START_API = 71
IN_REQ_POSITIONS_MULTI = 74
IN_CANCEL_POSITIONS_MULTI = 75
IN_REQ_ACCOUNT_UPDATES_MULTI = 76
IN_CANCEL_ACCOUNT_UPDATES_MULTI = 77
IN_REQ_COMPLETED_ORDERS = 99

# Messages sent by the server.
OUT_TICK_PRICE = 1
OUT_ORDER_STATUS = 3
OUT_ERROR = 4
OUT_OPEN_ORDER = 5
OUT_ACCOUNT_VALUE = 6
OUT_PORTFOLIO_VALUE = 7
OUT_ACCOUNT_UPDATE_TIME = 8
OUT_NEXT_VALID_ID = 9
OUT_CONTRACT_DATA = 10
OUT_EXECUTION_DATA = 11
OUT_MANAGED_ACCOUNTS = 15
OUT_CURRENT_TIME = 49
OUT_CONTRACT_DATA_END = 52
OUT_OPEN_ORDER_END = 53
OUT_ACCOUNT_DOWNLOAD_END = 54
OUT_EXECUTION_DATA_END = 55
OUT_TICK_SNAPSHOT_END = 57
OUT_MARKET_DATA_TYPE = 58
OUT_COMMISSION_REPORT = 59
OUT_POSITION = 61
OUT_POSITION_END = 62
OUT_ACCOUNT_SUMMARY = 63
OUT_ACCOUNT_SUMMARY_END = 64
OUT_POSITION_MULTI = 71
OUT_POSITION_MULTI_END = 72
OUT_ACCOUNT_UPDATE_MULTI = 73
OUT_ACCOUNT_UPDATE_MULTI_END = 74
OUT_COMPLETED_ORDER = 101
OUT_COMPLETED_ORDERS_END = 102

WORKING_STATES = frozenset({"PendingSubmit", "PreSubmitted", "Submitted"})
# The only listing exchange we model; positions report it in ``exchange`` like TWS does.
PRIMARY_EXCHANGE = "NASDAQ"
# Static account values reported by account updates / summaries.
ACCOUNT_VALUES: tuple[tuple[str, str, str], ...] = (
    ("AccountType", "INDIVIDUAL", ""),
    ("NetLiquidation", "1000000.00", "USD"),
    ("TotalCashValue", "1000000.00", "USD"),
    ("AvailableFunds", "1000000.00", "USD"),
    ("BuyingPower", "4000000.00", "USD"),
)

T = TypeVar("T")


class _ParseError(ValueError):
    """A client message did not have the field layout of SERVER_VERSION."""


class _Reject(Exception):
    """An order is refused; carries the IB error code and text to send."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Order:
    perm_id: int
    order_id: int
    client_id: int
    account: str
    symbol: str
    con_id: int
    exchange: str
    action: str
    qty: float
    order_type: str
    limit_price: float | None
    aux_price: float | None
    tif: str
    order_ref: str
    outside_rth: bool = False
    status: str = "Submitted"
    filled: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    completed_time: str = ""
    completed_status: str = ""

    @property
    def remaining(self) -> float:
        return max(self.qty - self.filled, 0.0)

    @property
    def working(self) -> bool:
        return self.status in WORKING_STATES


@dataclass
class _Position:
    account: str
    symbol: str
    con_id: int
    qty: float = 0.0
    avg_cost: float = 0.0
    realized_pnl: float = 0.0


@dataclass
class _Execution:
    exec_id: str
    time: str
    order: _Order
    side: str
    shares: float
    price: float
    cum_qty: float
    avg_price: float
    commission: float
    realized_pnl: float | None


@dataclass
class _PlaceRequest:
    """The fields of a placeOrder message the fake acts upon."""

    order_id: int
    con_id: int
    symbol: str
    sec_type: str
    exchange: str
    currency: str
    action: str
    qty: float
    order_type: str
    limit_price: float | None
    aux_price: float | None
    tif: str
    account: str
    order_ref: str
    transmit: bool
    outside_rth: bool
    what_if: bool
    has_conditions: bool


class _Reader:
    """Sequential reader over the fields of one client message."""

    def __init__(self, fields: list[str], start: int = 1) -> None:
        self._fields = fields
        self._pos = start

    def text(self) -> str:
        if self._pos >= len(self._fields):
            raise _ParseError(f"message too short ({len(self._fields)} fields)")
        value = self._fields[self._pos]
        self._pos += 1
        return value

    def integer(self, default: int = 0) -> int:
        value = self.text()
        try:
            return int(value) if value else default
        except ValueError as exc:
            raise _ParseError(f"field {self._pos - 1}: {value!r} is not an int") from exc

    def number(self) -> float | None:
        value = self.text()
        if not value:
            return None
        if value == "Infinite":
            return float("inf")
        try:
            return float(value)
        except ValueError as exc:
            raise _ParseError(f"field {self._pos - 1}: {value!r} is not a float") from exc

    def flag(self) -> bool:
        return self.integer() != 0

    def skip(self, n: int) -> None:
        for _ in range(n):
            self.text()

    def left(self) -> int:
        return len(self._fields) - self._pos


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "1" if value else "0"
    return str(value)


def _frame(fields: Iterable[Any]) -> bytes:
    payload = "".join(_fmt(f) + "\0" for f in fields).encode()
    return struct.pack(">I", len(payload)) + payload


def _ib_time(t: float | None = None) -> str:
    # "yyyymmdd hh:mm:ss tz" with a single space is what ib_async parses with a zone.
    return time.strftime("%Y%m%d %H:%M:%S", time.gmtime(t)) + " UTC"


def con_id_for(symbol: str) -> int:
    """Deterministic contract id of a stock symbol (stable across processes)."""
    return 1_000_000 + zlib.crc32(symbol.encode()) % 90_000_000


class _Conn:
    """One client connection; only touched on the gateway loop."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.client_id: int | None = None
        self.recent: deque[float] = deque()  # receive times of accepted messages, last second
        self.positions_subscribed = False
        self.account_updates: str | None = None
        self.mkt_data: dict[int, str] = {}  # reqId -> symbol of streaming subscriptions
        self.closed = False

    def send(self, *fields: Any) -> None:
        if not self.closed:
            self.writer.write(_frame(fields))

    def error(self, req_id: int, code: int, message: str) -> None:
        # version 2; advancedOrderRejectJson is present from server version 166.
        self.send(OUT_ERROR, 2, req_id, code, message, "")

    def abort(self) -> None:
        """Drop the socket at once (unsent data is lost), like a crashed gateway."""
        self.closed = True
        self.writer.transport.abort()

    def close(self) -> None:
        """Close after flushing what was already written."""
        self.closed = True
        self.writer.close()


class FakeGateway:
    """In-memory IB gateway for stocks (SMART/USD) on a background asyncio loop.

    Public counters and logs (``placed_orders``, ``cancel_requests``,
    ``global_cancel_count``, ``pacing_violations``, ``internal_errors``) are
    updated on the gateway loop before any reply to the triggering message
    is written, so a client that has seen the reply also sees the update.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        accounts: Iterable[str] = ("DU111111", "DU222222"),
        master_client_id: int | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.accounts: tuple[str, ...] = tuple(accounts)
        if not self.accounts:
            raise ValueError("at least one account is required")
        #: A client with this id receives updates of every client's orders (TWS "Master API client ID").
        self.master_client_id = master_client_id
        #: Artificial latency applied before handling each received message.
        self.delay_ms: float = 0.0
        #: Error code for cancelling an order that is already done (IB uses 10148, older TWS 161).
        self.cancel_too_late_code: int = 10148

        self.global_cancel_count = 0
        self.pacing_violations = 0
        self._placed: list[dict[str, Any]] = []
        self._cancels: list[dict[str, Any]] = []
        self._errors: list[str] = []
        self._unhandled: list[list[str]] = []

        self._orders: dict[int, _Order] = {}  # perm_id -> order, insertion ordered
        self._by_key: dict[tuple[int, int], int] = {}  # (client_id, order_id) -> perm_id
        self._positions: dict[tuple[str, str], _Position] = {}
        self._prices: dict[str, float] = {}
        self._executions: list[_Execution] = []
        self._next_order_id = 1
        self._next_perm_id = 1_000_001
        self._exec_seq = 0

        self._reject_left = 0
        self._reject_code = 201
        self._reject_message = ""
        self._partial_on_cancel: dict[int, float] = {}  # perm_id -> qty filled when cancel arrives
        self._fill_on_cancel: set[int] = set()  # perm_ids that fill completely when cancel arrives
        self._paused_until = 0.0

        self._conns: set[_Conn] = set()
        self._dispatch = self._handlers()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._reopen: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeGateway:
        """Start listening; returns once the port accepts connections (``self.port`` is set)."""
        if self._thread is not None:
            raise RuntimeError("gateway already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            try:
                loop.run_until_complete(self._listen())
            except BaseException as exc:  # report bind errors to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                # _shutdown aborted every socket: let the session tasks see that and end by
                # themselves (cancelling a stream handler makes asyncio log a spurious error).
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                if pending:
                    loop.run_until_complete(asyncio.wait(pending, timeout=2))
                for task in pending:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.close()

        self._thread = threading.Thread(target=run, name="FakeGateway", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close the listener and every client connection, then end the loop thread."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        self._call(self._shutdown)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> FakeGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    def _shutdown(self) -> None:
        if self._reopen is not None:
            self._reopen.cancel()
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self._conns):
            conn.abort()
        self._conns.clear()

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

    # ------------------------------------------------------------------ control API

    def set_price(self, symbol: str, price: float) -> None:
        """Set the last price used for market fills; streams it to market-data subscribers."""
        self._call(self._set_price, symbol, float(price))

    def set_position(self, account: str, symbol: str, qty: float, avg_cost: float) -> None:
        """Overwrite a position; clients subscribed to positions/account updates are told."""
        self._call(self._set_position, account, symbol, float(qty), float(avg_cost))

    def add_working_order(
        self,
        account: str,
        symbol: str,
        action: str,
        qty: float,
        limit_price: float,
        order_ref: str = "",
        client_id: int = 0,
    ) -> int:
        """Create a working LMT DAY order as if placed by ``client_id`` (0 = TWS / manual).

        Returns its order id (unique gateway-wide).  A connected client with that id
        (or the master client) is sent openOrder + orderStatus right away.
        """
        return self._call(
            self._add_working_order, account, symbol, action.upper(), float(qty),
            float(limit_price), order_ref, int(client_id),
        )

    def fill_order(
        self, order_id: int, qty: float | None = None, price: float | None = None,
        client_id: int | None = None,
    ) -> None:
        """Fill a working order (default: all of the remainder at its limit or last price)."""
        self._call(self._fill_order, order_id, qty, price, client_id)

    def orders(self) -> list[dict[str, Any]]:
        """Snapshot of every order the gateway knows (working and done), oldest first."""
        return self._call(lambda: [self._order_dict(o) for o in self._orders.values()])

    def positions(self) -> list[dict[str, Any]]:
        """Snapshot of non-zero positions: account, symbol, con_id, qty, avg_cost."""
        return self._call(
            lambda: [
                {"account": p.account, "symbol": p.symbol, "con_id": p.con_id,
                 "qty": p.qty, "avg_cost": p.avg_cost}
                for p in self._positions.values() if p.qty
            ]
        )

    @property
    def placed_orders(self) -> list[dict[str, Any]]:
        """Every placeOrder processed (new, modify, rejected), oldest first."""
        return self._call(lambda: [dict(p) for p in self._placed])

    @property
    def cancel_requests(self) -> list[dict[str, Any]]:
        """Every cancelOrder processed with its outcome, oldest first."""
        return self._call(lambda: [dict(c) for c in self._cancels])

    @property
    def internal_errors(self) -> list[str]:
        """Exceptions raised inside the fake while handling messages (should stay empty)."""
        return self._call(lambda: list(self._errors))

    @property
    def unhandled_messages(self) -> list[list[str]]:
        """Messages with an id the fake does not implement (they get no answer)."""
        return self._call(lambda: [list(m) for m in self._unhandled])

    @property
    def connected_client_ids(self) -> list[int]:
        """Client ids of the API sessions currently open."""
        return self._call(
            lambda: sorted(
                c.client_id for c in self._conns if c.client_id is not None and not c.closed
            )
        )

    def reject_next_orders(
        self, n: int, code: int = 201,
        message: str = "Order rejected - reason:Rejected by fake gateway",
    ) -> None:
        """Reject the next ``n`` placeOrder messages with error ``code`` (no order is created)."""
        self._call(self._set_reject, int(n), int(code), message)

    def partial_fill_on_cancel(
        self, order_id: int, filled_qty: float, client_id: int | None = None
    ) -> None:
        """When this order's cancel arrives, first fill ``filled_qty`` of it, then cancel the rest."""
        self._call(self._arm_partial, order_id, float(filled_qty), client_id)

    def fill_before_cancel(self, order_id: int, client_id: int | None = None) -> None:
        """When this order's cancel arrives, it fills completely first; the cancel is 'too late'."""
        self._call(self._arm_fill, order_id, client_id)

    def drop_connections(self) -> None:
        """Abort every client socket (RST); the listener stays up so clients can reconnect."""
        self._call(self._drop_connections)

    def pause_accepting(self, seconds: float) -> None:
        """Stop listening for ``seconds`` (connects are refused), then listen on the same port."""
        self._call(self._pause, float(seconds))

    # ------------------------------------------------------------------ control (loop side)

    def _set_price(self, symbol: str, price: float) -> None:
        self._prices[symbol] = price
        for conn in self._conns:
            for req_id, sym in conn.mkt_data.items():
                if sym == symbol:
                    conn.send(OUT_TICK_PRICE, 6, req_id, 4, price, 100, 0)

    def _set_position(self, account: str, symbol: str, qty: float, avg_cost: float) -> None:
        self._check_account(account)
        pos = self._position(account, symbol)
        pos.qty, pos.avg_cost = qty, avg_cost
        self._publish_position(pos)

    def _add_working_order(
        self, account: str, symbol: str, action: str, qty: float, limit_price: float,
        order_ref: str, client_id: int,
    ) -> int:
        self._check_account(account)
        if action not in ("BUY", "SELL"):
            raise ValueError(f"action must be BUY or SELL, not {action!r}")
        order_id = self._next_order_id
        order = self._new_order(
            order_id=order_id, client_id=client_id, account=account, symbol=symbol,
            exchange="SMART", action=action, qty=qty, order_type="LMT",
            limit_price=limit_price, aux_price=None, tif="DAY", order_ref=order_ref,
        )
        for conn in self._order_conns(order):
            self._send_open_order(conn, order)
            self._send_status(conn, order)
        return order_id

    def _fill_order(
        self, order_id: int, qty: float | None, price: float | None, client_id: int | None
    ) -> None:
        order = self._find(order_id, client_id)
        if not order.working:
            raise ValueError(f"order {order_id} is {order.status}, not working")
        fill_qty = order.remaining if qty is None else min(float(qty), order.remaining)
        self._fill(order, fill_qty, self._fill_price(order) if price is None else float(price))

    def _set_reject(self, n: int, code: int, message: str) -> None:
        self._reject_left, self._reject_code, self._reject_message = n, code, message

    def _arm_partial(self, order_id: int, qty: float, client_id: int | None) -> None:
        self._partial_on_cancel[self._find(order_id, client_id).perm_id] = qty

    def _arm_fill(self, order_id: int, client_id: int | None) -> None:
        self._fill_on_cancel.add(self._find(order_id, client_id).perm_id)

    def _drop_connections(self) -> None:
        for conn in list(self._conns):
            conn.abort()  # its session task deregisters it; closed sessions never count as "in use"

    def _pause(self, seconds: float) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._reopen is not None:
            self._reopen.cancel()
        assert self._loop is not None

        def reopen() -> None:
            self._reopen = None
            task = self._loop.create_task(self._listen())  # type: ignore[union-attr]
            task.add_done_callback(self._report_task_error)

        self._reopen = self._loop.call_later(seconds, reopen)

    def _report_task_error(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._errors.append(repr(task.exception()))

    # ------------------------------------------------------------------ connection handling

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Conn(writer)
        self._conns.add(conn)
        try:
            if await reader.readexactly(4) != b"API\0":
                return
            if not self._version_ok((await self._read_frame(reader)).decode(errors="replace")):
                return
            conn.send(SERVER_VERSION, _ib_time())
            while not conn.closed:
                fields = (await self._read_frame(reader)).decode(errors="replace").split("\0")
                fields.pop()  # every field is NUL-terminated, so the last split is empty
                received = asyncio.get_running_loop().time()
                if self.delay_ms:
                    await asyncio.sleep(self.delay_ms / 1000)
                if conn.closed:
                    break
                self._on_message(conn, fields, received)
        except (asyncio.IncompleteReadError, ConnectionError, _ParseError):
            pass  # client went away or spoke garbage: just drop the session
        except asyncio.CancelledError:
            pass  # only at shutdown; ending normally keeps asyncio from logging it
        finally:
            self._conns.discard(conn)
            conn.closed = True
            writer.close()

    @staticmethod
    async def _read_frame(reader: asyncio.StreamReader) -> bytes:
        (size,) = struct.unpack(">I", await reader.readexactly(4))
        if size > 10_000_000:
            raise _ParseError(f"absurd message size {size}")
        return await reader.readexactly(size)

    @staticmethod
    def _version_ok(text: str) -> bool:
        # "v157..178" optionally followed by " +options"; we only speak SERVER_VERSION.
        try:
            lo, hi = text.split()[0].lstrip("v").split("..")
            return int(lo) <= SERVER_VERSION <= int(hi)
        except (ValueError, IndexError):
            return False

    def _on_message(self, conn: _Conn, fields: list[str], received: float) -> None:
        recent = conn.recent
        while recent and received - recent[0] >= PACING_WINDOW:
            recent.popleft()
        if len(recent) >= PACING_LIMIT:
            # Like TWS, the excess message is not acted upon.
            self.pacing_violations += 1
            conn.error(
                -1, 100,
                f"Max rate of messages per second has been exceeded:max={PACING_LIMIT} "
                f"rec={len(recent) + 1}",
            )
            return
        recent.append(received)
        try:
            msg_id = int(fields[0])
            if conn.client_id is None and msg_id != IN_START_API:
                self._unhandled.append(fields)
                return
            handler = self._dispatch.get(msg_id)
            if handler is None:
                self._unhandled.append(fields)
                return
            handler(conn, fields)
        except _ParseError as exc:
            self._errors.append(f"parse error in {fields[:3]}: {exc}")
            conn.error(-1, 320, f"Error reading request: {exc}")
        except Exception as exc:  # a bug in the fake must be visible to tests, not hang them
            log.exception("fake gateway failed on %s", fields)
            self._errors.append(f"{type(exc).__name__}: {exc} while handling {fields[:3]}")

    def _handlers(self) -> dict[int, Callable[[_Conn, list[str]], None]]:
        return {
            IN_START_API: self._on_start_api,
            IN_REQ_IDS: lambda c, f: c.send(OUT_NEXT_VALID_ID, 1, self._next_order_id),
            IN_REQ_MANAGED_ACCTS: lambda c, f: c.send(OUT_MANAGED_ACCOUNTS, 1, ",".join(self.accounts)),
            IN_REQ_CURRENT_TIME: lambda c, f: c.send(OUT_CURRENT_TIME, 1, int(time.time())),
            # Client 0 always gets the orders of "client 0" (our stand-in for manual TWS
            # orders), as if auto-binding were on; nothing to answer.
            IN_REQ_AUTO_OPEN_ORDERS: lambda c, f: None,
            IN_REQ_OPEN_ORDERS: self._on_open_orders,
            IN_REQ_ALL_OPEN_ORDERS: self._on_open_orders,
            IN_REQ_COMPLETED_ORDERS: self._on_completed_orders,
            IN_REQ_POSITIONS: self._on_positions,
            IN_CANCEL_POSITIONS: self._on_cancel_positions,
            IN_REQ_POSITIONS_MULTI: self._on_positions_multi,
            IN_CANCEL_POSITIONS_MULTI: lambda c, f: None,
            IN_REQ_ACCOUNT_UPDATES: self._on_account_updates,
            IN_REQ_ACCOUNT_UPDATES_MULTI: self._on_account_updates_multi,
            IN_CANCEL_ACCOUNT_UPDATES_MULTI: lambda c, f: None,
            IN_REQ_ACCOUNT_SUMMARY: self._on_account_summary,
            IN_CANCEL_ACCOUNT_SUMMARY: lambda c, f: None,
            IN_REQ_EXECUTIONS: self._on_executions,
            IN_REQ_CONTRACT_DETAILS: self._on_contract_details,
            IN_REQ_MKT_DATA: self._on_mkt_data,
            IN_CANCEL_MKT_DATA: self._on_cancel_mkt_data,
            IN_REQ_MARKET_DATA_TYPE: lambda c, f: None,
            IN_PLACE_ORDER: self._on_place_order,
            IN_CANCEL_ORDER: self._on_cancel_order,
            IN_REQ_GLOBAL_CANCEL: self._on_global_cancel,
        }

    # ------------------------------------------------------------------ session / sync requests

    def _on_start_api(self, conn: _Conn, fields: list[str]) -> None:
        r = _Reader(fields)
        r.integer()  # version
        client_id = r.integer()
        if conn.client_id is not None:
            return
        if any(c.client_id == client_id for c in self._conns if c is not conn and not c.closed):
            conn.error(-1, 326, "Unable to connect as the client id is already in use. "
                               "Retry with a unique client id.")
            conn.close()
            self._conns.discard(conn)
            return
        conn.client_id = client_id
        conn.send(OUT_MANAGED_ACCOUNTS, 1, ",".join(self.accounts))
        conn.send(OUT_NEXT_VALID_ID, 1, self._next_order_id)
        # TWS greets every session with farm status notices (codes 2100-2199 are warnings).
        conn.error(-1, 2104, "Market data farm connection is OK:usfarm")
        conn.error(-1, 2106, "HMDS data farm connection is OK:ushmds")
        conn.error(-1, 2158, "Sec-def data farm connection is OK:secdefil")

    def _on_open_orders(self, conn: _Conn, fields: list[str]) -> None:
        everyone = int(fields[0]) == IN_REQ_ALL_OPEN_ORDERS
        for order in self._orders.values():
            if order.working and (everyone or self._sees(conn, order)):
                self._send_open_order(conn, order)
                self._send_status(conn, order)
        conn.send(OUT_OPEN_ORDER_END, 1)

    def _on_completed_orders(self, conn: _Conn, fields: list[str]) -> None:
        for order in self._orders.values():
            if order.status in ("Filled", "Cancelled"):
                conn.send(*self._completed_order_fields(order))
        conn.send(OUT_COMPLETED_ORDERS_END)

    def _on_positions(self, conn: _Conn, fields: list[str]) -> None:
        conn.positions_subscribed = True
        # Positions closed during the session are reported with quantity 0, as TWS does.
        for pos in self._positions.values():
            conn.send(*self._position_fields(pos))
        conn.send(OUT_POSITION_END, 1)

    def _on_cancel_positions(self, conn: _Conn, fields: list[str]) -> None:
        conn.positions_subscribed = False

    def _on_positions_multi(self, conn: _Conn, fields: list[str]) -> None:
        r = _Reader(fields)
        r.integer()
        req_id, account, model = r.integer(), r.text(), r.text()
        for pos in self._positions.values():
            if account in ("", "All", pos.account):
                conn.send(OUT_POSITION_MULTI, 1, req_id, pos.account, *self._contract11(pos.symbol, PRIMARY_EXCHANGE),
                          pos.qty, pos.avg_cost, model)
        conn.send(OUT_POSITION_MULTI_END, 1, req_id)

    def _on_account_updates(self, conn: _Conn, fields: list[str]) -> None:
        r = _Reader(fields)
        r.integer()
        subscribe, account = r.flag(), r.text()
        if not subscribe:
            conn.account_updates = None
            return
        account = account or self.accounts[0]
        conn.account_updates = account
        for key, value, currency in ACCOUNT_VALUES:
            conn.send(OUT_ACCOUNT_VALUE, 2, key, value, currency, account)
        for pos in self._positions.values():
            if pos.account == account and pos.qty:
                conn.send(*self._portfolio_fields(pos))
        conn.send(OUT_ACCOUNT_UPDATE_TIME, 1, time.strftime("%H:%M", time.gmtime()))
        conn.send(OUT_ACCOUNT_DOWNLOAD_END, 1, account)

    def _on_account_updates_multi(self, conn: _Conn, fields: list[str]) -> None:
        r = _Reader(fields)
        r.integer()
        req_id, account, model = r.integer(), r.text(), r.text()
        for acct in self.accounts:
            if account in ("", "All", acct):
                for key, value, currency in ACCOUNT_VALUES:
                    conn.send(OUT_ACCOUNT_UPDATE_MULTI, 1, req_id, acct, model, key, value, currency)
        conn.send(OUT_ACCOUNT_UPDATE_MULTI_END, 1, req_id)

    def _on_account_summary(self, conn: _Conn, fields: list[str]) -> None:
        r = _Reader(fields)
        r.integer()
        req_id, _group, tags = r.integer(), r.text(), set(r.text().split(","))
        for acct in self.accounts:
            for key, value, currency in ACCOUNT_VALUES:
                if key in tags:
                    conn.send(OUT_ACCOUNT_SUMMARY, 1, req_id, acct, key, value, currency)
        conn.send(OUT_ACCOUNT_SUMMARY_END, 1, req_id)

    def _on_executions(self, conn: _Conn, fields: list[str]) -> None:
        r = _Reader(fields)
        r.integer()
        req_id, client_id, account = r.integer(), r.integer(), r.text()
        _since, symbol, _sec_type, _exchange, side = r.text(), r.text(), r.text(), r.text(), r.text()
        for ex in self._executions:
            o = ex.order
            if client_id and o.client_id != client_id:
                continue
            if (account and o.account != account) or (symbol and o.symbol != symbol):
                continue
            if side and side[0] != ex.side[0]:  # "BUY"/"BOT", "SELL"/"SLD"
                continue
            conn.send(*self._exec_fields(req_id, ex))
            conn.send(*self._commission_fields(ex))
        conn.send(OUT_EXECUTION_DATA_END, 1, req_id)

    def _on_contract_details(self, conn: _Conn, fields: list[str]) -> None:
        r = _Reader(fields)
        r.integer()  # version
        req_id = r.integer()
        con_id, symbol, sec_type = r.integer(), r.text(), r.text()
        r.skip(4)  # lastTradeDate, strike, right, multiplier
        exchange, _primary, currency = r.text(), r.text(), r.text()
        symbol = symbol or self._symbol_of(con_id)
        if sec_type not in ("", "STK") or currency not in ("", "USD") or not symbol or (
            con_id and con_id != con_id_for(symbol)
        ):
            conn.error(req_id, 200, "No security definition has been found for the request")
            return
        conn.send(
            OUT_CONTRACT_DATA, req_id, symbol, "STK", "", 0.0, "", exchange or "SMART", "USD",
            symbol, "NMS", "NMS", con_id_for(symbol), 0.01, "",
            "LMT,MKT", "SMART," + PRIMARY_EXCHANGE, 1, 0, f"{symbol} INC", PRIMARY_EXCHANGE,
            "", "", "", "", "US/Eastern", "", "", "", "", 0,  # ... evMultiplier, numSecIds
            1, "", "", "26", "", "COMMON", 1, 1, 100,  # aggGroup .. suggestedSizeIncrement
        )
        conn.send(OUT_CONTRACT_DATA_END, 1, req_id)

    def _on_mkt_data(self, conn: _Conn, fields: list[str]) -> None:
        r = _Reader(fields)
        r.integer()  # version
        req_id, _con_id, symbol, sec_type = r.integer(), r.integer(), r.text(), r.text()
        r.skip(9)  # rest of the 12-field contract
        if sec_type == "BAG":
            conn.error(req_id, 200, "No security definition has been found for the request")
            return
        if r.flag():  # delta neutral contract
            r.skip(3)
        _ticks, snapshot = r.text(), r.flag()
        price = self._prices.get(symbol, DEFAULT_PRICE)
        for tick_type in (1, 2, 4, 9):  # bid, ask, last, close
            conn.send(OUT_TICK_PRICE, 6, req_id, tick_type, price, 100, 0)
        if snapshot:
            conn.send(OUT_TICK_SNAPSHOT_END, 1, req_id)
        else:
            conn.mkt_data[req_id] = symbol

    def _on_cancel_mkt_data(self, conn: _Conn, fields: list[str]) -> None:
        conn.mkt_data.pop(int(fields[2]), None)

    # ------------------------------------------------------------------ orders

    def _on_place_order(self, conn: _Conn, fields: list[str]) -> None:
        assert conn.client_id is not None
        req = self._parse_place_order(fields)
        existing = self._by_key.get((conn.client_id, req.order_id))
        entry: dict[str, Any] = {
            "client_id": conn.client_id, "order_id": req.order_id, "perm_id": existing,
            "account": req.account, "symbol": req.symbol, "con_id": req.con_id,
            "exchange": req.exchange, "action": req.action, "qty": req.qty,
            "order_type": req.order_type, "limit_price": req.limit_price,
            "order_ref": req.order_ref, "tif": req.tif, "transmit": req.transmit,
            "what_if": req.what_if, "modify": existing is not None,
            "outcome": "", "error_code": None, "time": time.time(),
        }
        if not req.what_if:
            self._placed.append(entry)
        try:
            if self._reject_left > 0 and not req.what_if:
                self._reject_left -= 1
                raise _Reject(self._reject_code, self._reject_message)
            account, symbol = self._validate(req)
            if req.what_if:
                self._send_what_if(conn, req, account, symbol)
                return
            if existing is not None:
                self._modify(self._orders[existing], req)
                entry["outcome"] = "modified"
            else:
                order = self._new_order(
                    order_id=req.order_id, client_id=conn.client_id, account=account,
                    symbol=symbol, exchange=req.exchange, action=req.action, qty=req.qty,
                    order_type=req.order_type, limit_price=req.limit_price,
                    aux_price=req.aux_price, tif=req.tif or "DAY", order_ref=req.order_ref,
                    outside_rth=req.outside_rth,
                )
                entry["perm_id"] = order.perm_id
                entry["outcome"] = "working"
                for c in self._order_conns(order):
                    self._send_open_order(c, order)
                    self._send_status(c, order)
                if order.order_type == "MKT":
                    self._fill(order, order.qty, self._fill_price(order))
                    entry["outcome"] = "filled"
        except _Reject as rej:
            entry["outcome"] = "rejected"
            entry["error_code"] = rej.code
            conn.error(req.order_id, rej.code, rej.message)

    def _parse_place_order(self, fields: list[str]) -> _PlaceRequest:
        """Parse a placeOrder message laid out for SERVER_VERSION; every field must be consumed."""
        r = _Reader(fields)
        order_id = r.integer()
        con_id, symbol, sec_type = r.integer(), r.text(), r.text()
        r.skip(4)  # lastTradeDateOrContractMonth, strike, right, multiplier
        exchange, _primary, currency = r.text(), r.text(), r.text()
        r.skip(4)  # localSymbol, tradingClass, secIdType, secId
        action, qty, order_type = r.text(), r.number(), r.text()
        limit_price, aux_price, tif = r.number(), r.number(), r.text()
        _oca_group, account, _open_close, _origin = r.text(), r.text(), r.text(), r.integer()
        order_ref, transmit, _parent_id = r.text(), r.flag(), r.integer()
        r.skip(4)  # blockOrder, sweepToFill, displaySize, triggerMethod
        outside_rth = r.flag()
        r.skip(1)  # hidden
        if sec_type == "BAG":
            legs = r.integer()
            r.skip(8 * legs)
            r.skip(r.integer())  # order combo leg prices
            r.skip(2 * r.integer())  # smart combo routing params
        # sharesAllocation, discretionaryAmt, goodAfterTime, goodTillDate, faGroup,
        # faMethod, faPercentage (faProfile is gone since 177), modelCode, shortSaleSlot,
        # designatedLocation, exemptCode, ocaType, rule80A, settlingFirm, allOrNone, minQty,
        # percentOffset, eTradeOnly, firmQuoteOnly, nbboPriceCap, auctionStrategy,
        # startingPrice, stockRefPrice, delta, stockRangeLower, stockRangeUpper,
        # overridePercentageConstraints, volatility, volatilityType
        r.skip(29)
        if r.text():  # deltaNeutralOrderType
            r.skip(1 + 8)
        else:
            r.skip(1)  # deltaNeutralAuxPrice
        # continuousUpdate, referencePriceType, trailStopPrice, trailingPercent,
        # scaleInitLevelSize, scaleSubsLevelSize
        r.skip(6)
        increment = r.number()
        if increment is not None and 0 < increment < UNSET_DOUBLE:
            r.skip(7)
        r.skip(3)  # scaleTable, activeStartTime, activeStopTime
        if r.text():  # hedgeType
            r.skip(1)
        r.skip(4)  # optOutSmartRouting, clearingAccount, clearingIntent, notHeld
        if r.flag():  # delta neutral contract
            r.skip(3)
        if r.text():  # algoStrategy
            r.skip(2 * r.integer())
        r.skip(1)  # algoId
        what_if = r.flag()
        r.skip(4)  # orderMiscOptions, solicited, randomizeSize, randomizePrice
        if order_type in ("PEG BENCH", "PEGBENCH"):
            r.skip(5)
        has_conditions = r.integer() > 0
        if has_conditions:
            # Condition layouts vary per type; the fake refuses such orders below, and
            # cannot know where the message continues, so stop parsing here.
            return _PlaceRequest(
                order_id, con_id, symbol, sec_type, exchange, currency, action.upper(),
                qty or 0.0, order_type.upper(), limit_price, aux_price, tif.upper(), account,
                order_ref, transmit, outside_rth, what_if, True,
            )
        # adjustedOrderType .. usePriceMgmtAlgo (19), duration, postToAts, autoCancelParent,
        # advancedErrorOverride, manualOrderTime
        r.skip(19 + 5)
        if exchange == "IBKRATS":
            r.skip(1)  # minTradeQty
        if order_type in ("PEG BEST", "PEGBEST"):
            r.skip(1)
            if r.text() == "Infinite":
                r.skip(2)
        elif order_type in ("PEG MID", "PEGMID"):
            r.skip(2)
        if r.left():
            raise _ParseError(f"placeOrder has {r.left()} unexpected trailing fields")
        return _PlaceRequest(
            order_id, con_id, symbol, sec_type, exchange, currency, action.upper(),
            qty or 0.0, order_type.upper(), limit_price, aux_price, tif.upper(), account,
            order_ref, transmit, outside_rth, what_if, False,
        )

    def _validate(self, req: _PlaceRequest) -> tuple[str, str]:
        """Return (account, symbol) of an acceptable order or raise _Reject like TWS would."""
        symbol = req.symbol or self._symbol_of(req.con_id)
        if req.sec_type not in ("", "STK") or req.currency not in ("", "USD") or not symbol:
            raise _Reject(200, "No security definition has been found for the request")
        if req.con_id and req.con_id != con_id_for(symbol):
            raise _Reject(200, "No security definition has been found for the request")
        if req.has_conditions:
            raise _Reject(201, "Order rejected - reason:Order conditions are not supported by the fake gateway")
        if not req.exchange:
            raise _Reject(321, "Error validating request.-'bN' : cause - Missing order exchange")
        account = req.account
        if not account:
            if len(self.accounts) > 1:
                raise _Reject(321, "Error validating request.-'bN' : cause - "
                                   "The account code is required for this operation.")
            account = self.accounts[0]
        if account not in self.accounts:
            raise _Reject(321, f"Error validating request.-'bN' : cause - Invalid account code {account}")
        if req.action not in ("BUY", "SELL"):
            raise _Reject(321, f"Error validating request.-'bN' : cause - Invalid side {req.action}")
        if req.qty <= 0:
            raise _Reject(434, "The order size cannot be zero.")
        if req.order_type in ("LMT", "STP LMT") and req.limit_price is None:
            raise _Reject(321, "Error validating request.-'bN' : cause - Missing limit price")
        if req.order_type not in ("MKT", "LMT", "STP", "STP LMT"):
            raise _Reject(387, f"Unsupported order type for this exchange and security type: {req.order_type}")
        return account, symbol

    def _modify(self, order: _Order, req: _PlaceRequest) -> None:
        if not order.working:
            if order.status == "Filled":
                raise _Reject(104, "Can't modify a filled order.")
            raise _Reject(103, "Duplicate order id")
        if req.qty < order.filled:
            raise _Reject(201, "Order rejected - reason:Quantity is below the filled quantity")
        order.qty, order.order_type = req.qty, req.order_type
        order.limit_price, order.aux_price = req.limit_price, req.aux_price
        order.order_ref, order.tif = req.order_ref, req.tif or order.tif
        for c in self._order_conns(order):
            self._send_open_order(c, order)
            self._send_status(c, order)
        if order.order_type == "MKT":
            self._fill(order, order.remaining, self._fill_price(order))

    def _on_cancel_order(self, conn: _Conn, fields: list[str]) -> None:
        assert conn.client_id is not None
        r = _Reader(fields)
        r.integer()  # version
        order_id = r.integer()
        entry: dict[str, Any] = {
            "client_id": conn.client_id, "order_id": order_id, "outcome": "",
            "error_code": None, "time": time.time(),
        }
        self._cancels.append(entry)
        perm = self._by_key.get((conn.client_id, order_id))
        order = self._orders.get(perm) if perm is not None else None
        if order is None:
            # Also the answer for another client's order: IB only lets the owner cancel.
            entry["outcome"], entry["error_code"] = "not_found", 10147
            conn.error(order_id, 10147, f"OrderId {order_id} that needs to be cancelled is not found.")
            return
        self._race_cancel(order)
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
        self._cancel(order)

    def _on_global_cancel(self, conn: _Conn, fields: list[str]) -> None:
        self.global_cancel_count += 1
        for order in list(self._orders.values()):
            if order.working:
                self._race_cancel(order)
                if order.working:
                    self._cancel(order)

    def _race_cancel(self, order: _Order) -> None:
        """Apply an armed fill that 'wins the race' against an incoming cancel."""
        if not order.working:
            return
        if order.perm_id in self._fill_on_cancel:
            self._fill_on_cancel.discard(order.perm_id)
            self._fill(order, order.remaining, self._fill_price(order))
        elif order.perm_id in self._partial_on_cancel:
            qty = min(self._partial_on_cancel.pop(order.perm_id), order.remaining)
            if qty > 0:
                self._fill(order, qty, self._fill_price(order))

    def _cancel(self, order: _Order) -> None:
        order.status = "Cancelled"
        order.completed_time = _ib_time()
        order.completed_status = "Cancelled by Trader"
        for conn in self._order_conns(order):
            conn.error(order.order_id, 202, "Order Canceled - reason:")
            self._send_status(conn, order)

    def _fill(self, order: _Order, qty: float, price: float) -> None:
        """Execute ``qty`` of a working order at ``price`` and tell everybody concerned."""
        if qty <= 0:
            return
        order.avg_fill_price = (order.avg_fill_price * order.filled + price * qty) / (order.filled + qty)
        order.filled += qty
        order.last_fill_price = price
        if order.remaining <= 1e-9:
            order.status = "Filled"
            order.completed_time = _ib_time()
            order.completed_status = "Filled Size: " + _fmt(order.filled)
        pos = self._position(order.account, order.symbol)
        realized = self._apply_to_position(pos, qty if order.action == "BUY" else -qty, price)
        commission = max(1.0, round(0.005 * qty, 2))
        self._exec_seq += 1
        ex = _Execution(
            exec_id=f"0000f4a1.{order.perm_id:08x}.{self._exec_seq:02d}.01",
            time=_ib_time(), order=order, side="BOT" if order.action == "BUY" else "SLD",
            shares=qty, price=price, cum_qty=order.filled, avg_price=order.avg_fill_price,
            commission=commission,
            realized_pnl=None if realized is None else realized - commission,
        )
        self._executions.append(ex)
        for conn in self._order_conns(order):
            conn.send(*self._exec_fields(-1, ex))
            self._send_status(conn, order)
            conn.send(*self._commission_fields(ex))
        self._publish_position(pos)

    @staticmethod
    def _apply_to_position(pos: _Position, signed_qty: float, price: float) -> float | None:
        """Update quantity/average cost; return realized PnL if the fill reduced the position."""
        old = pos.qty
        new = old + signed_qty
        realized: float | None = None
        if old == 0 or (old > 0) == (signed_qty > 0):
            pos.avg_cost = (abs(old) * pos.avg_cost + abs(signed_qty) * price) / abs(new)
        else:
            closed = min(abs(old), abs(signed_qty))
            realized = closed * (price - pos.avg_cost) * (1 if old > 0 else -1)
            pos.realized_pnl += realized
            if abs(new) < 1e-9:
                new, pos.avg_cost = 0.0, 0.0
            elif (new > 0) != (old > 0):  # flipped through zero
                pos.avg_cost = price
        pos.qty = new
        return realized

    def _send_what_if(self, conn: _Conn, req: _PlaceRequest, account: str, symbol: str) -> None:
        notional = req.qty * (req.limit_price or self._prices.get(symbol, DEFAULT_PRICE))
        preview = _Order(
            perm_id=0, order_id=req.order_id, client_id=conn.client_id or 0, account=account,
            symbol=symbol, con_id=con_id_for(symbol), exchange=req.exchange, action=req.action,
            qty=req.qty, order_type=req.order_type, limit_price=req.limit_price,
            aux_price=req.aux_price, tif=req.tif, order_ref=req.order_ref, status="PreSubmitted",
        )
        margin = f"{notional * 0.25:.2f}"
        conn.send(*self._open_order_fields(preview, what_if_margin=margin))

    # ------------------------------------------------------------------ state helpers

    def _new_order(self, **kw: Any) -> _Order:
        order = _Order(perm_id=self._next_perm_id, con_id=con_id_for(kw["symbol"]), **kw)
        self._next_perm_id += 1
        self._next_order_id = max(self._next_order_id, order.order_id + 1)
        self._orders[order.perm_id] = order
        self._by_key[(order.client_id, order.order_id)] = order.perm_id
        return order

    def _find(self, order_id: int, client_id: int | None) -> _Order:
        matches = [
            o for o in self._orders.values()
            if o.order_id == order_id and (client_id is None or o.client_id == client_id)
        ]
        if not matches:
            raise KeyError(f"no order {order_id} (client_id={client_id})")
        if len(matches) > 1:
            raise KeyError(f"order id {order_id} is used by several clients; pass client_id")
        return matches[0]

    def _position(self, account: str, symbol: str) -> _Position:
        key = (account, symbol)
        if key not in self._positions:
            self._positions[key] = _Position(account, symbol, con_id_for(symbol))
        return self._positions[key]

    def _check_account(self, account: str) -> None:
        if account not in self.accounts:
            raise ValueError(f"unknown account {account!r}; gateway has {self.accounts}")

    def _symbol_of(self, con_id: int) -> str:
        known = {o.symbol for o in self._orders.values()}
        known |= {p.symbol for p in self._positions.values()} | set(self._prices)
        return next((s for s in known if con_id_for(s) == con_id), "")

    def _fill_price(self, order: _Order) -> float:
        # A resting limit order that gets hit trades at its limit; anything else at "the market".
        if order.order_type in ("LMT", "STP LMT") and order.limit_price is not None:
            return order.limit_price
        return self._prices.get(order.symbol, DEFAULT_PRICE)

    def _sees(self, conn: _Conn, order: _Order) -> bool:
        """Does ``conn`` get this order's live updates and see it in reqOpenOrders?"""
        return conn.client_id is not None and (
            conn.client_id == order.client_id or conn.client_id == self.master_client_id
        )

    def _order_conns(self, order: _Order) -> list[_Conn]:
        return [c for c in self._conns if self._sees(c, order)]

    def _publish_position(self, pos: _Position) -> None:
        for conn in self._conns:
            if conn.positions_subscribed:
                conn.send(*self._position_fields(pos))
            if conn.account_updates == pos.account:
                conn.send(*self._portfolio_fields(pos))

    @staticmethod
    def _order_dict(o: _Order) -> dict[str, Any]:
        d = asdict(o)
        d["remaining"] = o.remaining
        d.pop("completed_time")
        d.pop("completed_status")
        return d

    # ------------------------------------------------------------------ encoders

    @staticmethod
    def _contract11(symbol: str, exchange: str) -> list[Any]:
        # conId, symbol, secType, lastTradeDate, strike, right, multiplier, exchange,
        # currency, localSymbol, tradingClass
        return [con_id_for(symbol), symbol, "STK", "", 0.0, "", "", exchange, "USD", symbol, "NMS"]

    def _position_fields(self, pos: _Position) -> list[Any]:
        return [OUT_POSITION, 3, pos.account, *self._contract11(pos.symbol, PRIMARY_EXCHANGE),
                pos.qty, pos.avg_cost]

    def _portfolio_fields(self, pos: _Position) -> list[Any]:
        price = self._prices.get(pos.symbol, pos.avg_cost or DEFAULT_PRICE)
        value = pos.qty * price
        return [
            OUT_PORTFOLIO_VALUE, 8, pos.con_id, pos.symbol, "STK", "", 0.0, "", "",
            PRIMARY_EXCHANGE, "USD", pos.symbol, "NMS", pos.qty, price, value, pos.avg_cost,
            value - pos.qty * pos.avg_cost, pos.realized_pnl, pos.account,
        ]

    @staticmethod
    def _status_fields(o: _Order) -> list[Any]:
        return [OUT_ORDER_STATUS, o.order_id, o.status, o.filled, o.remaining, o.avg_fill_price,
                o.perm_id, 0, o.last_fill_price, o.client_id, "", 0.0]

    def _send_status(self, conn: _Conn, order: _Order) -> None:
        conn.send(*self._status_fields(order))

    def _send_open_order(self, conn: _Conn, order: _Order) -> None:
        conn.send(*self._open_order_fields(order))

    def _open_order_fields(self, o: _Order, what_if_margin: str | None = None) -> list[Any]:
        """openOrder as laid out for SERVER_VERSION (no faProfile, with the 170+ peg fields)."""
        what_if = what_if_margin is not None
        m = what_if_margin or ""
        return [
            OUT_OPEN_ORDER, o.order_id, *self._contract11(o.symbol, o.exchange),
            o.action, o.qty, o.order_type, o.limit_price, o.aux_price, o.tif,
            "", o.account, "O", 0, o.order_ref, o.client_id, o.perm_id,  # ocaGroup .. permId
            o.outside_rth, False, 0.0, "", "",  # hidden, discretionaryAmt, goodAfterTime, sharesAllocation
            "", "", "",  # faGroup, faMethod, faPercentage
            "", "", "", "", "", 0, "", -1,  # modelCode .. exemptCode
            0, "", "", "", "", "",  # auctionStrategy, startingPrice .. stockRangeUpper
            0, False, False, False, "", 0,  # displaySize, blockOrder, sweepToFill, allOrNone, minQty, ocaType
            False, False, "", 0, 0,  # eTradeOnly, firmQuoteOnly, nbboPriceCap, parentId, triggerMethod
            "", "", "", "",  # volatility, volatilityType, deltaNeutralOrderType, deltaNeutralAuxPrice
            False, "", "", "", "", "", "",  # continuousUpdate .. comboLegsDescrip
            0, 0, 0,  # comboLegs, orderComboLegs, smartComboRoutingParams
            "", "", "",  # scaleInitLevelSize, scaleSubsLevelSize, scalePriceIncrement
            "",  # hedgeType
            False, "", "", False, False,  # optOutSmartRouting .. notHeld, deltaNeutralContract
            "",  # algoStrategy
            False, what_if, o.status,
            m, m, m, m, m, m, m, m, m,  # margin before / change / after
            1.0 if what_if else "", "", "", "USD" if what_if else "", "",  # commission .. warningText
            False, False,  # randomizeSize, randomizePrice
            0,  # conditions
            "", "", "", "", "", "", "", 0,  # adjustedOrderType .. adjustableTrailingUnit
            "", "", "", "",  # softDollarTier name/value/displayName, cashQty
            False, False, "", False,  # dontUseAutoPriceForHedge .. usePriceMgmtAlgo
            "", "", False,  # duration, postToAts, autoCancelParent
            "", "", "", "", "",  # minTradeQty, minCompeteSize, competeAgainstBestOffset, midOffsets
        ]

    def _completed_order_fields(self, o: _Order) -> list[Any]:
        """completedOrder as laid out for SERVER_VERSION."""
        return [
            OUT_COMPLETED_ORDER, *self._contract11(o.symbol, o.exchange),
            o.action, o.qty, o.order_type, o.limit_price, o.aux_price, o.tif,
            "", o.account, "O", 0, o.order_ref, o.perm_id,  # ocaGroup .. permId
            o.outside_rth, False, 0.0, "",  # hidden, discretionaryAmt, goodAfterTime
            "", "", "",  # faGroup, faMethod, faPercentage
            "", "", "", "", "", 0, "", -1,  # modelCode .. exemptCode
            "", "", "", "", "",  # startingPrice .. stockRangeUpper
            0, False, False, "", 0, 0,  # displaySize, sweepToFill, allOrNone, minQty, ocaType, triggerMethod
            "", "", "", "",  # volatility, volatilityType, deltaNeutralOrderType, deltaNeutralAuxPrice
            False, "", "", "", "",  # continuousUpdate .. comboLegsDescrip
            0, 0, 0,  # comboLegs, orderComboLegs, smartComboRoutingParams
            "", "", "",  # scale sizes, scalePriceIncrement
            "",  # hedgeType
            "", "", False, False,  # clearingAccount, clearingIntent, notHeld, deltaNeutralContract
            "",  # algoStrategy
            False, o.status, False, False,  # solicited, status, randomizeSize, randomizePrice
            0,  # conditions
            "", "", "", False, False,  # trailStopPrice, lmtPriceOffset, cashQty, dontUseAuto.., isOms..
            "", o.filled, 0, False, "", False, False, 0,  # autoCancelDate .. parentPermId
            o.completed_time, o.completed_status,
            "", "", "", "", "",  # minTradeQty .. midOffsetAtHalf
        ]

    def _exec_fields(self, req_id: int, ex: _Execution) -> list[Any]:
        o = ex.order
        return [
            OUT_EXECUTION_DATA, req_id, o.order_id, *self._contract11(o.symbol, "ISLAND"),
            ex.exec_id, ex.time, o.account, "ISLAND", ex.side, ex.shares, ex.price,
            o.perm_id, o.client_id, 0, ex.cum_qty, ex.avg_price, o.order_ref,
            "", "", "", 1, False,  # evRule, evMultiplier, modelCode, lastLiquidity, pendingPriceRevision
        ]

    @staticmethod
    def _commission_fields(ex: _Execution) -> list[Any]:
        realized = UNSET_DOUBLE if ex.realized_pnl is None else round(ex.realized_pnl, 2)
        return [OUT_COMMISSION_REPORT, 1, ex.exec_id, ex.commission, "USD", realized, "", ""]


# ---------------------------------------------------------------------- process entry point


def main(argv: list[str] | None = None) -> int:
    """Run a gateway until SIGTERM/SIGINT; prints ``READY <port>`` once listening."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--accounts", default="DU111111,DU222222")
    parser.add_argument("--price", action="append", default=[], metavar="SYM=PRICE")
    parser.add_argument("--position", action="append", default=[], metavar="ACCT:SYM:QTY:AVGCOST")
    args = parser.parse_args(argv)

    gateway = FakeGateway(args.host, args.port, [a for a in args.accounts.split(",") if a])
    for item in args.price:
        sym, price = item.split("=")
        gateway.set_price(sym, float(price))
    for item in args.position:
        acct, sym, qty, cost = item.split(":")
        gateway.set_position(acct, sym, float(qty), float(cost))

    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    gateway.start()
    print(f"READY {gateway.port}", flush=True)
    while not done.wait(0.5):
        pass
    gateway.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
