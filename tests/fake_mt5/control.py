"""Test-side controls of a :class:`~.terminal.FakeTerminal` (prices, faults, direct state).

:class:`Control` is what the control port serves (see :mod:`.server`) and what
the command line uses to seed state.  Every method takes and returns plain
JSON-friendly values, takes effect before it returns, and raises ``ValueError``
with what was wrong and what is expected when given bad input.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from . import constants as c
from .state import Book, Order, Position, Symbol, now_msc
from .terminal import FakeTerminal
from .trading import Faults, Trader, pending_price_ok

SIDES = {"buy": c.ORDER_TYPE_BUY, "sell": c.ORDER_TYPE_SELL}
PENDING_KINDS = {
    "buy_limit": c.ORDER_TYPE_BUY_LIMIT, "sell_limit": c.ORDER_TYPE_SELL_LIMIT,
    "buy_stop": c.ORDER_TYPE_BUY_STOP, "sell_stop": c.ORDER_TYPE_SELL_STOP,
}
TRADE_MODES = {
    "disabled": c.SYMBOL_TRADE_MODE_DISABLED, "longonly": c.SYMBOL_TRADE_MODE_LONGONLY,
    "shortonly": c.SYMBOL_TRADE_MODE_SHORTONLY, "closeonly": c.SYMBOL_TRADE_MODE_CLOSEONLY,
    "full": c.SYMBOL_TRADE_MODE_FULL,
}
#: Symbol fields a test may change with :meth:`Control.set_symbol`.
SYMBOL_FIELDS = {"filling_mode", "exemode", "volume_min", "volume_max", "volume_step",
                 "contract_size", "select", "visible"}
ALL_ACTIONS = (c.TRADE_ACTION_DEAL, c.TRADE_ACTION_PENDING, c.TRADE_ACTION_SLTP,
               c.TRADE_ACTION_MODIFY, c.TRADE_ACTION_REMOVE, c.TRADE_ACTION_CLOSE_BY)


class Bridge(Protocol):
    def drop(self, refuse_for: float) -> None: ...


class Control:
    """Prices, fault switches, direct state and snapshots of one terminal."""

    def __init__(self, terminal: FakeTerminal, bridge: Bridge | None = None) -> None:
        self.terminal = terminal
        self.bridge = bridge

    # --- market -------------------------------------------------------------------------
    def set_price(self, symbol: str, bid: float, ask: float | None = None) -> None:
        """New quote; ``ask`` defaults to ``bid`` plus the symbol's current spread.

        Pending orders the new quote reaches are filled (limits at their price,
        stops at market), as the trade server would.
        """
        with self.terminal.lock:
            sym = self._symbol(symbol)
            spread = sym.ask - sym.bid
            new_ask = float(ask) if ask is not None else round(float(bid) + spread, sym.digits)
            if not 0 < float(bid) <= new_ask:
                raise ValueError(f"need 0 < bid <= ask, got bid={bid} ask={new_ask}")
            sym.bid, sym.ask, sym.last_tick_msc = float(bid), new_ask, now_msc()
            self.terminal.trader.ledger.trigger_pending(sym)

    def set_market_closed(self, symbol: str, closed: bool = True) -> None:
        """Close (or reopen) the session: deals, placing, changing and removing orders get 10018."""
        with self.terminal.lock:
            self._symbol(symbol).market_open = not closed

    def set_partial_fill(self, symbol: str, fraction: float | None) -> None:
        """Let market orders on ``symbol`` fill only ``fraction`` (0 < f < 1) of their volume.

        ``None`` (or 1.0) restores full fills.
        """
        if fraction is not None and not 0 < float(fraction) <= 1:
            raise ValueError(f"fraction must be in (0, 1] or None, got {fraction!r}")
        with self.terminal.lock:
            self._symbol(symbol).partial_fill = None if fraction is None else float(fraction)

    def set_trade_mode(self, symbol: str, mode: str | int) -> None:
        """Symbol trade mode: full, closeonly, longonly, shortonly, disabled (or the int)."""
        value = TRADE_MODES.get(mode) if isinstance(mode, str) else mode
        if value not in TRADE_MODES.values():
            raise ValueError(f"trade mode must be one of {sorted(TRADE_MODES)}, got {mode!r}")
        with self.terminal.lock:
            self._symbol(symbol).trade_mode = value

    def set_symbol(self, symbol: str, **fields: Any) -> None:
        """Change symbol properties (filling_mode flags, exemode, volume limits, select...)."""
        unknown = set(fields) - SYMBOL_FIELDS
        if unknown:
            raise ValueError(f"unknown symbol fields {sorted(unknown)}; "
                             f"settable: {sorted(SYMBOL_FIELDS)}")
        with self.terminal.lock:
            sym = self._symbol(symbol)
            for name, value in fields.items():
                setattr(sym, name, value)

    # --- faults -------------------------------------------------------------------------
    def requote_next(self, count: int = 1) -> None:
        """The next ``count`` market deals are answered 10004 (requote), nothing fills."""
        self.fail_next(c.TRADE_RETCODE_REQUOTE, count, [c.TRADE_ACTION_DEAL])

    def fail_next(self, retcode: int, count: int = 1,
                  actions: Iterable[int] | None = None) -> None:
        """The next ``count`` requests of ``actions`` (default: all) get ``retcode``, unexecuted.

        Applied after the terminal's local checks, like a trade server's answer
        (10004 requote, 10021 no quotes, 10024 too many requests, 10031 no connection...).
        """
        if retcode not in c.RETCODE_COMMENTS or int(count) < 1:
            raise ValueError(f"need a TRADE_RETCODE_* value and count >= 1, got "
                             f"{retcode!r}, {count!r}")
        chosen = frozenset(int(a) for a in (actions if actions is not None else ALL_ACTIONS))
        if not chosen <= set(ALL_ACTIONS):
            raise ValueError(f"actions must be TRADE_ACTION_* values, got {sorted(chosen)}")
        with self.terminal.lock:
            self.terminal.faults.queued.append([int(retcode), int(count), chosen])

    def set_no_money(self, enabled: bool = True) -> None:
        """Refuse every exposure-increasing deal with 10019 (closing deals still pass)."""
        with self.terminal.lock:
            self.terminal.faults.no_money = bool(enabled)

    def set_autotrading(self, enabled: bool) -> None:
        """The terminal's AutoTrading button: off answers every order_send with 10027."""
        with self.terminal.lock:
            self.terminal.faults.autotrading = bool(enabled)

    def set_connected(self, connected: bool) -> None:
        """The terminal's link to its trade server: down answers every order_send with 10031."""
        with self.terminal.lock:
            self.terminal.faults.connected = bool(connected)

    def stall_next_send(self, seconds: float) -> None:
        """The next order_send executes, then holds its reply ``seconds`` (client timeouts)."""
        self._after_send(lambda: time.sleep(float(seconds)))

    def drop_next_send(self, refuse_for: float = 0.0, reset_session: bool = False) -> None:
        """The next order_send executes, then the bridge drops before the reply leaves."""
        self._after_send(lambda: self.drop_bridge(refuse_for, reset_session))

    def drop_bridge(self, refuse_for: float = 0.0, reset_session: bool = False) -> None:
        """Close every bridge connection and refuse new ones for ``refuse_for`` seconds.

        ``reset_session`` models the bridge process restarting: its MetaTrader5
        module is no longer initialized, so clients must call ``initialize()`` again.
        The terminal (positions, orders) is unaffected, as with the real bridge.
        """
        if self.bridge is None:
            raise ValueError("this terminal has no bridge server to drop")
        if reset_session:
            with self.terminal.lock:
                self.terminal.initialized = False
        self.bridge.drop(float(refuse_for))

    def _after_send(self, hook: Callable[[], None]) -> None:
        with self.terminal.lock:
            self.terminal.after_send.append(hook)

    # --- direct state ---------------------------------------------------------------------
    def add_position(self, symbol: str, side: str, volume: float, price: float | None = None,
                     magic: int = 0, comment: str = "") -> int:
        """Open a position as if an order had filled (history order and IN deal included).

        Returns the position ticket.  Raises ValueError for an unknown symbol or
        side, a volume the symbol does not allow, or (netting) a symbol that
        already has a position.
        """
        if side not in SIDES:
            raise ValueError(f"side must be 'buy' or 'sell', got {side!r}")
        term = self.terminal
        with term.lock:
            sym = self._symbol(symbol)
            self._volume(sym, volume)
            book = term.book
            if not book.account.hedging and any(p.symbol == symbol for p in
                                                book.positions.values()):
                raise ValueError(f"netting account already holds a {symbol} position")
            fill = float(price) if price is not None else (
                sym.ask if side == "buy" else sym.bid)
            order = Order(ticket=book.new_order_ticket(), symbol=symbol, type=SIDES[side],
                          volume_initial=float(volume), volume_current=0.0, price_open=fill,
                          time_setup_msc=now_msc(), magic=int(magic), comment=str(comment),
                          type_filling=c.ORDER_FILLING_FOK, state=c.ORDER_STATE_FILLED,
                          time_done_msc=now_msc())
            book.history_orders.append(order)
            term.trader.ledger.open(order, SIDES[side], float(volume), fill, order.ticket)
            return order.ticket

    def add_order(self, symbol: str, kind: str, volume: float, price: float, magic: int = 0,
                  comment: str = "") -> int:
        """Place a working pending order directly; returns its ticket.

        Raises ValueError for an unknown kind (buy_limit, sell_limit, buy_stop,
        sell_stop) or a price on the wrong side of the market (a buy limit must be
        below the ask, a sell stop below the bid, ...).
        """
        if kind not in PENDING_KINDS:
            raise ValueError(f"kind must be one of {sorted(PENDING_KINDS)}, got {kind!r}")
        term = self.terminal
        with term.lock:
            sym = self._symbol(symbol)
            self._volume(sym, volume)
            if not pending_price_ok(sym, PENDING_KINDS[kind], float(price), 0.0):
                raise ValueError(f"{kind} at {price} is on the wrong side of {symbol} "
                                 f"(bid {sym.bid}, ask {sym.ask})")
            order = Order(ticket=term.book.new_order_ticket(), symbol=symbol,
                          type=PENDING_KINDS[kind], volume_initial=float(volume),
                          volume_current=float(volume), price_open=float(price),
                          time_setup_msc=now_msc(), magic=int(magic), comment=str(comment))
            term.book.orders[order.ticket] = order
            return order.ticket

    def set_account_mode(self, mode: str) -> None:
        """The account's trade mode as account_info() reports it: demo, contest or real."""
        modes = {"demo": c.ACCOUNT_TRADE_MODE_DEMO, "contest": c.ACCOUNT_TRADE_MODE_CONTEST,
                 "real": c.ACCOUNT_TRADE_MODE_REAL}
        if mode not in modes:
            raise ValueError(f"mode must be one of {sorted(modes)}, got {mode!r}")
        with self.terminal.lock:
            self.terminal.book.account.trade_mode = modes[mode]

    def set_balance(self, balance: float) -> None:
        with self.terminal.lock:
            self.terminal.book.account.balance = float(balance)

    def reset(self, netting: bool | None = None) -> None:
        """Fresh account and catalogue, no faults, module not initialized (same login)."""
        term = self.terminal
        with term.lock:
            acc = term.book.account
            mode = acc.margin_mode if netting is None else (
                c.ACCOUNT_MARGIN_MODE_RETAIL_NETTING if netting
                else c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING)
            term.book = Book(dataclasses.replace(acc, balance=100_000.0, margin_mode=mode,
                                                trade_mode=c.ACCOUNT_TRADE_MODE_DEMO))
            term.faults = Faults()
            term.trader = Trader(term.book, term.faults)
            term.initialized = False
            term.calls.clear()
            term.after_send.clear()

    # --- reading ------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Everything the terminal holds, as plain data (tickets, volumes, prices...)."""
        term = self.terminal
        with term.lock:
            book = term.book

            def position(p: Position) -> dict[str, Any]:
                return dict(dataclasses.asdict(p), profit=book.position_profit(p))

            equity, margin = book.equity(), book.margin_used()
            return {
                "initialized": term.initialized,
                "account": {"login": book.account.login, "hedging": book.account.hedging,
                            "balance": round(book.account.balance, 2),
                            "equity": round(equity, 2), "margin": round(margin, 2),
                            "margin_free": round(equity - margin, 2)},
                "positions": [position(p) for p in book.positions.values()],
                "orders": [dataclasses.asdict(o) for o in book.orders.values()],
                "history_orders": [dataclasses.asdict(o) for o in book.history_orders],
                "deals": [dataclasses.asdict(d) for d in book.deals],
                "symbols": {s.name: {"bid": s.bid, "ask": s.ask, "market_open": s.market_open,
                                     "trade_mode": s.trade_mode, "select": s.select,
                                     "partial_fill": s.partial_fill}
                            for s in book.symbols.values()},
                "faults": {"queued": [[r, n, sorted(a)] for r, n, a in term.faults.queued],
                           "no_money": term.faults.no_money,
                           "autotrading": term.faults.autotrading,
                           "connected": term.faults.connected},
            }

    def calls(self) -> list[list[str]]:
        """Module calls so far as [function name, repr of arguments], oldest first."""
        with self.terminal.lock:
            return [list(call) for call in self.terminal.calls]

    # --- helpers --------------------------------------------------------------------------
    def _symbol(self, symbol: str) -> Symbol:
        sym = self.terminal.book.symbols.get(symbol)
        if sym is None:
            raise ValueError(f"unknown symbol {symbol!r}; known: "
                             f"{sorted(self.terminal.book.symbols)}")
        return sym

    @staticmethod
    def _volume(sym: Symbol, volume: float) -> None:
        problem = sym.volume_error(float(volume))
        if problem:
            raise ValueError(f"volume {volume} for {sym.name} is {problem}")
