"""The kill switch's Redis contract: levels, scopes, key names and message shapes.

Written once, here, and imported by everything that speaks it: the trading-process
client (this package), the service (`killswitch.domain` re-exports these names and
`killswitch.distribution` publishes with them; its Lua scripts get the severity table
from `lua_severity_table()`), the benchmarks and the tests. It lives in the client's
distribution because trading processes install only this package (no Django), and the
service depends on it, not the other way round.

Pure Python, no I/O, no imports beyond the standard library.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# --- Levels ------------------------------------------------------------------------------

RUNNING, PAUSE, HALT, KILL = "running", "pause", "halt", "kill"
#: Every level, least severe first. The strings are exactly the seed's.
LEVELS: tuple[str, ...] = (RUNNING, PAUSE, HALT, KILL)
SEVERITY: dict[str, int] = {level: rank for rank, level in enumerate(LEVELS)}
#: The levels an activation may set.
ACTIVE_LEVELS: tuple[str, ...] = (PAUSE, HALT, KILL)
#: The levels that get broker work (cancel working orders; kill also closes positions).
BROKER_LEVELS: tuple[str, ...] = (HALT, KILL)


def normalize_level(raw: str | bytes | None) -> str | None:
    """The level a raw value names, as the seed reads it (strip, lower), or None."""
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    value = raw.strip().lower()
    return value if value in SEVERITY else None


def more_severe(a: str, b: str) -> bool:
    """True when level `a` is more severe than `b`; an unknown value counts as halt."""
    return SEVERITY.get(a, SEVERITY[HALT]) > SEVERITY.get(b, SEVERITY[HALT])


# --- Scopes ------------------------------------------------------------------------------

GLOBAL, ACCOUNT, STRATEGY, SYMBOL = "global", "account", "strategy", "symbol"
SCOPE_KINDS: tuple[str, ...] = (GLOBAL, ACCOUNT, STRATEGY, SYMBOL)
MAX_SCOPE_KEY = 64
SCOPE_FORMS = "'global', 'account:ID', 'strategy:NAME' or 'symbol:SYM'"


class ScopeError(ValueError):
    """A scope string that is not `global` or `account:ID`, `strategy:NAME`, `symbol:SYM`."""


@dataclass(frozen=True, slots=True)
class ScopeRef:
    """A scope: `global`, or one account, strategy or symbol."""

    kind: str
    key: str = ""

    def __post_init__(self) -> None:
        if self.kind not in SCOPE_KINDS:
            raise ScopeError(f"unknown scope kind {self.kind!r}; expected one of {', '.join(SCOPE_KINDS)}")
        if self.kind == GLOBAL and self.key:
            raise ScopeError("the global scope takes no key; use 'global'")
        if self.kind != GLOBAL:
            if not self.key or not self.key.strip():
                raise ScopeError(f"scope {self.kind!r} needs a key, e.g. '{self.kind}:NAME'")
            if len(self.key) > MAX_SCOPE_KEY:
                raise ScopeError(f"scope key is {len(self.key)} characters; at most {MAX_SCOPE_KEY}")
            if any(c.isspace() or not c.isprintable() for c in self.key):
                raise ScopeError("scope key must not contain spaces or control characters")

    @classmethod
    def parse(cls, text: str | None) -> ScopeRef:
        """`global` (or empty), `account:DU123`, `strategy:momo`, `symbol:AAPL`."""
        if text is None or not str(text).strip() or str(text).strip().lower() == GLOBAL:
            return cls(GLOBAL)
        text = str(text).strip()
        kind, sep, key = text.partition(":")
        if not sep:
            raise ScopeError(f"scope {text!r} is not understood; expected {SCOPE_FORMS}")
        kind = kind.strip().lower()
        key = key.strip()
        if kind == SYMBOL:
            key = key.upper()
        return cls(kind, key)

    def __str__(self) -> str:
        return label(self.kind, self.key)


def label(kind: str, key: str = "") -> str:
    """The scope's name in Redis and in messages: `global` or `kind:key`."""
    return GLOBAL if kind == GLOBAL else f"{kind}:{key}"


def matching_scopes(*, account: str | None = None, strategy: str | None = None,
                    symbol: str | None = None) -> list[str]:
    """The scope names that apply to a process (and, if given, an order's symbol)."""
    names = [GLOBAL]
    if account:
        names.append(label(ACCOUNT, account))
    if strategy:
        names.append(label(STRATEGY, strategy))
    if symbol:
        names.append(label(SYMBOL, symbol.upper()))
    return names


def effective_level(levels: Mapping[str, str], *, account: str | None = None,
                    strategy: str | None = None, symbol: str | None = None) -> tuple[str, str]:
    """The most severe level among the matching scopes, and the scope that set it.

    A scope absent from `levels` is running; a value that is not a level reads as
    halt (fail closed). Ties go to the broadest scope, the one an operator looks at first.
    """
    best_level, best_scope = RUNNING, GLOBAL
    for name in matching_scopes(account=account, strategy=strategy, symbol=symbol):
        level = levels.get(name, RUNNING)
        if SEVERITY.get(level, SEVERITY[HALT]) > SEVERITY[best_level]:
            best_level, best_scope = (level if level in SEVERITY else HALT), name
    return best_level, best_scope


# --- Keys ----------------------------------------------------------------------------------

#: The global level as a plain string (the seed's key).
KEY_GLOBAL = "trading_switch"
#: Hash: `version`, `updated_at` and one field per scope whose value is its level.
KEY_STATE = "killswitch:state"
#: Hash: scope -> JSON with level, reason, actor, source, since, cooldown_until, version.
KEY_SCOPES = "killswitch:scopes"
#: String: JSON heartbeat written by the service's reconciler.
KEY_HEARTBEAT = "killswitch:heartbeat"
#: List, newest first: recent audit events as JSON (the seed's key).
KEY_LOG = "risk:kill_switch:log"
#: Pub/sub channel: state and heartbeat messages. A hint to re-read the keys, never the state.
CHANNEL = "killswitch:updates"
#: Stream written by trading processes: their registrations (REGISTRATION_FIELDS) and
#: clean exits. Append-only, like KEY_ACKS, so a trading host needs no write command that
#: could change a state key (Redis users: killswitch.distribution.acl).
KEY_CLIENTS = "killswitch:clients"
CLIENTS_MAXLEN = 100_000
#: Stream written by trading processes: one entry per state version applied (ACK_FIELDS).
KEY_ACKS = "killswitch:acks"
ACKS_MAXLEN = 100_000
#: List written by the service only: requests applied to Redis while the database was down.
KEY_PENDING = "killswitch:pending"
#: Written by the service only: counts of identical refusals, aggregated per window.
KEY_REFUSALS = "killswitch:refusals"
#: Fields of KEY_STATE that are not scopes.
STATE_META_FIELDS: frozenset[str] = frozenset({"version", "updated_at"})

#: Keys a trading process reads, and the ones it writes (Redis ACLs are built from these).
CLIENT_READ_KEYS: tuple[str, ...] = (KEY_GLOBAL, KEY_STATE, KEY_SCOPES, KEY_HEARTBEAT, KEY_LOG)
CLIENT_WRITE_KEYS: tuple[str, ...] = (KEY_CLIENTS, KEY_ACKS)


def keyspace_channel(db: int = 0) -> str:
    """The keyspace-notification channel of `trading_switch` in database `db`.

    Published by Redis itself when the server has `notify-keyspace-events K$`: a raw
    `SET trading_switch kill` then reaches clients at once instead of at their next
    backstop read. Like CHANNEL, only a hint to re-read.
    """
    return f"__keyspace@{db}__:{KEY_GLOBAL}"


def levels_of(state: Mapping[str, str]) -> dict[str, str]:
    """The scope -> level fields of a KEY_STATE hash."""
    return {k: v for k, v in state.items() if k not in STATE_META_FIELDS}


def version_of(state: Mapping[str, str]) -> int | None:
    """The KEY_STATE hash's version, or None when missing or not a whole number."""
    raw = state.get("version")
    try:
        return int(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


# --- Scope names a client reports that are not switch scopes ---------------------------------

#: The scope a client names when a raw `trading_switch` value is more severe than the state.
TRADING_SWITCH_SCOPE = "trading_switch"
#: The scope a client names while it fails closed (the state is unknown).
CLIENT_SCOPE = "client"

# --- Heartbeat trust -----------------------------------------------------------------------

#: The largest `stale_after` a client believes (the policy default,
#: `kill_switch.client_stale_after_seconds`). A heartbeat claiming more, or claiming
#: nothing readable, is held to this bound; clients may raise it by configuration
#: (`max_stale_after`, env KILLSWITCH_MAX_STALE_AFTER) when the policy is longer.
DEFAULT_MAX_STALE_AFTER = 5.0
#: How far in the future a heartbeat's `ts` may be (clock skew between hosts) and still
#: count as a renewal. A `ts` further ahead renews nothing.
MAX_CLOCK_SKEW = 1.0

# --- What trading processes write --------------------------------------------------------------

#: The registration JSON a trading process appends to the KEY_CLIENTS stream (entry
#: fields `client_id` and `registration`) on start, whenever the level it reads changes,
#: when a dead-man's switch is renewed, and at least every second; on a clean exit it
#: appends `client_id` and `bye` = "1":
#:   client_id      "host:pid:random";
#:   name, host, pid, account, strategy   who the process is ("" when not bound);
#:   version        the state version it applied (int), or null before the first read;
#:   level, scope   what it reads now (scope CLIENT_SCOPE while failing closed);
#:   cause          the fail-closed cause code, or null;
#:   acked_at, registered_at, last_seen   unix seconds (its wall clock);
#:   lib            the client library's version;
#:   market_data    {SYMBOL: unix seconds}: when the process last saw market data for each
#:                  symbol (input of the stale-data breaker);
#:   deadman        {name: unix seconds}: when each dead-man's switch was last renewed
#:                  (input of the dead-man's-switch breaker).
REGISTRATION_FIELDS: tuple[str, ...] = (
    "client_id", "name", "host", "pid", "account", "strategy", "version", "level", "scope",
    "cause", "acked_at", "registered_at", "last_seen", "lib", "market_data", "deadman",
)
#: One KEY_ACKS stream entry per state version applied, written right after it took
#: effect: client_id, version (decimal string), level, acked_at (unix seconds, decimal).
ACK_FIELDS: tuple[str, ...] = ("client_id", "version", "level", "acked_at")


def registration_entry(client_id: str, registration: str) -> dict[str, str]:
    """One KEY_CLIENTS stream entry: the process' current registration JSON."""
    return {"client_id": client_id, "registration": registration}


def goodbye_entry(client_id: str) -> dict[str, str]:
    """The KEY_CLIENTS stream entry of a clean exit."""
    return {"client_id": client_id, "bye": "1"}

# --- Messages ------------------------------------------------------------------------------

STATE, HEARTBEAT = "state", "heartbeat"


def state_message(version: int, levels: Mapping[str, str], event: Mapping[str, Any] | None) -> str:
    """The JSON pushed on CHANNEL after every change (the publisher adds `trading_switch`).

    Receivers must treat it as a hint to re-read the keys, never as the state itself.
    """
    return json.dumps({"type": STATE, "version": version, "levels": dict(levels),
                       "event": dict(event) if event is not None else None})


def heartbeat_message(ts: float, version: int, stale_after: float) -> str:
    """The JSON kept in KEY_HEARTBEAT and pushed on CHANNEL by the service."""
    return json.dumps({"type": HEARTBEAT, "ts": ts, "version": version, "stale_after": stale_after})


def _finite(value: Any) -> float | None:
    """A finite number from JSON (a number or a numeric string), else None. Booleans are
    not numbers here, although Python's float() takes them."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if math.isfinite(number) else None


def parse_heartbeat(raw: str | bytes | Mapping[str, Any] | None) -> tuple[float, float | None] | None:
    """(ts, stale_after) of a heartbeat, or None when it is missing or unreadable.

    `stale_after` is None when absent. Non-finite or non-numeric values are unreadable
    (None for ts; None for stale_after, as is a value <= 0) so a reader applies its own
    bound. Parsing is not trusting: see the client's heartbeat rules (core.HeartbeatTrust).
    """
    if raw is None:
        return None
    try:
        data = json.loads(raw) if isinstance(raw, str | bytes) else raw
        ts = _finite(data["ts"])
        stale = _finite(data.get("stale_after"))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    if ts is None:
        return None
    if stale is not None and stale <= 0:
        stale = None
    return ts, stale


def lua_severity_table() -> str:
    """SEVERITY as a Lua table literal, for the service's scripts: `{running=0, ...}`."""
    return "{" + ", ".join(f"{level}={rank}" for level, rank in SEVERITY.items()) + "}"
