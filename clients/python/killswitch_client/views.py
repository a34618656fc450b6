"""What a trading process is shown: the immutable `View`, the fail-closed causes, the
order-gate decision and the errors the gate raises. No I/O.

A new `View` is swapped in (one attribute assignment) on every change, so the hot path
(`check()`, `allows_order()`) reads one object and compares one monotonic deadline.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from . import contract as C

CONNECTING, REDIS_UNREACHABLE, SUBSCRIPTION_LOST = "connecting", "redis_unreachable", "subscription_lost"
STATE_MISSING, HEARTBEAT_MISSING, HEARTBEAT_STALE = "state_missing", "heartbeat_missing", "heartbeat_stale"

CAUSES: dict[str, str] = {
    CONNECTING: "no state has been read from Redis yet",
    REDIS_UNREACHABLE: "Redis is unreachable",
    SUBSCRIPTION_LOST: "the subscription to killswitch:updates was lost",
    STATE_MISSING: "the kill switch state is missing in Redis (restart or flush); "
                   "waiting for the service to republish it",
    HEARTBEAT_MISSING: "the service heartbeat (killswitch:heartbeat) is missing",
    HEARTBEAT_STALE: "the service heartbeat is older than the staleness bound, "
                     "does not advance or cannot be believed",
}


class KillSwitchExit(SystemExit):
    """Raised from check()/gate calls on `kill` when exit_on_kill is set (exit code 1).

    A SystemExit, so the seed's `except Exception` and `except KeyboardInterrupt`
    clauses do not swallow it.
    """

    def __init__(self, reason: str = "") -> None:
        super().__init__(1)
        self.reason = reason


class OrderRefused(Exception):  # noqa: N818 -- the name says what happened to the order
    """The kill switch forbids this order. Attributes say why.

    level: the level that refused it (`pause`, `halt`, `kill`);
    scope: the scope that set it (`global`, `account:DU1`, `symbol:AAPL`,
           `trading_switch` for a raw redis-cli value, `client` when failing closed);
    reason: the operator's reason for that scope, when known;
    cause: the fail-closed cause code (see CAUSES), or None;
    symbol, reduce_only: the order that was refused.
    """

    def __init__(self, *, symbol: str, reduce_only: bool, level: str, scope: str,
                 reason: str = "", cause: str | None = None) -> None:
        self.symbol, self.reduce_only = symbol, reduce_only
        self.level, self.scope, self.reason, self.cause = level, scope, reason, cause
        kind = "reduce-only order" if reduce_only else "order"
        if cause:
            why = f"the client reads {level} because {CAUSES.get(cause, cause)} (cause: {cause})"
        else:
            why = f"kill switch at {level} on scope {scope}"
            if reason:
                why += f" (reason: {reason})"
        allowed = " Only reduce-only orders are allowed at pause." if level == C.PAUSE and not cause else ""
        super().__init__(f"{kind.capitalize()} for {symbol} refused: {why}.{allowed}")


@dataclass(frozen=True, slots=True)
class View:
    """One consistent picture of the switch for this process, as the keys said it. Never mutated."""

    level: str
    scope: str
    cause: str | None
    levels: Mapping[str, str]
    reasons: Mapping[str, str]
    version: int | None
    fresh_until: float  # monotonic deadline; past it the view is stale
    stale_after: float
    trading_switch: str | None = None  # the raw key as last read
    is_kill: bool = False

    @property
    def reason(self) -> str:
        return self.reasons.get(self.scope, "")

    def describe(self) -> str:
        """One line for people: `halt: <cause text>` or `pause (scope global, reason: CPI)`."""
        if self.cause:
            return f"{self.level}: {CAUSES.get(self.cause, self.cause)}"
        text = f"{self.level} (scope {self.scope}"
        return text + (f", reason: {self.reason})" if self.reason else ")")


_EMPTY: Mapping[str, str] = MappingProxyType({})


def closed_view(cause: str, previous: View | None = None, stale_after: float = C.DEFAULT_MAX_STALE_AFTER) -> View:
    """The view while the state is unknown: halt, with the cause."""
    if previous is None:
        return View(C.HALT, C.CLIENT_SCOPE, cause, _EMPTY, _EMPTY, None, math.inf, stale_after)
    return View(C.HALT, C.CLIENT_SCOPE, cause, previous.levels, previous.reasons, previous.version,
                math.inf, previous.stale_after, previous.trading_switch)


def order_decision(view: View, symbol: str, reduce_only: bool) -> tuple[bool, str, str]:
    """(allowed, level, scope) for one order under `view`.

    running: any order; pause: reduce-only orders only; halt/kill and any fail-closed
    view: none. The level is the most severe of the process's level and the order's
    symbol scope (an unknown value there fails closed).
    """
    level, scope = view.level, view.scope
    if not view.cause and symbol:
        sym_scope = C.label(C.SYMBOL, symbol.upper())
        sym_level = view.levels.get(sym_scope)
        if sym_level is not None:
            if sym_level not in C.SEVERITY:
                sym_level = C.HALT
            if C.SEVERITY[sym_level] > C.SEVERITY[level]:
                level, scope = sym_level, sym_scope
    if level == C.RUNNING:
        return True, level, scope
    if level == C.PAUSE and reduce_only and not view.cause:
        return True, level, scope
    return False, level, scope


def default_name() -> str:
    return os.path.basename(sys.argv[0] or "") or "python"


@dataclass
class Identity:
    """Who this process is, as registered in `killswitch:clients`."""

    name: str
    account: str | None
    strategy: str | None
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    client_id: str = ""
    registered_at: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if not self.client_id:
            self.client_id = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:8]}"
