"""The `breakers:` list of config/risk_limits.yaml, validated at start-up.

Each breaker has `name`, `kind`, `scope`, `level`, optionally `warn_at` (a fraction of
the limit that only notifies), `on_unknown` (`trip` or `warn`) and `warn_window_seconds`,
and the keys of its kind (KIND_KEYS). A bad entry raises ImproperlyConfigured naming the
file, the key (`breakers[2] (desk-loss).limit`), the value and what is expected, so the
service refuses to start rather than run without a limit somebody believes is set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ImproperlyConfigured

from killswitch import domain as L

MAX_LOSS, MAX_DRAWDOWN = "max_loss", "max_drawdown"
ORDER_RATE, REJECT_RATE = "order_rate", "reject_rate"
MAX_POSITION, MAX_NOTIONAL = "max_position", "max_notional"
BROKER_DISCONNECT, STALE_DATA, DEAD_MAN = "broker_disconnect", "stale_data", "dead_man"
KINDS = (MAX_LOSS, MAX_DRAWDOWN, ORDER_RATE, REJECT_RATE, MAX_POSITION, MAX_NOTIONAL,
         BROKER_DISCONNECT, STALE_DATA, DEAD_MAN)
TRIP, WARN = "trip", "warn"
PER_SYMBOL, PER_ACCOUNT = "symbol", "account"

# The keys each kind takes besides the common ones; required ones first.
KIND_KEYS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    MAX_LOSS: (("limit",), ("trading_day_start", "currency")),
    MAX_DRAWDOWN: ((), ("limit", "fraction", "trading_day_start", "currency")),
    ORDER_RATE: (("max_orders", "window_seconds"), ()),
    REJECT_RATE: (("max_rejects", "window_seconds"), ()),
    MAX_POSITION: (("limit",), ("per", "symbols")),
    MAX_NOTIONAL: (("limit",), ("per", "symbols", "currency")),
    BROKER_DISCONNECT: (("grace_seconds",), ()),
    STALE_DATA: (("max_age_seconds",), ("symbols",)),
    DEAD_MAN: (("timeout_seconds",), ()),
}
COMMON_KEYS = ("name", "kind", "scope", "level", "warn_at", "on_unknown", "unknown_grace_seconds",
               "warn_window_seconds")
# A breaker that cannot see its figure follows on_unknown; these fail closed by default
# because not knowing *is* what they watch for (a silent process, a lost connection).
TRIP_BY_DEFAULT = (DEAD_MAN, BROKER_DISCONNECT)
# How long a warn_at crossing stays notified when the kind has no window of its own.
TIMEOUT_WARN_WINDOW_SECONDS = 300.0
# How long a figure must stay unknown before on_unknown acts (alert or trip): a broker's
# first report after a (re)connect, one lost round trip, are not an incident.
UNKNOWN_GRACE_SECONDS = 5.0
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_DAY_START = re.compile(r"^(\d{1,2}):(\d{2})(?:\s+(\S+))?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class DayStart:
    """When a trading day starts: a wall-clock time in a time zone (default 00:00 UTC)."""

    at: time = time(0, 0)
    zone: tzinfo = UTC
    text: str = "00:00 UTC"

    def start_of_day(self, now: datetime) -> datetime:
        """The start of the trading day `now` is in (UTC)."""
        local = now.astimezone(self.zone)
        start = datetime.combine(local.date(), self.at, tzinfo=self.zone)
        if start > local:
            start = datetime.combine(local.date() - timedelta(days=1), self.at, tzinfo=self.zone)
        return start.astimezone(UTC)


@dataclass(frozen=True)
class Breaker:
    """One configured breaker. `limit` is in the unit its kind watches (money, orders,
    rejects, units, seconds, or a fraction for max_drawdown with `fraction`)."""

    name: str
    kind: str
    scope: L.ScopeRef
    level: str
    limit: float
    warn_at: float | None = None
    on_unknown: str = WARN
    unknown_grace_seconds: float = UNKNOWN_GRACE_SECONDS
    window_seconds: float | None = None  # order_rate, reject_rate
    trading_day: DayStart = field(default_factory=DayStart)
    currency: str = ""  # money kinds: figures in another currency are unknown
    fractional: bool = False  # max_drawdown given as `fraction` of the day's peak
    per: str = PER_SYMBOL  # max_position / max_notional
    symbols: tuple[str, ...] = ()  # stale_data, max_position, max_notional: only these
    warn_window_seconds: float | None = None

    @property
    def actor(self) -> str:
        return f"breaker:{self.name}"

    @property
    def scope_label(self) -> str:
        return str(self.scope)

    @property
    def warn_threshold(self) -> float | None:
        return None if self.warn_at is None else self.warn_at * self.limit

    def warn_window(self, now: datetime) -> tuple[float, str]:
        """(since, label) of the window a warning notifies once in: a warning sent at or
        after `since` (unix seconds) silences the next. The kind's own window for rates,
        the trading day for money and positions, else 5 minutes."""
        seconds = self.warn_window_seconds if self.warn_window_seconds is not None else self.window_seconds
        if seconds is None and self.kind in (MAX_LOSS, MAX_DRAWDOWN, MAX_POSITION, MAX_NOTIONAL):
            return self.trading_day.start_of_day(now).timestamp(), "trading day"
        seconds = TIMEOUT_WARN_WINDOW_SECONDS if seconds is None else seconds
        return now.timestamp() - seconds, f"{seconds:g} s"


class _Entry:
    """Reads one raw entry, raising errors that name file, key, value and expectation."""

    def __init__(self, path: str, index: int, raw: dict[str, Any]) -> None:
        self.path, self.raw = path, raw
        name = raw.get("name")
        self.prefix = f"breakers[{index}]" + (f" ({name})" if isinstance(name, str) and name else "")

    def bad(self, key: str, value: Any, expected: str) -> ImproperlyConfigured:
        return ImproperlyConfigured(f"{self.path}: {self.prefix}.{key}={value!r} is invalid; expected {expected}")

    def number(self, key: str, *, low: float, high: float, integer: bool = False, strict_low: bool = True,
               what: str = "a number") -> float:
        value = self.raw[key]
        kinds = int if integer else (int, float)
        bounds = f"above {low:g}" if strict_low else f"at least {low:g}"
        if isinstance(value, bool) or not isinstance(value, kinds) or value != value or not (
                (value > low if strict_low else value >= low) and value <= high):
            raise self.bad(key, value, f"{what} {bounds} and at most {high:g}")
        return float(value)

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        value = self.raw.get(key, default)
        if value not in options:
            raise self.bad(key, value, f"one of {', '.join(options)}")
        return value

    def symbols(self) -> tuple[str, ...]:
        value = self.raw.get("symbols", [])
        if not isinstance(value, list) or not all(isinstance(s, str) and s.strip() and " " not in s.strip()
                                                  for s in value):
            raise self.bad("symbols", value, "a list of symbols without spaces, e.g. [AAPL, ESZ6]")
        return tuple(s.strip().upper() for s in value)

    def day_start(self) -> DayStart:
        value = self.raw.get("trading_day_start", "00:00")
        match = _DAY_START.match(value) if isinstance(value, str) else None
        expected = "HH:MM, optionally with a time zone, e.g. '00:00' (UTC) or '17:00 America/New_York'"
        if match is None or int(match.group(1)) > 23 or int(match.group(2)) > 59:
            raise self.bad("trading_day_start", value, expected)
        zone_name = match.group(3) or "UTC"
        try:
            zone: tzinfo = UTC if zone_name == "UTC" else ZoneInfo(zone_name)
        except (ZoneInfoNotFoundError, ValueError):
            raise self.bad("trading_day_start", value, f"a known time zone ({zone_name!r} is not one)") from None
        at = time(int(match.group(1)), int(match.group(2)))
        return DayStart(at, zone, f"{at:%H:%M} {zone_name}")

    def currency(self) -> str:
        value = self.raw.get("currency", "")
        if value != "" and (not isinstance(value, str) or not _CURRENCY.match(value)):
            raise self.bad("currency", value, "a three-letter currency code such as USD")
        return value


def _breaker(path: str, index: int, raw: Any) -> Breaker:
    if not isinstance(raw, dict):
        raise ImproperlyConfigured(f"{path}: breakers[{index}]={raw!r} is invalid; expected a mapping with "
                                   "name, kind, scope, level and the keys of its kind")
    entry = _Entry(path, index, raw)
    for key in ("name", "kind", "scope", "level"):
        if key not in raw:
            raise entry.bad(key, None, f"a {key} (every breaker has name, kind, scope and level)")
    name = raw["name"]
    if not isinstance(name, str) or not _NAME.match(name):
        raise entry.bad("name", name, "a name of lower-case letters, digits, '.', '_' or '-' (at most 64), "
                                      "e.g. desk-loss")
    kind = entry.choice("kind", KINDS, "")
    required, optional = KIND_KEYS[kind]
    for key in raw:
        if key not in (*COMMON_KEYS, *required, *optional):
            raise entry.bad(key, raw[key], f"one of the keys of a {kind} breaker: "
                                           f"{', '.join((*COMMON_KEYS, *required, *optional))}")
    for key in required:
        if key not in raw:
            raise entry.bad(key, None, f"a value: a {kind} breaker needs {' and '.join(required)}")
    try:
        scope = L.ScopeRef.parse(raw["scope"]) if isinstance(raw["scope"], str) else None
    except L.ScopeError as exc:
        raise entry.bad("scope", raw["scope"], f"{L.SCOPE_FORMS} ({exc})") from None
    if scope is None:
        raise entry.bad("scope", raw["scope"], L.SCOPE_FORMS)
    level = entry.choice("level", L.ACTIVE_LEVELS, "")
    values: dict[str, Any] = {}
    if kind == MAX_DRAWDOWN:
        if ("limit" in raw) == ("fraction" in raw):
            raise entry.bad("limit", raw.get("limit"), "either limit (an amount) or fraction (of the day's "
                                                       "peak P&L, e.g. 0.3), not both and not neither")
        if "fraction" in raw:
            values.update(limit=entry.number("fraction", low=0, high=1, strict_low=True,
                                             what="a fraction of the day's peak P&L"), fractional=True)
    if "limit" in raw:
        unit = {MAX_POSITION: "a number of units (shares, contracts)"}.get(kind, "an amount in the account's currency")
        values["limit"] = entry.number("limit", low=0, high=1e15, what=unit)
    for key, integer, what in (("max_orders", True, "a whole number of orders"),
                               ("max_rejects", True, "a whole number of rejects"),
                               ("grace_seconds", False, "seconds"), ("max_age_seconds", False, "seconds"),
                               ("timeout_seconds", False, "seconds")):
        if key in raw:
            # A count may be 0 (any reject trips); a duration must be positive.
            values["limit"] = entry.number(key, low=0, high=1e9 if integer else 86400, integer=integer,
                                           strict_low=not integer, what=what)
    if "window_seconds" in raw:
        values["window_seconds"] = entry.number("window_seconds", low=0, high=86400, what="seconds")
    if "warn_at" in raw:
        values["warn_at"] = entry.number("warn_at", low=0, high=1, what="a fraction of the limit (below 1)")
        if values["warn_at"] >= 1:
            raise entry.bad("warn_at", raw["warn_at"], "a fraction of the limit above 0 and below 1, e.g. 0.8")
    if "unknown_grace_seconds" in raw:
        values["unknown_grace_seconds"] = entry.number("unknown_grace_seconds", low=0, high=3600, strict_low=False,
                                                       what="seconds")
    if "warn_window_seconds" in raw:
        values["warn_window_seconds"] = entry.number("warn_window_seconds", low=0, high=7 * 86400, what="seconds")
    if kind in (MAX_LOSS, MAX_DRAWDOWN):
        values["trading_day"] = entry.day_start()
    if kind in (MAX_LOSS, MAX_DRAWDOWN, MAX_NOTIONAL):
        values["currency"] = entry.currency()
    if kind in (MAX_POSITION, MAX_NOTIONAL):
        values["per"] = entry.choice("per", (PER_SYMBOL, PER_ACCOUNT),
                                     PER_SYMBOL if kind == MAX_POSITION else PER_ACCOUNT)
    if kind in (MAX_POSITION, MAX_NOTIONAL, STALE_DATA):
        values["symbols"] = entry.symbols()
    on_unknown = entry.choice("on_unknown", (TRIP, WARN), TRIP if kind in TRIP_BY_DEFAULT else WARN)
    return Breaker(name=name, kind=kind, scope=scope, level=level, on_unknown=on_unknown, **values)


def parse_breakers(raw: Any, path: str = "risk_limits.yaml") -> tuple[Breaker, ...]:
    """Validate the raw `breakers:` value (a list, or absent). Raises ImproperlyConfigured
    naming file, key, value and what is expected."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ImproperlyConfigured(f"{path}: breakers={raw!r} is invalid; expected a list of breakers "
                                   "(each with name, kind, scope, level)")
    found = tuple(_breaker(path, i, item) for i, item in enumerate(raw))
    seen: dict[str, int] = {}
    for i, breaker in enumerate(found):
        if breaker.name in seen:
            raise ImproperlyConfigured(f"{path}: breakers[{i}].name={breaker.name!r} is invalid; expected a name "
                                       f"not already used by breakers[{seen[breaker.name]}]")
        seen[breaker.name] = i
    return found


@lru_cache(maxsize=1)
def _cached() -> tuple[Breaker, ...]:
    from killswitch.policy import get_policy

    policy = get_policy()
    return parse_breakers(policy.extra.get("breakers"), policy.path or "risk_limits.yaml")


def configured() -> tuple[Breaker, ...]:
    """The breakers in force for this process (read once, like the rest of the policy)."""
    return _cached()


def by_name(name: str) -> Breaker | None:
    return next((b for b in configured() if b.name == name), None)


def reset_cache() -> None:
    _cached.cache_clear()


def check_accounts(known: set[str], *, path: str | None = None) -> None:
    """Every `account:` scope names an account some broker feed serves (called once the
    feeds are registered). Raises ImproperlyConfigured naming the breaker and the accounts."""
    from killswitch.policy import get_policy

    path = path or get_policy().path or "risk_limits.yaml"
    for index, breaker in enumerate(configured()):
        if breaker.scope.kind == L.ACCOUNT and breaker.scope.key not in known:
            raise ImproperlyConfigured(
                f"{path}: breakers[{index}] ({breaker.name}).scope={breaker.scope_label!r} is invalid; expected an "
                f"account configured under brokers: ({', '.join(sorted(known)) or 'none is'})")
