"""What the client knows and decides, with no network and no Django.

The listener (thread or asyncio task) feeds raw Redis data into a `_Tracker`;
every change produces a new immutable `View`, swapped in with one attribute
assignment, so the hot path (`check()`, `allows_order()`) reads one object and
compares one monotonic deadline.

Fail-closed causes, in the order they are reported (the first that applies wins):

- `connecting`: no full read of Redis has succeeded yet;
- `redis_unreachable`: the last connection attempt or read failed;
- `subscription_lost`: the pub/sub connection broke (until the reload after reconnecting);
- `state_missing`: `killswitch:state` has no `version`, or `trading_switch` is absent
  (Redis restarted or was flushed; the service's reconciler republishes it);
- `heartbeat_missing`: `killswitch:heartbeat` is absent;
- `heartbeat_stale`: the newest heartbeat is older than its `stale_after`
  (or the constructor override): the service is not proving it is alive.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from killswitch import domain as L


# The Redis contract (killswitch/distribution.py) -- repeated here because the
# client must not import distribution.py, which imports Django.
def connection_options(*, pubsub: bool) -> dict[str, Any]:
    """redis-py options for both flavours. No silent retries: a broken connection must
    surface so the client fails closed and reloads the full state after reconnecting (a
    silent resubscribe loses messages). Bytes that are not UTF-8 (garbage written by
    hand) decode to U+FFFD, which is no level, so they read as halt instead of crashing."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {"decode_responses": True, "encoding_errors": "replace", "socket_connect_timeout": 2,
            "socket_timeout": 2, "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 1 if pubsub else 0, "client_name": "killswitch-client"}


KEY_GLOBAL = "trading_switch"
KEY_STATE = "killswitch:state"
KEY_SCOPES = "killswitch:scopes"
KEY_HEARTBEAT = "killswitch:heartbeat"
CHANNEL = "killswitch:updates"
# Added by the client library (documented in docs/trading-loop.md).
KEY_CLIENTS = "killswitch:clients"
KEY_ACKS = "killswitch:acks"
ACKS_MAXLEN = 100_000

TRADING_SWITCH_SCOPE = "trading_switch"
CLIENT_SCOPE = "client"

CAUSES: dict[str, str] = {
    "connecting": "no state has been read from Redis yet",
    "redis_unreachable": "Redis is unreachable",
    "subscription_lost": "the subscription to killswitch:updates was lost",
    "state_missing": "the kill switch state is missing in Redis (restart or flush); "
                     "waiting for the service to republish it",
    "heartbeat_missing": "the service heartbeat (killswitch:heartbeat) is missing",
    "heartbeat_stale": "the service heartbeat is older than the staleness bound",
}

_INF = math.inf
_monotonic = time.monotonic


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
        allowed = " Only reduce-only orders are allowed at pause." if level == L.PAUSE and not cause else ""
        super().__init__(f"{kind.capitalize()} for {symbol} refused: {why}.{allowed}")


@dataclass(frozen=True, slots=True)
class View:
    """One consistent picture of the switch for this process. Never mutated."""

    level: str
    scope: str
    cause: str | None
    levels: Mapping[str, str]
    reasons: Mapping[str, str]
    version: int | None
    fresh_until: float  # monotonic deadline; past it the view is stale
    stale_after: float
    is_kill: bool = False

    @property
    def reason(self) -> str:
        return self.reasons.get(self.scope, "")

    def describe(self) -> str:
        if self.cause:
            return f"{self.level}: {CAUSES.get(self.cause, self.cause)}"
        text = f"{self.level} (scope {self.scope}"
        return text + (f", reason: {self.reason})" if self.reason else ")")


_EMPTY: Mapping[str, str] = MappingProxyType({})


def closed_view(cause: str, previous: View | None = None, stale_after: float = 5.0) -> View:
    """The view while the state is unknown: halt, with the cause."""
    return View(L.HALT, CLIENT_SCOPE, cause, previous.levels if previous else _EMPTY,
                previous.reasons if previous else _EMPTY,
                previous.version if previous else None, _INF,
                previous.stale_after if previous else stale_after)


def order_decision(view: View, symbol: str, reduce_only: bool) -> tuple[bool, str, str]:
    """(allowed, level, scope) for one order under `view`.

    running: any order; pause: reduce-only orders only; halt/kill: none. The level
    is the most severe of the process's level and the order's symbol scope.
    """
    level, scope = view.level, view.scope
    if not view.cause and symbol:
        sym_scope = f"{L.SYMBOL}:{symbol.upper()}"
        sym_level = view.levels.get(sym_scope)
        if sym_level is not None:
            if sym_level not in L.SEVERITY:
                sym_level = L.HALT  # an unknown value fails closed
            if L.SEVERITY[sym_level] > L.SEVERITY[level]:
                level, scope = sym_level, sym_scope
    if level == L.RUNNING:
        return True, level, scope
    if level == L.PAUSE and reduce_only and not view.cause:
        return True, level, scope
    return False, level, scope


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


def default_name() -> str:
    return os.path.basename(sys.argv[0] or "") or "python"


class _Tracker:
    """The raw state from Redis and the rule that turns it into a View.

    Only the listener mutates it (one thread or one task); readers see Views.
    """

    def __init__(self, *, account: str | None, strategy: str | None,
                 stale_after: float | None) -> None:
        self.account, self.strategy = account, strategy
        self.stale_override = stale_after
        self.stale_after = stale_after or 5.0
        self.conn_cause: str | None = "connecting"
        self.levels: dict[str, str] = {}
        self.version: int | None = None
        self.switch: str | None = None
        self.hb_deadline: float | None = None
        self.reasons: dict[str, str] = {}

    # --- inputs -------------------------------------------------------------------------

    def load(self, switch: str | None, state: Mapping[str, str], heartbeat: str | None,
             details: Mapping[str, str] | None) -> None:
        """A full read of the contract keys: replaces everything known."""
        raw_version = state.get("version")
        try:
            self.version = int(raw_version) if raw_version is not None else None
        except ValueError:
            self.version = None
        self.levels = {k: v for k, v in state.items() if k not in ("version", "updated_at")}
        self.switch = switch
        self.heartbeat(heartbeat)
        if details is not None:
            self.load_details(details)

    def load_details(self, details: Mapping[str, str]) -> None:
        """`killswitch:scopes` (scope -> JSON): keeps each scope's reason for refusals."""
        reasons: dict[str, str] = {}
        for scope, raw in details.items():
            try:
                reasons[scope] = str(json.loads(raw).get("reason") or "")
            except (ValueError, AttributeError):
                continue
        self.reasons = reasons

    def heartbeat(self, raw: str | Mapping[str, Any] | None) -> None:
        if raw is None:
            self.hb_deadline = None
            return
        try:
            data = json.loads(raw) if isinstance(raw, str | bytes) else raw
            ts = float(data["ts"])
            stale_after = float(data.get("stale_after") or self.stale_after)
        except (ValueError, TypeError, KeyError):
            self.hb_deadline = None
            return
        if self.stale_override is None:
            self.stale_after = stale_after
        # The contract measures age on the wall clock (hosts keep time with NTP); the
        # deadline is kept on the monotonic clock so a clock step here cannot revive it.
        age = max(0.0, time.time() - ts)
        self.hb_deadline = _monotonic() + self.stale_after - age

    def state_message(self, data: Mapping[str, Any]) -> bool:
        """A pushed `state` message. Returns False when it is older than what we hold."""
        try:
            version = int(data["version"])
            levels = dict(data["levels"])
        except (KeyError, TypeError, ValueError):
            return False
        if self.version is not None and version < self.version:
            return False
        self.version = version
        self.levels = {str(k): str(v) for k, v in levels.items()}
        # The publisher's script reports trading_switch as it left it: the global level,
        # or a more severe out-of-band value it kept for the reconciler to audit.
        switch = data.get("trading_switch")
        self.switch = str(switch) if isinstance(switch, str) else self.levels.get(L.GLOBAL, L.RUNNING)
        event = data.get("event")
        if isinstance(event, Mapping) and event.get("scope"):
            if event.get("new_level") == L.RUNNING:
                self.reasons.pop(str(event["scope"]), None)
            else:
                self.reasons[str(event["scope"])] = str(event.get("reason") or "")
        return True

    # --- output -------------------------------------------------------------------------

    def view(self) -> View:
        reasons = MappingProxyType(dict(self.reasons))
        cause = self.conn_cause
        if cause is None and (self.version is None or self.switch is None):
            cause = "state_missing"
        if cause is None and self.hb_deadline is None:
            cause = "heartbeat_missing"
        if cause is None and self.hb_deadline <= _monotonic():
            cause = "heartbeat_stale"
        levels = dict(self.levels)
        if cause:
            return View(L.HALT, CLIENT_SCOPE, cause, MappingProxyType(levels), reasons,
                        self.version, _INF, self.stale_after)
        switch_level = L.normalize_level(self.switch) or L.HALT  # a non-level value fails closed
        state_global = levels.get(L.GLOBAL, L.RUNNING)
        if L.SEVERITY.get(switch_level, 0) > L.SEVERITY.get(state_global, L.SEVERITY[L.HALT]):
            levels[L.GLOBAL] = switch_level
        level, scope = L.effective_level(levels, account=self.account, strategy=self.strategy)
        if scope == L.GLOBAL and levels[L.GLOBAL] != state_global:
            scope = TRADING_SWITCH_SCOPE
        if scope == TRADING_SWITCH_SCOPE:
            reasons = MappingProxyType({**reasons, scope: f"redis-cli SET trading_switch {self.switch}"})
        return View(level, scope, None, MappingProxyType(levels), reasons, self.version,
                    self.hb_deadline, self.stale_after, is_kill=(level == L.KILL))


def registration(identity: Identity, view: View, *, acked_version: int | None,
                 acked_at: float | None, lib_version: str) -> str:
    """The JSON kept in `killswitch:clients` for this process."""
    return json.dumps({
        "client_id": identity.client_id, "name": identity.name, "host": identity.host,
        "pid": identity.pid, "account": identity.account or "", "strategy": identity.strategy or "",
        "version": acked_version, "level": view.level, "scope": view.scope, "cause": view.cause,
        "acked_at": acked_at, "registered_at": identity.registered_at, "last_seen": time.time(),
        "lib": lib_version,
    })


def ack_fields(identity: Identity, version: int, level: str, at: float) -> dict[str, str]:
    """One entry of the `killswitch:acks` stream."""
    return {"client_id": identity.client_id, "version": str(version), "level": level,
            "acked_at": repr(at)}


OnKill = Callable[[], Any]
