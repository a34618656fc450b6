"""The fake ``MetaTrader5`` module: one terminal, one logged-in account.

:class:`FakeTerminal` holds the state (under one lock, since the rpyc server runs
a thread per connection) and implements the module functions with the real
names, signatures and return conventions:

* records are the named tuples of :mod:`.records` (``_asdict()`` works), lists of
  them are tuples, an empty result is ``()``;
* failures return ``None`` (or ``False``) and set ``last_error()`` to a
  ``(code, message)`` tuple; success sets ``(1, 'Success')``;
* before ``initialize()`` (and after ``shutdown()``) every call fails with
  ``(-10004, 'No IPC connection')``;
* ``positions_get``/``orders_get`` take keyword arguments only (positional ones
  fail with ``(-2, 'Unnamed arguments not allowed')``); a ``symbol`` beats
  ``group``, which beats ``ticket``;
* times are epoch seconds/milliseconds shifted by ``server_time_offset`` seconds
  (MT5 reports trade-server time, not UTC).

:meth:`FakeTerminal.module` builds the module object the server registers as
``sys.modules["MetaTrader5"]``.  Test-side controls live in :mod:`.control`.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable, Iterable
from typing import Any

from . import constants as c
from .fills import BUY_SIDE
from .records import (
    RECORD_TYPES,
    SYMBOL_INFO_FIELDS,
    AccountInfo,
    SymbolInfo,
    TerminalInfo,
    Tick,
    TradeDeal,
    TradeOrder,
    TradePosition,
)
from .state import (
    Account,
    Book,
    Deal,
    Order,
    Position,
    RequestError,
    Symbol,
    epoch,
    group_matches,
)
from .trading import Faults, Trader

VERSION = (500, 5120, "01 Jun 2025")
NO_IPC = (c.RES_E_INTERNAL_FAIL_CONNECT, "No IPC connection")
AUTH_FAILED = (c.RES_E_AUTH_FAILED, "Terminal: Authorization failed")
CALL_FAILED = (c.RES_E_FAIL, "Terminal: Call failed")
UNNAMED = (c.RES_E_INVALID_PARAMS, "Unnamed arguments not allowed")


class FakeTerminal:
    """One MT5 terminal; all public methods without a leading underscore are module functions."""

    def __init__(self, login: int, *, netting: bool = False, server_time_offset: int = 0,
                 password: str | None = None) -> None:
        self.lock = threading.RLock()
        self.login_id = login
        self.server_time_offset = server_time_offset
        self.book = Book(Account(login=login, password=password, margin_mode=(
            c.ACCOUNT_MARGIN_MODE_RETAIL_NETTING if netting
            else c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING)))
        self.faults = Faults()
        self.trader = Trader(self.book, self.faults)
        self.initialized = False
        self._last_error: tuple[int, str] = (c.RES_S_OK, "Success")
        #: Every module call as (function name, repr of its arguments), for tests.
        self.calls: list[tuple[str, str]] = []
        #: Run after order_send released the lock, before the reply leaves (see control).
        self.after_send: list[Callable[[], None]] = []

    # --- plumbing ---------------------------------------------------------------------
    def module(self) -> types.ModuleType:
        """The ``MetaTrader5`` module object backed by this terminal."""
        mod = types.ModuleType("MetaTrader5", "Fake MetaTrader5 module (tests.fake_mt5).")
        mod.__dict__.update(c.EXPORTED)
        mod.__dict__.update(RECORD_TYPES)
        mod.__version__ = "5.0.5120"
        mod.__author__ = "tests.fake_mt5 (a fake of the MetaQuotes package)"
        for name in MODULE_FUNCTIONS:
            setattr(mod, name, getattr(self, name))
        for name in UNSUPPORTED:
            setattr(mod, name, _unsupported(name))
        return mod

    def _enter(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        self.calls.append((name, repr((args, kwargs))))
        if not self.initialized:
            self._last_error = NO_IPC
            return False
        return True

    def _ok(self, value: Any) -> Any:
        self._last_error = (c.RES_S_OK, "Success")
        return value

    def _fail(self, error: tuple[int, str], value: Any = None) -> Any:
        self._last_error = error
        return value

    def _t(self, msc: int) -> int:
        return msc + self.server_time_offset * 1000

    # --- session ------------------------------------------------------------------------
    def initialize(self, path: str | None = None, *, login: int | None = None,
                   password: str | None = None, server: str | None = None,
                   timeout: int | None = None, portable: bool = False) -> bool:
        with self.lock:
            self.calls.append(("initialize", repr(((path,), dict(login=login, server=server)))))
            if login is not None and type(login) is not int:
                # A login read from the environment is a str: the C module refuses it.
                return self._fail((c.RES_E_INVALID_PARAMS, 'Invalid "login" argument'), False)
            if not self._credentials_ok(login, password, server):
                return self._fail(AUTH_FAILED, False)
            self.initialized = True
            return self._ok(True)

    def login(self, login: int, password: str | None = None, server: str | None = None,
              timeout: int | None = None) -> bool:
        with self.lock:
            if not self._enter("login", (login,), dict(server=server)):
                return False
            if not self._credentials_ok(login, password, server):
                return self._fail(AUTH_FAILED, False)
            return self._ok(True)

    def _credentials_ok(self, login: int | None, password: str | None,
                        server: str | None) -> bool:
        acc = self.book.account
        return ((login is None or (type(login) is int and login == acc.login))
                and (password is None or acc.password is None or password == acc.password)
                and (server is None or server == acc.server))

    def shutdown(self) -> None:
        with self.lock:
            self.calls.append(("shutdown", "((), {})"))
            self.initialized = False
            self._last_error = (c.RES_S_OK, "Success")

    def last_error(self) -> tuple[int, str]:
        with self.lock:
            return self._last_error

    def version(self) -> tuple[int, int, str] | None:
        with self.lock:
            return self._ok(VERSION) if self._enter("version", (), {}) else None

    def terminal_info(self) -> TerminalInfo | None:
        with self.lock:
            if not self._enter("terminal_info", (), {}):
                return None
            return self._ok(TerminalInfo(
                True, True, self.faults.connected, False, self.faults.autotrading, False, False,
                False, False, False, VERSION[1], 100_000, 0, 35_000, 0.0, 0.0,
                self.book.account.company, "MetaTrader 5", "English",
                "C:\\Program Files\\MetaTrader 5", "C:\\Program Files\\MetaTrader 5",
                "C:\\users\\trader\\AppData\\Roaming\\MetaQuotes\\Terminal\\Common"))

    def account_info(self) -> AccountInfo | None:
        with self.lock:
            if not self._enter("account_info", (), {}):
                return None
            acc, book = self.book.account, self.book
            equity, margin = book.equity(), book.margin_used()
            return self._ok(AccountInfo(
                acc.login, acc.trade_mode, acc.leverage, 200, c.ACCOUNT_STOPOUT_MODE_PERCENT,
                self.faults.autotrading, True, acc.margin_mode, 2, False, round(acc.balance, 2),
                0.0, round(equity - acc.balance, 2), round(equity, 2), round(margin, 2),
                round(equity - margin, 2), round(equity / margin * 100, 2) if margin else 0.0,
                50.0, 30.0, 0.0, 0.0, 0.0, 0.0, 0.0, acc.name, acc.server, acc.currency,
                acc.company))

    # --- symbols ------------------------------------------------------------------------
    def symbols_total(self) -> int | None:
        with self.lock:
            return self._ok(len(self.book.symbols)) if self._enter("symbols_total", (), {}) else None

    def symbols_get(self, group: str | None = None) -> tuple[SymbolInfo, ...] | None:
        with self.lock:
            if not self._enter("symbols_get", (), dict(group=group)):
                return None
            return self._ok(tuple(self._symbol_info(s) for s in self.book.symbols.values()
                                  if group is None or group_matches(s.name, group)))

    def symbol_info(self, symbol: str) -> SymbolInfo | None:
        with self.lock:
            if not self._enter("symbol_info", (symbol,), {}):
                return None
            sym = self.book.symbols.get(symbol)
            return self._ok(self._symbol_info(sym)) if sym else self._fail(CALL_FAILED)

    def symbol_info_tick(self, symbol: str) -> Tick | None:
        with self.lock:
            if not self._enter("symbol_info_tick", (symbol,), {}):
                return None
            sym = self.book.symbols.get(symbol)
            if sym is None or not sym.select:
                # Ticks only flow for symbols selected in Market Watch.
                return self._fail(CALL_FAILED)
            msc = self._t(sym.last_tick_msc)
            return self._ok(Tick(msc // 1000, sym.bid, sym.ask, 0.0, 0, msc,
                                 c.TICK_FLAG_BID | c.TICK_FLAG_ASK, 0.0))

    def symbol_select(self, symbol: str, enable: bool = True) -> bool:
        with self.lock:
            if not self._enter("symbol_select", (symbol, enable), {}):
                return False
            sym = self.book.symbols.get(symbol)
            if sym is None:
                return self._fail(CALL_FAILED, False)
            if not enable and self._in_use(symbol):
                # MT5 keeps a symbol with open positions or orders in Market Watch.
                return self._fail(CALL_FAILED, False)
            sym.select = sym.visible = bool(enable)
            return self._ok(True)

    def _in_use(self, symbol: str) -> bool:
        return any(p.symbol == symbol for p in self.book.positions.values()) or any(
            o.symbol == symbol for o in self.book.orders.values())

    def _symbol_info(self, s: Symbol) -> SymbolInfo:
        values: dict[str, Any] = dict.fromkeys(SYMBOL_INFO_FIELDS, 0)
        text = ("basis category currency_base currency_profit currency_margin bank description "
                "exchange formula isin name page path").split()
        values.update(dict.fromkeys(text, ""))
        values.update(
            custom=False, select=s.select, visible=s.visible, time=self._t(s.last_tick_msc) // 1000,
            digits=s.digits, spread=s.spread_points, spread_float=True, ticks_bookdepth=10,
            trade_calc_mode=s.calc_mode, trade_mode=s.trade_mode, trade_exemode=s.exemode,
            swap_mode=c.SYMBOL_SWAP_MODE_POINTS, swap_rollover3days=3, expiration_mode=15,
            filling_mode=s.filling_mode, order_mode=127, bid=s.bid, bidhigh=s.bid, bidlow=s.bid,
            ask=s.ask, askhigh=s.ask, asklow=s.ask, point=s.point, trade_tick_size=s.point,
            trade_tick_value=self.book.to_account(s.point * s.contract_size, s.currency_profit),
            trade_contract_size=s.contract_size, volume_min=s.volume_min,
            volume_max=s.volume_max, volume_step=s.volume_step, margin_hedged=s.contract_size,
            currency_base=s.currency_base, currency_profit=s.currency_profit,
            currency_margin=s.currency_base, description=s.description, name=s.name, path=s.path)
        values["trade_tick_value_profit"] = values["trade_tick_value_loss"] = values[
            "trade_tick_value"]
        for key in ("volume_real volumehigh_real volumelow_real option_strike last lasthigh "
                    "lastlow swap_long swap_short").split():
            values[key] = float(values[key])
        return SymbolInfo(**values)

    # --- orders and positions -------------------------------------------------------------
    def orders_total(self) -> int | None:
        with self.lock:
            return self._ok(len(self.book.orders)) if self._enter("orders_total", (), {}) else None

    def orders_get(self, *args: Any, symbol: str | None = None, group: str | None = None,
                   ticket: int | None = None) -> tuple[TradeOrder, ...] | None:
        with self.lock:
            if not self._enter("orders_get", args, dict(symbol=symbol, group=group,
                                                        ticket=ticket)):
                return None
            if args:
                return self._fail(UNNAMED)
            chosen = self._filter(self.book.orders.values(), symbol, group,
                                  lambda o: o.ticket == ticket if ticket is not None else True)
            return self._ok(tuple(self._order(o) for o in chosen))

    def positions_total(self) -> int | None:
        with self.lock:
            if not self._enter("positions_total", (), {}):
                return None
            return self._ok(len(self.book.positions))

    def positions_get(self, *args: Any, symbol: str | None = None, group: str | None = None,
                      ticket: int | None = None) -> tuple[TradePosition, ...] | None:
        with self.lock:
            if not self._enter("positions_get", args, dict(symbol=symbol, group=group,
                                                           ticket=ticket)):
                return None
            if args:
                return self._fail(UNNAMED)
            chosen = self._filter(self.book.positions.values(), symbol, group,
                                  lambda p: p.ticket == ticket if ticket is not None else True)
            return self._ok(tuple(self._position(p) for p in chosen))

    @staticmethod
    def _filter(items: Iterable[Any], symbol: str | None, group: str | None,
                by_ticket: Callable[[Any], bool]) -> list[Any]:
        if symbol is not None:
            return [i for i in items if i.symbol == symbol]
        if group is not None:
            return [i for i in items if group_matches(i.symbol, group)]
        return [i for i in items if by_ticket(i)]

    def _order(self, o: Order) -> TradeOrder:
        sym = self.book.symbols[o.symbol]
        current = sym.ask if o.type in BUY_SIDE else sym.bid
        done = self._t(o.time_done_msc) if o.time_done_msc else 0
        return TradeOrder(
            o.ticket, self._t(o.time_setup_msc) // 1000, self._t(o.time_setup_msc), done // 1000,
            done, o.expiration, o.type, o.type_time, o.type_filling, o.state, o.magic,
            o.position_id, o.position_by_id, o.reason, o.volume_initial, o.volume_current,
            o.price_open, o.sl, o.tp, current, o.price_stoplimit, o.symbol, o.comment, "")

    def _position(self, p: Position) -> TradePosition:
        sym = self.book.symbols[p.symbol]
        current = sym.bid if p.type == c.POSITION_TYPE_BUY else sym.ask
        return TradePosition(
            p.ticket, self._t(p.time_msc) // 1000, self._t(p.time_msc),
            self._t(p.time_update_msc) // 1000, self._t(p.time_update_msc), p.type, p.magic,
            p.identifier, p.reason, p.volume, p.price_open, p.sl, p.tp, current, 0.0,
            self.book.position_profit(p), p.symbol, p.comment, "")

    def _deal(self, d: Deal) -> TradeDeal:
        return TradeDeal(
            d.ticket, d.order, self._t(d.time_msc) // 1000, self._t(d.time_msc), d.type, d.entry,
            d.magic, d.position_id, d.reason, d.volume, d.price, 0.0, 0.0, d.profit, 0.0,
            d.symbol, d.comment, "")

    # --- history ------------------------------------------------------------------------
    def history_orders_total(self, date_from: Any, date_to: Any) -> int | None:
        found = self.history_orders_get(date_from, date_to)
        return None if found is None else len(found)

    def history_orders_get(self, date_from: Any = None, date_to: Any = None, *,
                           group: str | None = None, ticket: int | None = None,
                           position: int | None = None) -> tuple[TradeOrder, ...] | None:
        with self.lock:
            if not self._enter("history_orders_get", (date_from, date_to),
                               dict(group=group, ticket=ticket, position=position)):
                return None
            chosen = self._history(self.book.history_orders, date_from, date_to, group, ticket,
                                   position, lambda o: o.time_setup_msc,
                                   lambda o: o.position_id)
            return None if chosen is None else self._ok(tuple(self._order(o) for o in chosen))

    def history_deals_total(self, date_from: Any, date_to: Any) -> int | None:
        found = self.history_deals_get(date_from, date_to)
        return None if found is None else len(found)

    def history_deals_get(self, date_from: Any = None, date_to: Any = None, *,
                          group: str | None = None, ticket: int | None = None,
                          position: int | None = None) -> tuple[TradeDeal, ...] | None:
        with self.lock:
            if not self._enter("history_deals_get", (date_from, date_to),
                               dict(group=group, ticket=ticket, position=position)):
                return None
            chosen = self._history(self.book.deals, date_from, date_to, group, ticket, position,
                                   lambda d: d.time_msc, lambda d: d.position_id)
            return None if chosen is None else self._ok(tuple(self._deal(d) for d in chosen))

    def _history(self, items: list[Any], date_from: Any, date_to: Any, group: str | None,
                 ticket: int | None, position: int | None, msc: Callable[[Any], int],
                 position_of: Callable[[Any], int]) -> list[Any] | None:
        # Called with the lock held.  By ticket or position the dates are not needed;
        # otherwise both are, compared with the records' (server) time.
        if ticket is not None:
            return [i for i in items if i.ticket == ticket]
        if position is not None:
            return [i for i in items if position_of(i) == position]
        try:
            start, end = epoch(date_from, "date_from"), epoch(date_to, "date_to")
        except RequestError as exc:
            return self._fail((c.RES_E_INVALID_PARAMS, str(exc)))
        return [i for i in items if start <= self._t(msc(i)) / 1000 <= end
                and (group is None or group_matches(i.symbol, group))]

    # --- trading ------------------------------------------------------------------------
    def order_check(self, request: dict[str, Any]) -> Any:
        with self.lock:
            if not self._enter("order_check", (request,), {}):
                return None
            try:
                return self._ok(self.trader.check(request))
            except RequestError as exc:
                return self._fail((c.RES_E_INVALID_PARAMS, str(exc)))

    def order_send(self, request: dict[str, Any]) -> Any:
        with self.lock:
            if not self._enter("order_send", (request,), {}):
                return None
            try:
                result = self._ok(self.trader.send(request))
            except RequestError as exc:
                return self._fail((c.RES_E_INVALID_PARAMS, str(exc)))
            hooks, self.after_send = self.after_send, []
        for hook in hooks:  # outside the lock: a stalled reply must not freeze other clients
            hook()
        return result

    def order_calc_margin(self, action: int, symbol: str, volume: float,
                          price: float) -> float | None:
        with self.lock:
            if not self._enter("order_calc_margin", (action, symbol, volume, price), {}):
                return None
            sym = self.book.symbols.get(symbol)
            if sym is None or action not in (c.ORDER_TYPE_BUY, c.ORDER_TYPE_SELL):
                return self._fail((c.RES_E_INVALID_PARAMS, "Invalid arguments"))
            return self._ok(round(self.book.margin_for(sym, volume, price), 2))

    def order_calc_profit(self, action: int, symbol: str, volume: float, price_open: float,
                          price_close: float) -> float | None:
        with self.lock:
            if not self._enter("order_calc_profit", (action, symbol, volume), {}):
                return None
            sym = self.book.symbols.get(symbol)
            if sym is None or action not in (c.ORDER_TYPE_BUY, c.ORDER_TYPE_SELL):
                return self._fail((c.RES_E_INVALID_PARAMS, "Invalid arguments"))
            return self._ok(self.book.deal_profit(sym, action, volume, price_open, price_close))


MODULE_FUNCTIONS = (
    "initialize login shutdown last_error version terminal_info account_info symbols_total "
    "symbols_get symbol_info symbol_info_tick symbol_select orders_total orders_get "
    "positions_total positions_get history_orders_total history_orders_get history_deals_total "
    "history_deals_get order_check order_send order_calc_margin order_calc_profit"
).split()

#: Functions of the real module the fake does not model (no price history, no book).
UNSUPPORTED = (
    "copy_rates_from copy_rates_from_pos copy_rates_range copy_ticks_from copy_ticks_range "
    "market_book_add market_book_get market_book_release"
).split()


def _unsupported(name: str) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            f"MetaTrader5.{name}: the fake terminal (tests.fake_mt5) has no price history or "
            "market depth; only trading, positions, orders and history are modelled")

    call.__name__ = name
    return call
