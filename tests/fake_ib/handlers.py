"""Handlers of the client requests that read the book (session, positions, accounts,
executions, contract details, market data, P&L), and the dispatch table.

Each handler takes the engine, the connection and the message fields; it runs
on the gateway loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from . import wire
from .contracts import ContractQuery, NoSecurityDefinition
from .engine import Engine
from .protocol import (
    IN_CANCEL_ACCOUNT_SUMMARY,
    IN_CANCEL_ACCOUNT_UPDATES_MULTI,
    IN_CANCEL_MKT_DATA,
    IN_CANCEL_ORDER,
    IN_CANCEL_PNL,
    IN_CANCEL_PNL_SINGLE,
    IN_CANCEL_POSITIONS,
    IN_CANCEL_POSITIONS_MULTI,
    IN_PLACE_ORDER,
    IN_REQ_ACCOUNT_SUMMARY,
    IN_REQ_ACCOUNT_UPDATES,
    IN_REQ_ACCOUNT_UPDATES_MULTI,
    IN_REQ_ALL_OPEN_ORDERS,
    IN_REQ_AUTO_OPEN_ORDERS,
    IN_REQ_COMPLETED_ORDERS,
    IN_REQ_CONTRACT_DETAILS,
    IN_REQ_CURRENT_TIME,
    IN_REQ_EXECUTIONS,
    IN_REQ_GLOBAL_CANCEL,
    IN_REQ_IDS,
    IN_REQ_MANAGED_ACCTS,
    IN_REQ_MARKET_DATA_TYPE,
    IN_REQ_MKT_DATA,
    IN_REQ_OPEN_ORDERS,
    IN_REQ_PNL,
    IN_REQ_PNL_SINGLE,
    IN_REQ_POSITIONS,
    IN_REQ_POSITIONS_MULTI,
    IN_START_API,
    NO_SECURITY_DEFINITION,
    OUT_ACCOUNT_DOWNLOAD_END,
    OUT_ACCOUNT_SUMMARY,
    OUT_ACCOUNT_SUMMARY_END,
    OUT_ACCOUNT_UPDATE_MULTI,
    OUT_ACCOUNT_UPDATE_MULTI_END,
    OUT_ACCOUNT_UPDATE_TIME,
    OUT_ACCOUNT_VALUE,
    OUT_COMPLETED_ORDERS_END,
    OUT_CONTRACT_DATA_END,
    OUT_CURRENT_TIME,
    OUT_EXECUTION_DATA_END,
    OUT_MANAGED_ACCOUNTS,
    OUT_NEXT_VALID_ID,
    OUT_OPEN_ORDER_END,
    OUT_POSITION_END,
    OUT_POSITION_MULTI_END,
    OUT_TICK_PRICE,
    OUT_TICK_SNAPSHOT_END,
    TICK_ASK,
    TICK_BID,
    TICK_CLOSE,
    TICK_LAST,
    Conn,
    Reader,
    parse_filter_time,
)

Handler = Callable[[Engine, Conn, list[str]], None]

# Static account values reported by account updates / summaries.
ACCOUNT_VALUES: tuple[tuple[str, str, str], ...] = (
    ("AccountType", "INDIVIDUAL", ""),
    ("NetLiquidation", "1000000.00", "USD"),
    ("TotalCashValue", "1000000.00", "USD"),
    ("AvailableFunds", "1000000.00", "USD"),
    ("BuyingPower", "4000000.00", "USD"),
)


def on_start_api(eng: Engine, conn: Conn, fields: list[str]) -> None:
    r = Reader(fields)
    r.integer()  # version
    client_id = r.integer()
    if conn.client_id is not None:
        return
    if any(c.client_id == client_id for c in eng.conns if c is not conn and not c.closed):
        conn.error(-1, 326, "Unable to connect as the client id is already in use. "
                           "Retry with a unique client id.")
        conn.close()
        eng.conns.discard(conn)
        return
    conn.client_id = client_id
    conn.send(OUT_MANAGED_ACCOUNTS, 1, ",".join(eng.accounts))
    conn.send(OUT_NEXT_VALID_ID, 1, eng.book.next_order_id)
    # TWS greets every session with farm status notices (codes 2100-2199 are warnings).
    conn.error(-1, 2104, "Market data farm connection is OK:usfarm")
    conn.error(-1, 2106, "HMDS data farm connection is OK:ushmds")
    conn.error(-1, 2158, "Sec-def data farm connection is OK:secdefil")


def on_open_orders(eng: Engine, conn: Conn, fields: list[str]) -> None:
    everyone = int(fields[0]) == IN_REQ_ALL_OPEN_ORDERS
    for order in eng.book.orders.values():
        if order.working and (everyone or eng.sees(conn, order)):
            eng.send_order(conn, order)
    conn.send(OUT_OPEN_ORDER_END, 1)


def on_completed_orders(eng: Engine, conn: Conn, fields: list[str]) -> None:
    for order in eng.book.orders.values():
        if order.status in ("Filled", "Cancelled"):
            conn.send(*wire.completed_order_fields(order))
    conn.send(OUT_COMPLETED_ORDERS_END)


def on_positions(eng: Engine, conn: Conn, fields: list[str]) -> None:
    conn.positions_subscribed = True
    # Positions closed during the session are reported with quantity 0, as TWS does.
    for pos in eng.book.positions.values():
        conn.send(*wire.position_fields(pos))
    conn.send(OUT_POSITION_END, 1)


def on_cancel_positions(eng: Engine, conn: Conn, fields: list[str]) -> None:
    conn.positions_subscribed = False


def on_positions_multi(eng: Engine, conn: Conn, fields: list[str]) -> None:
    r = Reader(fields)
    r.integer()
    req_id, account, model = r.integer(), r.text(), r.text()
    for pos in eng.book.positions.values():
        if account in ("", "All", pos.account):
            conn.send(*wire.position_multi_fields(req_id, pos, model))
    conn.send(OUT_POSITION_MULTI_END, 1, req_id)


def on_account_updates(eng: Engine, conn: Conn, fields: list[str]) -> None:
    r = Reader(fields)
    r.integer()
    subscribe, account = r.flag(), r.text()
    if not subscribe:
        conn.account_updates = None
        return
    account = account or eng.accounts[0]
    conn.account_updates = account
    for key, value, currency in ACCOUNT_VALUES:
        conn.send(OUT_ACCOUNT_VALUE, 2, key, value, currency, account)
    for pos in eng.book.positions.values():
        if pos.account == account and pos.shown_qty:
            conn.send(*wire.portfolio_fields(pos, eng.book.mark(pos.contract, pos)))
    conn.send(OUT_ACCOUNT_UPDATE_TIME, 1, time.strftime("%H:%M", time.gmtime()))
    conn.send(OUT_ACCOUNT_DOWNLOAD_END, 1, account)


def on_account_updates_multi(eng: Engine, conn: Conn, fields: list[str]) -> None:
    r = Reader(fields)
    r.integer()
    req_id, account, model = r.integer(), r.text(), r.text()
    for acct in eng.accounts:
        if account in ("", "All", acct):
            for key, value, currency in ACCOUNT_VALUES:
                conn.send(OUT_ACCOUNT_UPDATE_MULTI, 1, req_id, acct, model, key, value, currency)
    conn.send(OUT_ACCOUNT_UPDATE_MULTI_END, 1, req_id)


def on_account_summary(eng: Engine, conn: Conn, fields: list[str]) -> None:
    r = Reader(fields)
    r.integer()
    req_id, _group, tags = r.integer(), r.text(), set(r.text().split(","))
    for acct in eng.accounts:
        for key, value, currency in ACCOUNT_VALUES:
            if key in tags:
                conn.send(OUT_ACCOUNT_SUMMARY, 1, req_id, acct, key, value, currency)
    conn.send(OUT_ACCOUNT_SUMMARY_END, 1, req_id)


def on_executions(eng: Engine, conn: Conn, fields: list[str]) -> None:
    """Replay executions matching the ExecutionFilter (every client's, as the fake's
    API sessions all see each other's fills); empty filter fields match everything."""
    r = Reader(fields)
    r.integer()
    req_id, client_id, account = r.integer(), r.integer(), r.text()
    since_text, symbol, sec_type = r.text(), r.text(), r.text().upper()
    exchange, side = r.text(), r.text().upper()
    try:
        since = parse_filter_time(since_text) if since_text.strip() else None
    except ValueError as exc:
        conn.error(req_id, 320, f"Error reading request: {exc}")
        return
    for ex in eng.book.executions:
        o, spec = ex.order, ex.order.contract
        if (client_id and o.client_id != client_id) or (account and o.account != account):
            continue
        if (symbol and spec.symbol != symbol) or (sec_type and spec.sec_type != sec_type):
            continue
        if (exchange and ex.venue != exchange) or (since is not None and ex.time < since):
            continue
        if side and side[0] != ex.side[0]:  # "BUY"/"BOT", "SELL"/"SLD"
            continue
        conn.send(*wire.exec_fields(req_id, ex))
        conn.send(*wire.commission_fields(ex))
    conn.send(OUT_EXECUTION_DATA_END, 1, req_id)


def on_contract_details(eng: Engine, conn: Conn, fields: list[str]) -> None:
    r = Reader(fields)
    r.integer()  # version
    req_id = r.integer()
    q = ContractQuery.read(r)
    found = eng.book.contracts.find(q, implicit_stocks=eng.implicit_stocks)
    if not found:
        conn.error(req_id, 200, NO_SECURITY_DEFINITION)
        return
    for spec in found:
        under = eng.book.contracts.get(spec.under_con_id) if spec.under_con_id else None
        exchange = q.exchange or spec.exchange
        conn.send(*wire.contract_data_fields(req_id, spec, exchange, under))
    conn.send(OUT_CONTRACT_DATA_END, 1, req_id)


def on_mkt_data(eng: Engine, conn: Conn, fields: list[str]) -> None:
    r = Reader(fields)
    r.integer()  # version
    req_id = r.integer()
    q = ContractQuery.read(r)
    if q.sec_type == "BAG":
        conn.error(req_id, 200, NO_SECURITY_DEFINITION)
        return
    if r.flag():  # delta neutral contract
        r.skip(3)
    _ticks, snapshot = r.text(), r.flag()
    try:
        spec = eng.book.contracts.resolve(q, implicit_stocks=eng.implicit_stocks)
    except NoSecurityDefinition:
        conn.error(req_id, 200, NO_SECURITY_DEFINITION)
        return
    quote = eng.book.quotes.get(spec.con_id)
    last = eng.book.mark(spec)
    bid, ask = (quote.bid, quote.ask) if quote else (last, last)
    close = quote.close if quote and quote.close is not None else last
    for tick, price in ((TICK_BID, bid), (TICK_ASK, ask), (TICK_LAST, last), (TICK_CLOSE, close)):
        conn.send(OUT_TICK_PRICE, 6, req_id, tick, price, 100, 0)
    if snapshot:
        conn.send(OUT_TICK_SNAPSHOT_END, 1, req_id)
    else:
        conn.mkt_data[req_id] = spec.con_id


def on_cancel_mkt_data(eng: Engine, conn: Conn, fields: list[str]) -> None:
    conn.mkt_data.pop(int(fields[2]), None)


def on_pnl(eng: Engine, conn: Conn, fields: list[str]) -> None:
    r = Reader(fields)
    req_id, account, _model = r.integer(), r.text(), r.text()
    if account not in eng.accounts:
        conn.error(req_id, 321, f"Error validating request.-'bN' : cause - Invalid account code {account}")
        return
    conn.pnl[req_id] = account
    conn.send(*wire.pnl_fields(req_id, eng.book.pnl(account)))


def on_pnl_single(eng: Engine, conn: Conn, fields: list[str]) -> None:
    r = Reader(fields)
    req_id, account, _model, con_id = r.integer(), r.text(), r.text(), r.integer()
    if account not in eng.accounts:
        conn.error(req_id, 321, f"Error validating request.-'bN' : cause - Invalid account code {account}")
        return
    if eng.book.contracts.get(con_id) is None:
        conn.error(req_id, 200, NO_SECURITY_DEFINITION)
        return
    conn.pnl_single[req_id] = (account, con_id)
    conn.send(*wire.pnl_single_fields(req_id, eng.book.pnl_single(account, con_id)))


def _ignore(eng: Engine, conn: Conn, fields: list[str]) -> None:
    """Requests that need no answer from the fake (cancels of unsolicited streams etc.)."""


def dispatch_table() -> dict[int, Handler]:
    """Message id -> handler, for every request the fake implements."""
    return {
        IN_START_API: on_start_api,
        IN_REQ_IDS: lambda e, c, f: c.send(OUT_NEXT_VALID_ID, 1, e.book.next_order_id),
        IN_REQ_MANAGED_ACCTS: lambda e, c, f: c.send(OUT_MANAGED_ACCOUNTS, 1, ",".join(e.accounts)),
        IN_REQ_CURRENT_TIME: lambda e, c, f: c.send(OUT_CURRENT_TIME, 1, int(time.time())),
        # Client 0 always gets the orders of "client 0" (our stand-in for manual TWS
        # orders), as if auto-binding were on; nothing to answer.
        IN_REQ_AUTO_OPEN_ORDERS: _ignore,
        IN_REQ_OPEN_ORDERS: on_open_orders,
        IN_REQ_ALL_OPEN_ORDERS: on_open_orders,
        IN_REQ_COMPLETED_ORDERS: on_completed_orders,
        IN_REQ_POSITIONS: on_positions,
        IN_CANCEL_POSITIONS: on_cancel_positions,
        IN_REQ_POSITIONS_MULTI: on_positions_multi,
        IN_CANCEL_POSITIONS_MULTI: _ignore,
        IN_REQ_ACCOUNT_UPDATES: on_account_updates,
        IN_REQ_ACCOUNT_UPDATES_MULTI: on_account_updates_multi,
        IN_CANCEL_ACCOUNT_UPDATES_MULTI: _ignore,
        IN_REQ_ACCOUNT_SUMMARY: on_account_summary,
        IN_CANCEL_ACCOUNT_SUMMARY: _ignore,
        IN_REQ_EXECUTIONS: on_executions,
        IN_REQ_CONTRACT_DETAILS: on_contract_details,
        IN_REQ_MKT_DATA: on_mkt_data,
        IN_CANCEL_MKT_DATA: on_cancel_mkt_data,
        IN_REQ_MARKET_DATA_TYPE: _ignore,
        IN_REQ_PNL: on_pnl,
        IN_CANCEL_PNL: lambda e, c, f: c.pnl.pop(int(f[1]), None),
        IN_REQ_PNL_SINGLE: on_pnl_single,
        IN_CANCEL_PNL_SINGLE: lambda e, c, f: c.pnl_single.pop(int(f[1]), None),
        IN_PLACE_ORDER: Engine.on_place_order,
        IN_CANCEL_ORDER: Engine.on_cancel_order,
        IN_REQ_GLOBAL_CANCEL: Engine.on_global_cancel,
    }
