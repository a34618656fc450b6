"""The one interface every broker adapter offers to the kill switch's runs.

An adapter lists working orders and positions in a scope (one account, optionally
narrowed to a strategy or a symbol), cancels one order, cancels all in a scope,
closes one position at market on its own instrument, finds a closing order again by
its reference, and lists the account's executions; optionally (for the automatic
breakers) its connection state, P&L, priced positions and recent orders. Every failure is raised as
BrokerError, whose `retryable` says whether trying again can help (a dropped
connection: yes; an account the broker does not know: no).

Instruments: every position and order carries the whole `Instrument` it is in, as the
broker names it. Its `key` is the identity the runs close by (IB: secType and conId;
paper: asset class and symbol; MetaTrader 5: the symbol), never the symbol alone:
an AAPL stock and an AAPL option are different instruments. A broker that keeps
several positions per instrument (MetaTrader 5 hedging accounts) tells them apart by
`Position.ticket`, and `Position.key` includes it.

Adapters hold no rules about levels or runs: those live in brokers.runs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

# Every closing order the kill switch sends carries a client reference with this prefix
# (IB orderRef, paper client_order_id, MT5 comment: at most 31 characters there).
CLOSE_REF_PREFIX = "ks-close-"


class BrokerError(Exception):
    """A broker operation failed. `retryable` is True when repeating it may succeed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class Unclosable(BrokerError):
    """This position cannot be closed at market by the adapter (an expired contract, a
    security type it does not trade, a contract the broker cannot identify). Raised by
    close_position before anything is sent; never retryable."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


def compact_symbol(text: str) -> str:
    """A symbol as a scope names it: upper case, without spaces ('AAPL  261218C00200000'
    -> 'AAPL261218C00200000'), since a scope key cannot contain spaces."""
    return "".join(text.split()).upper()


@dataclass(frozen=True)
class Instrument:
    """What a position or an order is in, as the broker names it.

    `kind`: IB's secType (STK, FUT, OPT, FOP, CASH, CFD, CRYPTO, BOND, ...); the paper
    broker's asset class (stock, future, option, ...). `broker_key`: the broker's own
    id for it (IB conId); empty where the symbol is the id (paper, MT5). Strings
    throughout (strike and multiplier as written by the broker), so the value is
    stored and compared exactly.
    """

    kind: str
    symbol: str
    broker_key: str = ""
    exchange: str = ""
    primary_exchange: str = ""
    currency: str = ""
    multiplier: str = ""
    expiry: str = ""
    strike: str = ""
    right: str = ""
    local_symbol: str = ""
    trading_class: str = ""

    @property
    def key(self) -> str:
        """The instrument's identity for closing: `FUT:495512563`, `stock:AAPL`."""
        return f"{self.kind}:{self.broker_key or self.symbol}"

    def matches_symbol(self, symbol: str) -> bool:
        """A `symbol:X` scope covers this instrument when X is its symbol (every ES
        contract for `symbol:ES`) or its local symbol without spaces (`symbol:ESZ6`)."""
        wanted = compact_symbol(symbol)
        return wanted in (compact_symbol(self.symbol), compact_symbol(self.local_symbol)) and bool(wanted)

    @property
    def label(self) -> str:
        """For people: 'ES FUT 20261218 ESZ6 (conId 495512563)', 'AAPL stock'."""
        parts = [self.symbol, self.kind, self.expiry, self.right, self.strike]
        if self.local_symbol and compact_symbol(self.local_symbol) != compact_symbol(self.symbol):
            parts.append(self.local_symbol)
        text = " ".join(p for p in parts if p)
        return f"{text} (conId {self.broker_key})" if self.broker_key and self.kind.isupper() else text

    def as_dict(self) -> dict[str, str]:
        """The set fields only (stored on BrokerAction.instrument). Read field by field:
        dataclasses.asdict deep-copies each value, and a run of 10,000 orders spent half
        its time there (bench_brokers)."""
        return {f.name: value for f in fields(self) if (value := getattr(self, f.name))}

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, *, symbol: str = "") -> Instrument:
        """Back from as_dict(). Rows written before instruments were stored have none:
        they read as an instrument of unknown kind named by the row's symbol."""
        data = data or {}
        known = {f.name for f in fields(cls)}
        values = {k: str(v) for k, v in data.items() if k in known}
        values.setdefault("kind", "")
        values.setdefault("symbol", symbol)
        return cls(**values)


@dataclass(frozen=True)
class WorkingOrder:
    account: str
    order_id: str
    instrument: Instrument
    side: str  # BUY or SELL
    quantity: Decimal
    filled: Decimal = Decimal(0)
    strategy: str = ""
    client_ref: str = ""
    # Broker-specific owner (IB: the API client id that placed it) and the id the owner
    # uses for it (IB: orderId; order_id is IB's permId, unique across clients).
    owner: str = ""
    native_id: str = ""

    @property
    def symbol(self) -> str:
        return self.instrument.symbol

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    @property
    def is_own_close(self) -> bool:
        """One of the kill switch's own closing orders (never cancelled by a run)."""
        return self.client_ref.startswith(CLOSE_REF_PREFIX)


@dataclass(frozen=True)
class Position:
    account: str
    instrument: Instrument
    quantity: Decimal  # signed: > 0 long, < 0 short; in the broker's unit (contracts, shares, base currency)
    avg_cost: Decimal = Decimal(0)
    # The broker's id of this position where it keeps several per instrument (MT5 hedging).
    ticket: str = ""

    @property
    def symbol(self) -> str:
        return self.instrument.symbol

    @property
    def key(self) -> str:
        """What the runs close by: the instrument key, and the ticket where there is one."""
        return f"{self.instrument.key}#{self.ticket}" if self.ticket else self.instrument.key


@dataclass(frozen=True)
class Execution:
    """One fill as the broker reports it (IB execDetails, a paper fill, an MT5 deal)."""

    account: str
    instrument_key: str
    side: str  # BUY or SELL
    quantity: Decimal  # positive
    order_id: str = ""
    client_ref: str = ""
    exec_id: str = ""
    time: datetime | None = None

    @property
    def signed(self) -> Decimal:
        return self.quantity if self.side == "BUY" else -self.quantity


# Outcomes of a cancel (the names stored on BrokerAction.outcome).
CANCELLED = "cancelled"
FILLED_BEFORE_CANCEL = "filled_before_cancel"  # part filled before the cancel took effect; rest cancelled
TOO_LATE = "too_late"  # the order was already done (filled) when the cancel arrived
REJECTED = "rejected"
ERROR = "error"


@dataclass(frozen=True)
class CancelResult:
    order: WorkingOrder
    outcome: str
    filled: Decimal = Decimal(0)
    detail: str = ""


# States of an order placed by a run (a closing order).
WORKING, FILLED, DONE_CANCELLED, DONE_REJECTED = "working", "filled", "cancelled", "rejected"


@dataclass(frozen=True)
class OrderState:
    """A closing order as the broker reports it now. `filled` is cumulative (every fill
    of this order so far), which is what the runs count to know what is left to close."""

    order_id: str
    client_ref: str
    status: str  # working, filled, cancelled, rejected
    quantity: Decimal
    filled: Decimal = Decimal(0)
    avg_price: Decimal | None = None
    detail: str = ""

    @property
    def done(self) -> bool:
        return self.status != WORKING


class NotSupported(BrokerError):
    """The adapter does not offer this (optional) read."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


@dataclass(frozen=True)
class PnLLine:
    """One instrument's P&L since the day start (in the account's currency)."""

    instrument: Instrument
    amount: Decimal


@dataclass(frozen=True)
class AccountPnL:
    """An account's P&L since a day start. `strategies` is None where the broker cannot
    attribute P&L to strategies; `basis` says how the broker counts it, for people."""

    total: Decimal
    lines: tuple[PnLLine, ...] = ()
    strategies: dict[str, Decimal] | None = None
    basis: str = ""
    # Instruments held whose P&L the broker has not reported yet (not in `lines`).
    pending: tuple[Instrument, ...] = ()


@dataclass(frozen=True)
class MarkedPosition:
    position: Position
    price: Decimal | None  # the last price (None when the broker has none)


@dataclass(frozen=True)
class OrderRecord:
    """An order a trading process submitted, for the order and reject rate breakers."""

    account: str
    order_id: str
    instrument: Instrument
    submitted_at: datetime
    strategy: str = ""
    rejected_at: datetime | None = None
    detail: str = ""


@dataclass
class CancelAllResult:
    results: list[CancelResult] = field(default_factory=list)
    # True when the broker's own global cancel was used (one message for everything).
    global_cancel: bool = False
    # What the run report should say about how the cancel was done (e.g. why a global
    # cancel was not used, or that it also cancelled the kill switch's closing orders).
    note: str = ""


class BrokerAdapter(ABC):
    """Base class: `kind` names the broker; instances are short-lived (one run step)."""

    kind: str = ""
    # True when cancel_all either cancels everything or nothing (one database
    # transaction): an interrupted attempt then leaves nothing to settle.
    atomic_cancels: bool = False

    @abstractmethod
    def working_orders(self, scope: BrokerScope) -> list[WorkingOrder]:
        """Every working order (including partially filled) in `scope`. Never guesses:
        raises BrokerError(retryable=True) when the broker's view is unknown."""

    @abstractmethod
    def positions(self, scope: BrokerScope) -> list[Position]:
        """Every non-zero position in `scope` as the broker reports it (which may trail
        its fills; strategy is ignored: brokers keep positions per account and
        instrument). Raises BrokerError when unknown."""

    @abstractmethod
    def cancel_order(self, order: WorkingOrder) -> CancelResult:
        """Cancel one order and report what happened to it (never raises for a broker's
        'too late' answer: that is an outcome). Raises BrokerError when the outcome is unknown."""

    def cancel_all(self, scope: BrokerScope, orders: list[WorkingOrder],
                   *, global_scope: bool = False) -> CancelAllResult:
        """Cancel `orders` (the working orders of `scope`, as just listed, never the kill
        switch's own closing orders). The default cancels one by one; adapters with a
        broker-wide cancel may use it when `global_scope` says every order of the broker
        connection is in scope, but never while closing orders of the kill switch are
        working there unless they say so in `note`; they then also report the orders
        of other accounts that the broker-wide cancel reached."""
        return CancelAllResult([self.cancel_order(order) for order in orders])

    def settle(self, orders: list[WorkingOrder]) -> list[CancelResult]:
        """Outcomes of orders that are no longer working, whose cancel was sent by an
        attempt that did not live to read the answer. Default: cancelled."""
        return [CancelResult(o, CANCELLED, o.filled, "no longer working when re-read") for o in orders]

    @abstractmethod
    def close_position(self, position: Position, *, quantity: Decimal, client_ref: str) -> OrderState:
        """Send a market order of the opposite side for `quantity` (positive) on the
        position's own instrument (and ticket), tagged `client_ref`. Idempotent by
        `client_ref` where the broker allows it. Returns the order's state once the
        broker answered (it may still be working). Raises Unclosable, before sending
        anything, for a position it cannot close as itself; never trades another
        instrument instead."""

    @abstractmethod
    def find_order(self, *, account: str, client_ref: str) -> OrderState | None:
        """The order placed with `client_ref`, working or done, with its cumulative
        fills, or None when the broker has definitely never accepted it. Raises
        BrokerError when that cannot be known."""

    @abstractmethod
    def executions(self, *, account: str, since: datetime) -> list[Execution]:
        """The account's fills at or after `since` (the broker's own record, which does
        not trail like position reports). Raises BrokerError when unknown."""

    # --- Breaker inputs (optional; killswitch.breakers reads them through brokers.feeds) ------
    # An adapter without one raises NotSupported, and the breakers that need it read
    # `unknown` with that message (never a made-up zero).

    def connection_state(self, *, account: str) -> tuple[bool, str]:
        """(connected, why not) for `account`'s broker session; never raises."""
        raise NotSupported(f"{self.kind} adapter reports no connection state")

    def account_currency(self, *, account: str) -> str:
        """The currency the account's P&L is reported in."""
        return "USD"

    def pnl(self, *, account: str, day_start: datetime,
            marks: Callable[[dict[str, Decimal]], dict[str, Decimal]] | None = None) -> AccountPnL:
        """The account's P&L since `day_start`, realized plus unrealized at the last price.
        `marks(prices)` gives each instrument's price at `day_start` (by Instrument.key)
        for brokers that keep no opening prices. Raises BrokerError when unknown."""
        raise NotSupported(f"{self.kind} adapter reports no P&L")

    def marked_positions(self, *, account: str) -> list[MarkedPosition]:
        """The account's positions (as positions() reports them) with their last price."""
        raise NotSupported(f"{self.kind} adapter reports no position prices")

    def orders_since(self, *, account: str, since: datetime) -> list[OrderRecord]:
        """Orders submitted (or rejected) at or after `since` in the account, never the
        kill switch's own closing orders. Raises BrokerError when unknown."""
        raise NotSupported(f"{self.kind} adapter reports no order history")

    def close(self) -> None:  # noqa: B027 - optional hook; most adapters hold nothing
        """Release connections. Safe to call twice."""

    def __enter__(self) -> BrokerAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class BrokerScope:
    """Where broker work applies: one account, optionally one strategy or one symbol."""

    account: str
    strategy: str | None = None
    symbol: str | None = None

    def matches(self, *, account: str, strategy: str = "", instrument: Instrument | None = None) -> bool:
        if account != self.account:
            return False
        if self.strategy is not None and strategy != self.strategy:
            return False
        return self.symbol is None or (instrument is not None and instrument.matches_symbol(self.symbol))

    @property
    def whole_account(self) -> bool:
        return self.strategy is None and self.symbol is None

    def __str__(self) -> str:
        parts = [f"account {self.account}"]
        if self.strategy is not None:
            parts.append(f"strategy {self.strategy}")
        if self.symbol is not None:
            parts.append(f"symbol {self.symbol}")
        return ", ".join(parts)
