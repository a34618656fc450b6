"""The one interface every broker adapter offers to the kill switch's runs.

An adapter lists working orders and positions in a scope (one account, optionally
narrowed to a strategy or a symbol), cancels one order, cancels all in a scope,
and closes one position at market. Every failure is raised as BrokerError, whose
`retryable` says whether trying again can help (a dropped connection: yes; an
account the broker does not know: no).

Adapters hold no rules about levels or runs: those live in brokers.services.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from decimal import Decimal


class BrokerError(Exception):
    """A broker operation failed. `retryable` is True when repeating it may succeed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True)
class BrokerScope:
    """Where broker work applies: one account, optionally one strategy or one symbol."""

    account: str
    strategy: str | None = None
    symbol: str | None = None

    def matches(self, *, account: str, strategy: str = "", symbol: str = "") -> bool:
        if account != self.account:
            return False
        if self.strategy is not None and strategy != self.strategy:
            return False
        return self.symbol is None or symbol.upper() == self.symbol.upper()

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


@dataclass(frozen=True)
class WorkingOrder:
    account: str
    order_id: str
    symbol: str
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
    def remaining(self) -> Decimal:
        return self.quantity - self.filled


@dataclass(frozen=True)
class Position:
    account: str
    symbol: str
    quantity: Decimal  # signed: > 0 long, < 0 short
    avg_cost: Decimal = Decimal(0)


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


@dataclass
class CancelAllResult:
    results: list[CancelResult] = field(default_factory=list)
    # True when the broker's own global cancel was used (one message for everything).
    global_cancel: bool = False


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
        """Every non-zero position in `scope` (strategy is ignored: brokers keep net
        positions per account and symbol). Raises BrokerError when unknown."""

    @abstractmethod
    def cancel_order(self, order: WorkingOrder) -> CancelResult:
        """Cancel one order and report what happened to it (never raises for a broker's
        'too late' answer: that is an outcome). Raises BrokerError when the outcome is unknown."""

    def cancel_all(self, scope: BrokerScope, orders: list[WorkingOrder],
                   *, global_scope: bool = False) -> CancelAllResult:
        """Cancel `orders` (the working orders of `scope`, as just listed). The default
        cancels one by one; adapters with a broker-wide cancel use it when
        `global_scope` says every order of the broker connection is in scope, and then
        also report the orders of other accounts that the broker-wide cancel reached."""
        return CancelAllResult([self.cancel_order(order) for order in orders])

    def settle(self, orders: list[WorkingOrder]) -> list[CancelResult]:
        """Outcomes of orders that are no longer working, whose cancel was sent by an
        attempt that did not live to read the answer. Default: cancelled."""
        return [CancelResult(o, CANCELLED, o.filled, "no longer working when re-read") for o in orders]

    @abstractmethod
    def close_position(self, position: Position, *, quantity: Decimal, client_ref: str) -> OrderState:
        """Send a market order of the opposite side for `quantity` (positive), tagged
        `client_ref`. Idempotent by `client_ref` where the broker allows it. Returns the
        order's state once the broker answered (it may still be working)."""

    @abstractmethod
    def find_order(self, *, account: str, client_ref: str) -> OrderState | None:
        """The order placed with `client_ref`, working or done, or None when the broker
        has definitely never accepted it. Raises BrokerError when that cannot be known."""

    def close(self) -> None:  # noqa: B027 - optional hook; most adapters hold nothing
        """Release connections. Safe to call twice."""

    def __enter__(self) -> BrokerAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
