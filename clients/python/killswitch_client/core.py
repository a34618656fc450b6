"""What the client knows and decides, with no I/O: the one place both drivers share.

The drivers (`sync.KillSwitch`'s thread, `aio.AsyncKillSwitch`'s task) own the Redis
connections and nothing else. They feed the `Core` events -- subscribed, the keys as
read, messages received, connection lost -- and ask it `next_action()`: re-read the
keys (`RELOAD`), write a report (`REPORT`: registration and acknowledgement), or wait
for messages (`WAIT`, with how long). Every rule lives here, so the two flavours
cannot drift.

Trust the keys, not the messages: a pub/sub message never changes a level and never
triggers on_kill; it only makes the driver re-read the keys (coalesced: all queued
messages, then one reload). Only what the keys say is applied.

Fail-closed causes, in the order they are reported (the first that applies wins):

- `connecting`: no full read of Redis has succeeded yet;
- `redis_unreachable`: the last connection attempt or read failed;
- `subscription_lost`: the pub/sub connection broke (until the reload after reconnecting);
- `state_missing`: `killswitch:state` has no `version`, or `trading_switch` is absent
  (Redis restarted or was flushed; the service's reconciler republishes it);
- `heartbeat_missing`: `killswitch:heartbeat` is absent;
- `heartbeat_stale`: the heartbeat is older than the bound, does not advance, or cannot
  be believed (see `HeartbeatTrust`): the service is not proving it is alive.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from . import contract as C
from .views import (
    CONNECTING,
    HEARTBEAT_STALE,
    REDIS_UNREACHABLE,
    SUBSCRIPTION_LOST,
    Identity,
    View,
    closed_view,
)

LIB_VERSION = "2.0.0"

RELOAD, REPORT, WAIT = "reload", "report", "wait"
#: The longest a driver waits for messages before asking again: bounds how late a
#: dead-man's renewal or a staleness flip is written.
MAX_WAIT = 0.25
BACKOFF_FIRST, BACKOFF_MAX = 0.05, 1.0
#: Bounds on what a process may carry in its registration (it is rewritten every second).
MAX_MARKET_DATA_SYMBOLS = 5000
MAX_DEADMAN_SWITCHES = 100

_INF = math.inf


class HeartbeatTrust:
    """Turns reads of `killswitch:heartbeat` into a monotonic deadline, believing only
    what a forger cannot stretch:

    - `stale_after` that is missing, non-numeric, non-finite, <= 0 or above `cap` counts
      as `cap` (a constructor `override` replaces it, within `cap`);
    - a `ts` that is missing, non-numeric or non-finite makes the heartbeat stale now;
    - age is measured on the wall clock (the contract; hosts run NTP) but the deadline is
      kept on the monotonic clock, so a clock step here cannot revive it;
    - a `ts` counts as a renewal only when it advanced since the previous believable read
      and is not ahead of this host's clock by more than MAX_CLOCK_SKEW (a far-future value
      is not even remembered, so it cannot mask the next real one); without a renewal the
      heartbeat is stale once the bound has passed since the last one. So a constant forged
      heartbeat (`{"ts": 1e12, "stale_after": 1e9}`), a frozen copy of the last real one or
      a series of far-future values lasts one bound after the service stopped.
    """

    def __init__(self, *, cap: float, override: float | None) -> None:
        self.cap, self.override = cap, override
        self.bound = override if override is not None else cap
        self._last_ts: float | None = None
        self._renewed_at = -_INF

    def read(self, raw: str | None, *, mono: float, wall: float) -> float | None:
        """The monotonic deadline of the heartbeat `raw` read now; None when it is absent;
        -inf when it cannot be believed at all."""
        if raw is None:
            return None
        parsed = C.parse_heartbeat(raw)
        if parsed is None:
            return -_INF
        ts, stale_after = parsed
        if self.override is not None:
            self.bound = self.override
        else:
            self.bound = stale_after if stale_after is not None and stale_after <= self.cap else self.cap
        if ts <= wall + C.MAX_CLOCK_SKEW:
            if self._last_ts is None or ts > self._last_ts:
                self._renewed_at = mono
            self._last_ts = ts  # also when it went back (the service's clock was stepped)
        elif self._last_ts is None and self._renewed_at == -_INF:
            self._renewed_at = mono  # the very first read: one bound, no more
        age = max(0.0, wall - ts)
        return min(mono + self.bound - age, self._renewed_at + self.bound)


@dataclass(frozen=True, slots=True)
class Report:
    """What the driver must write: the registration and, when a new version took effect,
    its acknowledgement. Hand it back to `Core.reported()` once written."""

    registration: str
    ack: dict[str, str] | None
    version: int | None
    acked_at: float | None
    key: tuple[str, str, str | None]
    renewals: int


@dataclass(frozen=True, slots=True)
class Action:
    kind: str  # RELOAD, REPORT or WAIT
    report: Report | None = None
    timeout: float = 0.0


_RELOAD = Action(RELOAD)


class Core:
    """The client's state and every rule that turns Redis data into a `View`.

    Thread-safety: the driver (one thread or one task) calls the event methods; the
    trading loop reads `view` (one attribute) and may call `current()`, `claim_kill()`,
    `note_market_data()`, `renew()` and `pending_report()` from any thread.
    """

    def __init__(self, *, identity: Identity, stale_after: float | None, max_stale_after: float,
                 backstop_interval: float, report_interval: float,
                 monotonic: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.identity = identity
        self.account, self.strategy = identity.account, identity.strategy
        self.backstop_interval, self.report_interval = backstop_interval, report_interval
        self._mono, self._wall = monotonic, wall
        self._trust = HeartbeatTrust(cap=max_stale_after, override=stale_after)
        self._lock = threading.Lock()
        # What the keys said at the last read.
        self._levels: dict[str, str] = {}
        self._version: int | None = None
        self._switch: str | None = None
        self._hb_deadline: float | None = None
        self._reasons: dict[str, str] = {}
        # Connection and schedule.
        self._conn_cause: str | None = CONNECTING
        self._subscribed = False
        self._reload_pending = True
        self._next_backstop = 0.0
        self._next_report = 0.0
        self._backoff = BACKOFF_FIRST
        self.ready = False
        # Reports.
        self._acked_version: int | None = None
        self._acked_at: float | None = None
        self._reported: tuple[str, str, str | None] | None = None
        self._renewals = 0  # dead-man renewals since start; written when ahead of _renewals_written
        self._renewals_written = 0
        self.market_data: dict[str, float] = {}
        self.deadman: dict[str, float] = {}
        # Kill: handled once per known kill.
        self._kill_handled = False
        self.view: View = closed_view(CONNECTING, stale_after=self._trust.bound)

    # --- events from the driver -----------------------------------------------------------

    def connected(self) -> None:
        """The driver subscribed (CHANNEL and the keyspace channel): read everything next,
        since messages sent while disconnected are lost."""
        self._subscribed = True
        self._reload_pending = True

    def loaded(self, switch: str | None, state: Mapping[str, str] | None, heartbeat: str | None,
               details: Mapping[str, str] | None) -> View:
        """One atomic read of the contract keys (GET trading_switch, HGETALL state, GET
        heartbeat, HGETALL scopes): replaces everything known. Returns the new view."""
        now, wall = self._mono(), self._wall()
        state = state or {}
        self._version = C.version_of(state)
        self._levels = C.levels_of(state)
        self._switch = switch
        self._hb_deadline = self._trust.read(heartbeat, mono=now, wall=wall)
        reasons: dict[str, str] = {}
        for scope, raw in (details or {}).items():
            try:
                reasons[scope] = str(json.loads(raw).get("reason") or "")
            except (ValueError, TypeError, AttributeError):
                continue  # an unreadable detail only loses its reason, never the level
        self._reasons = reasons
        self._conn_cause = None
        self._reload_pending = False
        self._next_backstop = now + self.backstop_interval
        self._backoff = BACKOFF_FIRST
        self.ready = True
        return self._set_view(self._compute(now))

    def messages(self, messages: Iterable[Mapping[str, Any]]) -> int:
        """Messages the driver drained from the subscription. Their content is never
        applied: any message on a subscribed channel only schedules one reload. Returns
        how many asked for it."""
        count = sum(1 for m in messages if m.get("type") in ("message", "pmessage"))
        if count:
            self._reload_pending = True
        return count

    def connection_lost(self, error: BaseException) -> tuple[float, str | None]:
        """The connection or a read failed. Fails closed at once. Returns the seconds to
        wait before reconnecting and a warning to log (None when it would repeat one)."""
        cause = SUBSCRIPTION_LOST if self._subscribed else REDIS_UNREACHABLE
        warning = None
        if self._subscribed or self.view.cause != cause:
            warning = f"kill switch client failing closed: {cause} ({error or type(error).__name__})"
        self._subscribed = False
        self._conn_cause = cause
        self._reload_pending = True
        self._set_view(self._compute(self._mono()))
        delay, self._backoff = self._backoff, min(BACKOFF_MAX, self._backoff * 2)
        return delay, warning

    def next_action(self) -> Action:
        """What the driver must do now: RELOAD, REPORT (then call `reported`) or WAIT."""
        now = self._mono()
        self.current()
        if self._reload_pending or now >= self._next_backstop:
            return _RELOAD
        report = self.pending_report(force=now >= self._next_report)
        if report is not None:
            return Action(REPORT, report)
        wake = min(self._next_backstop, self._next_report, self.view.fresh_until)
        return Action(WAIT, timeout=min(MAX_WAIT, max(0.0, wake - now)))

    def pending_report(self, *, force: bool = False) -> Report | None:
        """The report due now: an acknowledgement when a new version took effect, the
        registration when the level read changed, a dead-man's switch was renewed or
        `force` (the periodic refresh); else None."""
        view = self.current()
        key = (view.level, view.scope, view.cause)
        with self._lock:
            ack = view.version is not None and view.version != self._acked_version
            renewals = self._renewals
            if not (ack or force or key != self._reported or renewals != self._renewals_written):
                return None
            acked_version, acked_at = self._acked_version, self._acked_at
            fields = None
            if ack:
                acked_version, acked_at = view.version, self._wall()
                fields = {"client_id": self.identity.client_id, "version": str(view.version),
                          "level": view.level, "acked_at": repr(acked_at)}
        return Report(self._registration(view, acked_version, acked_at), fields, acked_version,
                      acked_at, key, renewals)

    def reported(self, report: Report) -> None:
        """The driver wrote `report`."""
        with self._lock:
            self._acked_version, self._acked_at = report.version, report.acked_at
            self._reported = report.key
            self._renewals_written = max(self._renewals_written, report.renewals)
        self._next_report = self._mono() + self.report_interval

    # --- the view ---------------------------------------------------------------------------

    def current(self) -> View:
        """The view now: the last one published, or `heartbeat_stale` once its deadline passed."""
        view = self.view
        if view.fresh_until < self._mono():
            with self._lock:
                # Re-check under the lock: the driver may have just published a fresh view.
                if self.view.fresh_until < self._mono():
                    self.view = closed_view(HEARTBEAT_STALE, self.view)
                view = self.view
        return view

    def claim_kill(self) -> bool:
        """True once per known kill: the caller runs on_kill. Re-armed only when the keys
        show the kill lifted (a known, non-kill level); the fail-closed halt of a Redis
        blip does not re-arm it, so one kill never runs the liquidation hook twice."""
        with self._lock:
            first = not self._kill_handled
            self._kill_handled = True
            return first

    def _set_view(self, view: View) -> View:
        with self._lock:
            self.view = view
            if view.cause is None and not view.is_kill:
                self._kill_handled = False
        return view

    def _compute(self, now: float) -> View:
        reasons = MappingProxyType(dict(self._reasons))
        levels = dict(self._levels)
        cause = self._conn_cause
        if cause is None and (self._version is None or self._switch is None):
            cause = "state_missing"
        if cause is None and self._hb_deadline is None:
            cause = "heartbeat_missing"
        if cause is None and self._hb_deadline <= now:
            cause = HEARTBEAT_STALE
        if cause:
            return View(C.HALT, C.CLIENT_SCOPE, cause, MappingProxyType(levels), reasons,
                        self._version, _INF, self._trust.bound, self._switch)
        switch_level = C.normalize_level(self._switch) or C.HALT  # a non-level value fails closed
        state_global = levels.get(C.GLOBAL, C.RUNNING)
        if C.more_severe(switch_level, state_global):
            levels[C.GLOBAL] = switch_level
        level, scope = C.effective_level(levels, account=self.account, strategy=self.strategy)
        if scope == C.GLOBAL and levels[C.GLOBAL] != state_global:
            scope = C.TRADING_SWITCH_SCOPE
            reasons = MappingProxyType({**reasons, scope: f"redis-cli SET trading_switch {self._switch}"})
        return View(level, scope, None, MappingProxyType(levels), reasons, self._version,
                    self._hb_deadline, self._trust.bound, self._switch, is_kill=(level == C.KILL))

    # --- breaker inputs ---------------------------------------------------------------------

    def note_market_data(self, symbol: str, ts: float | None) -> None:
        """Record market data for `symbol` (a dict write; carried at the next refresh).

        Raises TypeError/ValueError on a symbol that is not a non-empty string, a `ts`
        that is not a finite number, or more than MAX_MARKET_DATA_SYMBOLS symbols."""
        if type(symbol) is not str or not symbol:
            raise TypeError(f"market_data symbol must be a non-empty string, not {symbol!r}")
        if ts is None:
            ts = self._wall()
        elif isinstance(ts, bool) or not isinstance(ts, int | float) or not math.isfinite(ts):
            raise ValueError(f"market_data ts must be a finite unix time in seconds, not {ts!r}")
        symbol = symbol.upper()
        if symbol not in self.market_data and len(self.market_data) >= MAX_MARKET_DATA_SYMBOLS:
            raise ValueError(f"market_data: more than {MAX_MARKET_DATA_SYMBOLS} symbols in one "
                             "process; split the symbols over processes")
        self.market_data[symbol] = float(ts)

    def renew(self, name: str) -> None:
        """Renew the dead-man's switch `name`; written at the driver's next wake-up.

        Raises TypeError on a name that is not a non-empty string, ValueError past
        MAX_DEADMAN_SWITCHES names."""
        if type(name) is not str or not name:
            raise TypeError(f"heartbeat name must be a non-empty string, not {name!r}")
        if name not in self.deadman and len(self.deadman) >= MAX_DEADMAN_SWITCHES:
            raise ValueError(f"heartbeat: more than {MAX_DEADMAN_SWITCHES} dead-man's switches")
        self.deadman[name] = self._wall()
        with self._lock:
            self._renewals += 1

    # --- payloads ---------------------------------------------------------------------------

    def _registration(self, view: View, acked_version: int | None, acked_at: float | None) -> str:
        """The JSON kept in KEY_CLIENTS for this process (contract.REGISTRATION_FIELDS)."""
        ident = self.identity
        return json.dumps({
            "client_id": ident.client_id, "name": ident.name, "host": ident.host, "pid": ident.pid,
            "account": ident.account or "", "strategy": ident.strategy or "",
            "version": acked_version, "level": view.level, "scope": view.scope, "cause": view.cause,
            "acked_at": acked_at, "registered_at": ident.registered_at, "last_seen": self._wall(),
            "lib": LIB_VERSION,
            # Copies: the trading thread may add a symbol while this is encoded.
            "market_data": dict(self.market_data), "deadman": dict(self.deadman),
        })
