"""What the breakers read from brokers, as one small interface (killswitch imports
nothing of brokers/: the brokers app registers its feeds here from AppConfig.ready).

A feed serves some accounts. `read(account, request)` answers the facts the engine
asks for — P&L since each trading-day start, positions with their last price, orders
submitted since a time (with their rejects), and whether the broker is connected —
and never raises for broker trouble: what it cannot know it leaves None and says why
in `why`, so a breaker shows `unknown` with the reason instead of a made-up zero.
Feeds are created in the breaker process (an IB session belongs to the process and
thread that opened it) and kept open between rounds.
"""

from __future__ import annotations

import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

logger = logging.getLogger("killswitch.breakers")

PNL, POSITIONS, ORDERS = "pnl", "positions", "orders"


def compact(symbol: str) -> str:
    """A symbol as a scope names it: upper case, no spaces ('AAPL  261218C00200000')."""
    return "".join(symbol.split()).upper()


def matches(symbol: str, local_symbol: str, wanted: str) -> bool:
    """`symbol:ES` covers every ES contract; `symbol:ESZ6` the one local symbol."""
    wanted = compact(wanted)
    return bool(wanted) and wanted in (compact(symbol), compact(local_symbol))


@dataclass(frozen=True)
class InstrumentPnL:
    symbol: str
    local_symbol: str
    amount: float


@dataclass(frozen=True)
class PnL:
    """An account's P&L since a trading-day start, realized plus unrealized at the last
    price, in the account's currency. `strategies` is None where the broker cannot
    attribute P&L to a strategy; `basis` says how the broker counts (for the reason)."""

    total: float
    instruments: tuple[InstrumentPnL, ...] = ()
    strategies: Mapping[str, float] | None = None
    basis: str = ""
    # (symbol, local symbol) of instruments held whose P&L the broker has not reported yet.
    pending: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PositionFact:
    symbol: str
    quantity: float  # signed
    price: float | None  # the last price; None when the broker has none
    local_symbol: str = ""
    kind: str = ""
    multiplier: float = 1.0
    currency: str = ""

    @property
    def notional(self) -> float | None:
        return None if self.price is None else abs(self.quantity * self.price * self.multiplier)


@dataclass(frozen=True)
class OrderFact:
    """An order a trading process submitted (never the kill switch's own closing orders)."""

    order_id: str
    symbol: str
    submitted_at: float  # unix seconds
    strategy: str = ""
    local_symbol: str = ""
    rejected_at: float | None = None


@dataclass(frozen=True)
class FeedRequest:
    """What the engine needs this round: P&L since each of `day_starts`, positions,
    orders submitted at or after `orders_since`."""

    day_starts: frozenset[datetime] = frozenset()
    positions: bool = False
    orders_since: datetime | None = None


@dataclass
class AccountFacts:
    account: str
    broker: str
    currency: str = "USD"
    connected: bool = True
    connection_known: bool = True  # False: the broker offers no connection state (why["connection"])
    pnl: dict[datetime, PnL] | None = None
    positions: list[PositionFact] | None = None
    orders: list[OrderFact] | None = None
    # Why a fact is None (keys PNL, POSITIONS, ORDERS) or why the broker is not connected
    # ("connection").
    why: dict[str, str] = field(default_factory=dict)


class Feed(ABC):
    """Base class of a broker's breaker inputs. `name` appears in reasons and logs."""

    name: str = ""

    @abstractmethod
    def accounts(self) -> tuple[str, ...]:
        """The accounts this feed serves."""

    @abstractmethod
    def read(self, account: str, request: FeedRequest) -> AccountFacts:
        """The facts of `account` asked for by `request`. Never raises for broker
        trouble: a fact it cannot know is None with its reason in `why`, and a broker it
        cannot reach reads `connected=False`."""

    def close(self) -> None:  # noqa: B027 - optional: most feeds hold nothing
        """Release broker sessions. Safe to call twice."""


FeedFactory = Callable[[], Feed]
_factories: dict[str, FeedFactory] = {}


def register(name: str, factory: FeedFactory) -> None:
    """Add (or replace, by name) a feed factory; called from the owning app's ready()."""
    _factories[name] = factory


def factories() -> dict[str, FeedFactory]:
    return dict(_factories)


def open_feeds() -> list[Feed]:
    """A new instance of every registered feed (the breaker process keeps them open)."""
    opened = []
    for name, factory in _factories.items():
        try:
            opened.append(factory())
        except Exception:  # one broken feed must not blind the breakers of the others
            logger.exception("breaker feed %s could not be opened", name)
    return opened


# --- Marks at the start of the trading day ---------------------------------------------------

MARKS_KEY = "killswitch:breakers:marks:{day}"
MARKS_TTL_SECONDS = 4 * 86400


def day_marks(day_start: datetime, prices: Mapping[str, float]) -> dict[str, float]:
    """The price of each instrument at the start of the trading day, for feeds whose
    broker keeps no closing prices (the paper broker): the first price this process
    saw on or after `day_start`, kept in Redis so a restart or a second breaker
    process counts from the same marks. Instruments seen for the first time get their
    price now. Raises redis errors to the caller (the P&L is then unknown)."""
    from killswitch.distribution.connection import get_redis

    if not prices:
        return {}
    key = MARKS_KEY.format(day=day_start.strftime("%Y%m%dT%H%M%SZ"))
    client = get_redis()
    with client.pipeline(transaction=False) as pipe:
        for name, price in prices.items():
            pipe.hsetnx(key, name, json.dumps(price))
        pipe.expire(key, MARKS_TTL_SECONDS)
        pipe.hmget(key, list(prices))
        stored = pipe.execute()[-1]
    return {name: float(json.loads(value)) if value is not None else prices[name]
            for name, value in zip(prices, stored, strict=True)}
