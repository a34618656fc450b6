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
#: Pub/sub channel: state and heartbeat messages.
CHANNEL = "killswitch:updates"
#: Hash written by trading processes: client_id -> registration JSON.
KEY_CLIENTS = "killswitch:clients"
#: Stream written by trading processes: one entry per state version applied.
KEY_ACKS = "killswitch:acks"
ACKS_MAXLEN = 100_000
#: List written by the service only: requests applied to Redis while the database was down.
KEY_PENDING = "killswitch:pending"
#: Fields of KEY_STATE that are not scopes.
STATE_META_FIELDS: frozenset[str] = frozenset({"version", "updated_at"})

#: Keys a trading process reads, and the ones it writes (Redis ACLs are built from these).
CLIENT_READ_KEYS: tuple[str, ...] = (KEY_GLOBAL, KEY_STATE, KEY_SCOPES, KEY_HEARTBEAT, KEY_LOG)
CLIENT_WRITE_KEYS: tuple[str, ...] = (KEY_CLIENTS, KEY_ACKS)


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


def parse_heartbeat(raw: str | bytes | Mapping[str, Any] | None) -> tuple[float, float | None] | None:
    """(ts, stale_after) of a heartbeat, or None when it is missing or unreadable.

    `stale_after` is None when absent. Non-finite or non-numeric values are unreadable
    (None for ts; None for stale_after) so a reader applies its own bound.
    """
    if raw is None:
        return None
    try:
        data = json.loads(raw) if isinstance(raw, str | bytes) else raw
        ts = float(data["ts"])
    except (ValueError, TypeError, KeyError):
        return None
    if not math.isfinite(ts):
        return None
    stale: float | None
    try:
        stale = float(data.get("stale_after")) if data.get("stale_after") is not None else None
    except (TypeError, ValueError):
        stale = None
    if stale is not None and (not math.isfinite(stale) or stale <= 0):
        stale = None
    return ts, stale


def lua_severity_table() -> str:
    """SEVERITY as a Lua table literal, for the service's scripts: `{running=0, ...}`."""
    return "{" + ", ".join(f"{level}={rank}" for level, rank in SEVERITY.items()) + "}"
