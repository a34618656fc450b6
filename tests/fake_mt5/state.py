"""Plain state of the fake terminal: account, symbols, orders, positions, deals.

Nothing here locks or talks to the network; :mod:`.trading` changes this state
under the terminal's lock and :mod:`.terminal` turns it into the module's records.

Money is modelled just far enough to make "no money" (10019) and profit signs
right: forex margin is ``volume * contract_size / leverage`` in the base
currency, CFD margin ``volume * contract_size * price / leverage`` and exchange
stocks are fully paid (``volume * contract_size * price``); amounts are converted
to the account currency through the other symbols' quotes (``EURUSD`` for EUR,
``USDJPY`` for JPY).
"""

from __future__ import annotations

import fnmatch
import math
import time
from dataclasses import dataclass, field
from datetime import datetime

from . import constants as c

#: Tolerance for volume arithmetic (MT5 volumes are decimal lots held in doubles).
VOLUME_EPS = 1e-8


def now_msc() -> int:
    """Wall-clock time in milliseconds since the epoch."""
    return int(time.time() * 1000)


class RequestError(Exception):
    """The request is malformed; the module answers None with last_error (-2, message)."""


def group_matches(name: str, group: str) -> bool:
    """MT5 group filter: comma-separated masks with ``*``, ``!`` excludes, applied in order."""
    selected = False
    for cond in (part.strip() for part in group.split(",")):
        if not cond:
            continue
        negate = cond.startswith("!")
        mask = cond[1:] if negate else cond
        if fnmatch.fnmatchcase(name.upper(), mask.upper()):
            selected = not negate
    return selected


def epoch(value: object, arg: str) -> float:
    """A history bound (datetime or epoch number) in epoch seconds.

    Raises:
        RequestError: anything else; the module answers (-2, 'Invalid "<arg>" argument').
    """
    if isinstance(value, datetime):
        return value.timestamp()
    if type(value) in (int, float):
        return float(value)
    raise RequestError(f'Invalid "{arg}" argument')


def round_volume(volume: float) -> float:
    """Round a volume to 8 decimals so repeated partial closes never drift."""
    return round(volume, 8)


@dataclass
class Symbol:
    """One instrument as the terminal knows it; prices are the current bid and ask."""

    name: str
    description: str
    path: str
    currency_base: str
    currency_profit: str
    digits: int
    contract_size: float
    volume_min: float
    volume_max: float
    volume_step: float
    bid: float
    ask: float
    filling_mode: int = c.SYMBOL_FILLING_FOK | c.SYMBOL_FILLING_IOC
    exemode: int = c.SYMBOL_TRADE_EXECUTION_MARKET
    trade_mode: int = c.SYMBOL_TRADE_MODE_FULL
    calc_mode: int = c.SYMBOL_CALC_MODE_FOREX
    select: bool = True
    visible: bool = True
    market_open: bool = True
    #: Share of a market order's volume the market can fill now (None: all of it).
    partial_fill: float | None = None
    last_tick_msc: int = field(default_factory=now_msc)

    @property
    def point(self) -> float:
        return 10.0**-self.digits

    @property
    def spread_points(self) -> int:
        return int(round((self.ask - self.bid) / self.point))

    def volume_error(self, volume: float) -> str | None:
        """Why ``volume`` cannot be traded on this symbol, or None when it can."""
        if volume < self.volume_min - VOLUME_EPS:
            return f"below volume_min {self.volume_min}"
        if volume > self.volume_max + VOLUME_EPS:
            return f"above volume_max {self.volume_max}"
        steps = volume / self.volume_step
        if abs(steps - round(steps)) > 1e-6:
            return f"not a multiple of volume_step {self.volume_step}"
        return None

    def floor_to_step(self, volume: float) -> float:
        """The largest tradable volume not above ``volume`` (at least one step)."""
        steps = max(1, math.floor(volume / self.volume_step + 1e-9))
        return round_volume(steps * self.volume_step)


@dataclass
class Account:
    login: int
    server: str = "FakeBroker-Demo"
    name: str = "Kill Switch Test Desk"
    company: str = "Fake Broker Ltd."
    currency: str = "USD"
    leverage: int = 100
    balance: float = 100_000.0
    margin_mode: int = c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING
    trade_mode: int = c.ACCOUNT_TRADE_MODE_DEMO
    #: None: any password is accepted.
    password: str | None = None

    @property
    def hedging(self) -> bool:
        return self.margin_mode == c.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING


@dataclass
class Order:
    """A working (pending or partly filled) order, or one in the history."""

    ticket: int
    symbol: str
    type: int
    volume_initial: float
    volume_current: float
    price_open: float
    time_setup_msc: int
    magic: int = 0
    comment: str = ""
    sl: float = 0.0
    tp: float = 0.0
    price_stoplimit: float = 0.0
    type_filling: int = c.ORDER_FILLING_RETURN
    type_time: int = c.ORDER_TIME_GTC
    expiration: int = 0
    state: int = c.ORDER_STATE_PLACED
    time_done_msc: int = 0
    position_id: int = 0
    position_by_id: int = 0
    reason: int = c.ORDER_REASON_EXPERT


@dataclass
class Position:
    ticket: int
    symbol: str
    type: int
    volume: float
    price_open: float
    time_msc: int
    magic: int = 0
    comment: str = ""
    sl: float = 0.0
    tp: float = 0.0
    time_update_msc: int = 0
    reason: int = c.POSITION_REASON_EXPERT

    @property
    def identifier(self) -> int:
        # The position identifier is the ticket of the order that opened it; in
        # netting mode a reversal keeps it (the position is the same object).
        return self.ticket


@dataclass
class Deal:
    ticket: int
    order: int
    time_msc: int
    type: int
    entry: int
    position_id: int
    volume: float
    price: float
    symbol: str
    magic: int = 0
    comment: str = ""
    profit: float = 0.0
    reason: int = c.DEAL_REASON_EXPERT


def default_symbols() -> dict[str, Symbol]:
    """The catalogue every fresh terminal starts with.

    Chosen so each filling and trade mode an adapter must handle is present:
    EURUSD FOK|IOC (market execution), GBPUSD IOC only, USDJPY FOK only with
    instant execution (price and deviation matter), AAPL exchange execution with
    RETURN only, US30 close-only, BTCUSD disabled, GBPJPY not in Market Watch.
    """
    fx = dict(
        digits=5, contract_size=100_000.0, volume_min=0.01, volume_max=100.0, volume_step=0.01
    )
    symbols = [
        Symbol("EURUSD", "Euro vs US Dollar", "Forex\\EURUSD", "EUR", "USD", bid=1.08500,
               ask=1.08512, **fx),
        Symbol("GBPUSD", "Great Britain Pound vs US Dollar", "Forex\\GBPUSD", "GBP", "USD",
               bid=1.26500, ask=1.26515, filling_mode=c.SYMBOL_FILLING_IOC, **fx),
        Symbol("USDJPY", "US Dollar vs Japanese Yen", "Forex\\USDJPY", "USD", "JPY",
               bid=151.200, ask=151.215, filling_mode=c.SYMBOL_FILLING_FOK,
               exemode=c.SYMBOL_TRADE_EXECUTION_INSTANT, **{**fx, "digits": 3}),
        Symbol("GBPJPY", "Great Britain Pound vs Japanese Yen", "Forex\\GBPJPY", "GBP", "JPY",
               bid=191.500, ask=191.530, select=False, visible=False, **{**fx, "digits": 3}),
        Symbol("AAPL", "Apple Inc.", "Stocks\\NASDAQ\\AAPL", "USD", "USD", digits=2,
               contract_size=1.0, volume_min=1.0, volume_max=10_000.0, volume_step=1.0,
               bid=190.00, ask=190.05, filling_mode=0, exemode=c.SYMBOL_TRADE_EXECUTION_EXCHANGE,
               calc_mode=c.SYMBOL_CALC_MODE_EXCH_STOCKS),
        Symbol("US30", "Dow Jones Industrial Average", "Indices\\US30", "USD", "USD", digits=1,
               contract_size=1.0, volume_min=0.1, volume_max=50.0, volume_step=0.1,
               bid=39000.0, ask=39002.0, trade_mode=c.SYMBOL_TRADE_MODE_CLOSEONLY,
               calc_mode=c.SYMBOL_CALC_MODE_CFDLEVERAGE),
        Symbol("BTCUSD", "Bitcoin vs US Dollar", "Crypto\\BTCUSD", "BTC", "USD", digits=2,
               contract_size=1.0, volume_min=0.01, volume_max=10.0, volume_step=0.01,
               bid=65000.00, ask=65020.00, trade_mode=c.SYMBOL_TRADE_MODE_DISABLED,
               calc_mode=c.SYMBOL_CALC_MODE_CFDLEVERAGE),
    ]
    return {s.name: s for s in symbols}


@dataclass
class Book:
    """Everything the terminal holds for its one account."""

    account: Account
    symbols: dict[str, Symbol] = field(default_factory=default_symbols)
    orders: dict[int, Order] = field(default_factory=dict)
    positions: dict[int, Position] = field(default_factory=dict)
    history_orders: list[Order] = field(default_factory=list)
    deals: list[Deal] = field(default_factory=list)
    next_order_ticket: int = 50_000_001
    next_deal_ticket: int = 40_000_001

    def new_order_ticket(self) -> int:
        # Orders and positions share one sequence (a position's ticket is its
        # opening order's); deals have their own, in another range, so an adapter
        # that mixes them up hits a ticket that does not exist.
        ticket = self.next_order_ticket
        self.next_order_ticket += 1
        return ticket

    def new_deal_ticket(self) -> int:
        ticket = self.next_deal_ticket
        self.next_deal_ticket += 1
        return ticket

    # --- money ---------------------------------------------------------------------
    def to_account(self, amount: float, currency: str) -> float:
        """Convert ``amount`` in ``currency`` to the account currency.

        Raises:
            ValueError: no symbol quotes that currency against the account's.
        """
        acc = self.account.currency
        if currency == acc:
            return amount
        direct = self.symbols.get(currency + acc)
        if direct is not None:
            return amount * direct.bid
        inverse = self.symbols.get(acc + currency)
        if inverse is not None:
            return amount / inverse.ask
        raise ValueError(f"no symbol converts {currency} to {acc}")

    def margin_for(self, sym: Symbol, volume: float, price: float) -> float:
        """Margin (account currency) that ``volume`` lots of ``sym`` at ``price`` need."""
        lev = self.account.leverage
        if sym.calc_mode == c.SYMBOL_CALC_MODE_FOREX:
            return self.to_account(volume * sym.contract_size / lev, sym.currency_base)
        if sym.calc_mode == c.SYMBOL_CALC_MODE_EXCH_STOCKS:
            return self.to_account(volume * sym.contract_size * price, sym.currency_profit)
        return self.to_account(volume * sym.contract_size * price / lev, sym.currency_profit)

    def position_profit(self, pos: Position) -> float:
        """Floating profit of ``pos`` at the current quote (buys close at bid, sells at ask)."""
        sym = self.symbols[pos.symbol]
        return self.deal_profit(sym, pos.type, pos.volume, pos.price_open,
                                sym.bid if pos.type == c.POSITION_TYPE_BUY else sym.ask)

    def deal_profit(self, sym: Symbol, pos_type: int, volume: float, open_price: float,
                    close_price: float) -> float:
        sign = 1.0 if pos_type == c.POSITION_TYPE_BUY else -1.0
        raw = sign * (close_price - open_price) * volume * sym.contract_size
        return round(self.to_account(raw, sym.currency_profit), 2)

    def margin_used(self) -> float:
        return sum(
            self.margin_for(self.symbols[p.symbol], p.volume, p.price_open)
            for p in self.positions.values()
        )

    def equity(self) -> float:
        return self.account.balance + sum(self.position_profit(p) for p in self.positions.values())
