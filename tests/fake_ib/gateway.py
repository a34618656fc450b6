"""A fake Interactive Brokers gateway speaking the real TWS API wire protocol.

The gateway is a small, in-memory broker that the real ``ib_async`` client
(2.1.0) connects to and trades against in tests: stocks, futures, options,
futures options, FX, CFDs, crypto and bonds, each a contract keyed by conId.

Guarantees
----------
* Wire protocol: the v100+ handshake answered with server version
  :data:`SERVER_VERSION`; all outgoing messages use the field layout a client
  negotiated at that version expects (see :mod:`.protocol`, :mod:`.wire`).
* Everything ``IB.connect()`` issues at startup is answered with its ``...End``
  message, so connect never waits for a timeout.
* All state lives on one asyncio loop in a background thread.  The control
  API (``set_price``, ``add_contract``, ``add_working_order``, fault switches,
  snapshots ...) may be called from any other thread: each call is executed
  on the loop thread and returns only after it took effect (including
  messages pushed to clients).
* Orders are identified like at IB: by ``(client_id, order_id)``; every order
  additionally has a gateway-unique ``perm_id``.  A client may only cancel its
  own orders (as at IB); ``reqGlobalCancel`` cancels everybody's.
* An order, contract-details or market-data request naming no known contract
  gets error 200 "No security definition has been found for the request"
  and creates nothing.

Run ``python -m tests.fake_ib.gateway --port N [--scenario FILE.json]`` to use
it as a process; it prints ``READY <port>`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .contracts import con_id_for, make_contract
from .control import GatewayControl
from .engine import Engine
from .handlers import dispatch_table
from .protocol import (
    IN_START_API,
    PACING_LIMIT,
    PACING_WINDOW,
    SERVER_VERSION,
    Conn,
    ParseError,
    ib_time,
    read_frame,
    version_ok,
)
from .state import DEFAULT_PRICE

__all__ = ["DEFAULT_PRICE", "SERVER_VERSION", "FakeGateway", "con_id_for"]

log = logging.getLogger("tests.fake_ib")


class FakeGateway(GatewayControl):
    """In-memory IB gateway on a background asyncio loop.

    Public counters and logs (``placed_orders``, ``cancel_requests``,
    ``global_cancel_count``, ``pacing_violations``, ``internal_errors``) are
    updated on the gateway loop before any reply to the triggering message is
    written, so a client that has seen the reply also sees the update.

    Instruments: a ``str`` names a US stock (SMART/USD, registered implicitly on
    first use, conId :func:`con_id_for`); an ``int`` is the conId of a contract
    registered with :meth:`add_contract` (or an implicit stock's conId).
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
        accounts = tuple(accounts)
        if not accounts:
            raise ValueError("at least one account is required")
        super().__init__(Engine(accounts, master_client_id))
        #: Artificial latency applied before handling each received message.
        self.delay_ms: float = 0.0
        self.pacing_violations = 0
        self._dispatch = dispatch_table()
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
            self._loop = self._engine.loop = loop
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
        self._loop = self._engine.loop = None

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
            self._reopen = None
        if self._server is not None:
            self._server.close()
            self._server = None
        for conn in list(self._engine.conns):
            conn.abort()

    # ------------------------------------------------------------------ control API: instruments

    def add_contract(self, con_id: int, symbol: str, sec_type: str, exchange: str,
                     currency: str = "USD", **fields: Any) -> int:
        """Register a contract and return its conId.

        Optional ``fields`` (snake_case of IB's names): primary_exchange, multiplier,
        last_trade_date (lastTradeDateOrContractMonth), strike, right, local_symbol,
        trading_class, long_name, market_name, min_tick, price_magnifier,
        valid_exchanges (order routes accepted; default the exchange, plus SMART for
        STK/OPT/CFD, plus primary_exchange), under_con_id.  Raises ValueError naming
        a missing or bad field, or a conId already used by another contract.
        """
        spec = make_contract(con_id=con_id, symbol=symbol, sec_type=sec_type, exchange=exchange,
                             currency=currency, **fields)
        return self._call(lambda: self._engine.book.contracts.add(spec).con_id)

    def set_price(self, instrument: str | int, price: float, *, bid: float | None = None,
                  ask: float | None = None, close: float | None = None) -> None:
        """Set the last price (bid/ask default to it; close is the prior close for daily P&L).

        Market orders fill at the ask (buy) or bid (sell).  Market-data subscribers get
        bid/ask/last ticks; portfolio and P&L subscribers of holders get new values.
        """
        self._call(self._engine.set_price, instrument, float(price), bid, ask, close)

    # ------------------------------------------------------------------ control API: positions and orders

    def set_position(self, account: str, instrument: str | int, qty: float, avg_cost: float) -> None:
        """Overwrite a position at once (not lagged); ``avg_cost`` is IB's avgCost, i.e.
        average price x multiplier.  Subscribed clients are told."""
        self._call(self._engine.set_position, account, instrument, float(qty), float(avg_cost))

    def add_working_order(
        self,
        account: str,
        instrument: str | int,
        action: str,
        qty: float,
        limit_price: float | None,
        order_ref: str = "",
        client_id: int = 0,
        *,
        order_type: str = "LMT",
        stop_price: float | None = None,
        exchange: str | None = None,
    ) -> int:
        """Create a working DAY order (LMT, STP or STP LMT) as if placed by ``client_id``
        (0 = TWS / manual), routed to ``exchange`` (default the contract's).

        Returns its order id (unique gateway-wide).  A connected client with that id
        (or the master client) is sent openOrder + orderStatus right away.  Raises
        ValueError for an unknown account, side or order type, or missing prices.
        """
        return self._call(
            self._engine.add_working_order, account, instrument, action.upper(), float(qty),
            None if limit_price is None else float(limit_price), order_ref, int(client_id),
            order_type.upper(), None if stop_price is None else float(stop_price), exchange,
        )

    def fill_order(
        self, order_id: int, qty: float | None = None, price: float | None = None,
        client_id: int | None = None,
    ) -> None:
        """Fill a working order (default: all of the remainder at its limit or the market)."""
        self._call(self._engine.fill_order, order_id, qty, price, client_id)

    # ------------------------------------------------------------------ control API: connections

    def drop_connections(self) -> None:
        """Abort every client socket (RST); the listener stays up so clients can reconnect."""

        def drop() -> None:
            for conn in list(self._engine.conns):
                conn.abort()  # its session task deregisters it; closed sessions never count as "in use"

        self._call(drop)

    def pause_accepting(self, seconds: float) -> None:
        """Stop listening for ``seconds`` (connects are refused), then listen on the same port."""
        self._call(self._pause, float(seconds))

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
            self._engine.errors.append(repr(task.exception()))

    # ------------------------------------------------------------------ connection handling

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Conn(writer)
        self._engine.conns.add(conn)
        try:
            if await reader.readexactly(4) != b"API\0":
                return
            if not version_ok((await read_frame(reader)).decode(errors="replace")):
                return
            conn.send(SERVER_VERSION, ib_time())
            while not conn.closed:
                fields = (await read_frame(reader)).decode(errors="replace").split("\0")
                fields.pop()  # every field is NUL-terminated, so the last split is empty
                received = asyncio.get_running_loop().time()
                if self.delay_ms:
                    await asyncio.sleep(self.delay_ms / 1000)
                if conn.closed:
                    break
                self._on_message(conn, fields, received)
        except (asyncio.IncompleteReadError, ConnectionError, ParseError):
            pass  # client went away or spoke garbage: just drop the session
        except asyncio.CancelledError:
            pass  # only at shutdown; ending normally keeps asyncio from logging it
        finally:
            self._engine.conns.discard(conn)
            conn.closed = True
            writer.close()

    def _on_message(self, conn: Conn, fields: list[str], received: float) -> None:
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
        engine = self._engine
        try:
            msg_id = int(fields[0])
            if conn.client_id is None and msg_id != IN_START_API:
                engine.unhandled.append(fields)
                return
            handler = self._dispatch.get(msg_id)
            if handler is None:
                engine.unhandled.append(fields)
                return
            handler(engine, conn, fields)
        except ParseError as exc:
            engine.errors.append(f"parse error in {fields[:3]}: {exc}")
            conn.error(-1, 320, f"Error reading request: {exc}")
        except Exception as exc:  # a bug in the fake must be visible to tests, not hang them
            log.exception("fake gateway failed on %s", fields)
            engine.errors.append(f"{type(exc).__name__}: {exc} while handling {fields[:3]}")


# ---------------------------------------------------------------------- process entry point


def main(argv: list[str] | None = None) -> int:
    """Run a gateway until SIGTERM/SIGINT; prints ``READY <port>`` once listening.

    ``--scenario FILE.json`` loads accounts, contracts, positions, working orders
    and prices (see :mod:`.scenario`); ``--price``/``--position`` add stock prices
    and positions on top.  Exits 2 with a message on a bad scenario file.
    """
    from .scenario import ScenarioError, load_scenario

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--accounts", default=None, help="comma-separated (default DU111111,DU222222)")
    parser.add_argument("--scenario", type=Path, default=None, metavar="FILE.json")
    parser.add_argument("--price", action="append", default=[], metavar="SYM=PRICE")
    parser.add_argument("--position", action="append", default=[], metavar="ACCT:SYM:QTY:AVGCOST")
    args = parser.parse_args(argv)

    scenario = None
    if args.scenario is not None:
        try:
            scenario = load_scenario(args.scenario)
        except ScenarioError as exc:
            parser.exit(2, f"bad scenario {args.scenario}: {exc}\n")
    if args.accounts is not None:
        accounts = [a for a in args.accounts.split(",") if a]
    else:
        accounts = scenario.accounts if scenario else ["DU111111", "DU222222"]
    gateway = FakeGateway(args.host, args.port, accounts)
    if scenario is not None:
        try:
            scenario.apply(gateway)
        except (ValueError, KeyError) as exc:
            parser.exit(2, f"bad scenario {args.scenario}: {exc}\n")
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
