"""The breaker loop: every round reads the brokers and the trading processes itself,
computes each breaker's figure and trips, warns or shows it unknown.

A round (`Engine.round`) guarantees:
- a trip is an ordinary activation through the services (source `automatic`, actor
  `breaker:<name>`, which may only activate), with the figure, the limit and the window
  in its reason; it gets the broker runs, notifications and acknowledgements of any
  activation. It is attempted only by the lease holder, right after renewing the
  lease, and only after taking the breaker's latch (SET NX): one breach, one trip,
  however many breaker processes run;
- a trip never lowers a level (a scope already at or above the breaker's level is
  left as it is, and the latch says so) and never resumes: the latch stays until a
  person has resumed the scope to `running`; only then can the breaker trip again;
- a breaker whose figure cannot be computed follows `on_unknown`: `trip`, or `warn`
  (one alert per unknown episode); a `warn_at` crossing is one alert per window;
- one round's failures (a broker, the database, Redis) are logged and never end the loop.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import redis
from django.db import DatabaseError, close_old_connections, connection

from killswitch import domain as L
from killswitch import services
from killswitch.models import Scope, Source
from killswitch.policy import kill_switch_policy
from killswitch.runtime import clock
from killswitch.runtime.leadership import Lease, run_as_leader

from . import config as C
from . import inputs, kinds, state
from .feeds import AccountFacts, Feed, FeedRequest, open_feeds

logger = logging.getLogger("killswitch.breakers")

DEFAULT_INTERVAL = 0.25  # the issue asks for at least every second
LEASE_TTL = 3.0
PUSH_EVERY_SECONDS = 1.0


def reason_for(breaker: C.Breaker, reading: kinds.Reading) -> str:
    """The trip's reason: the breaker, its figure with its window, and the limit."""
    if reading.unknown:
        what = f"its figure is unknown ({reading.unknown}) and on_unknown is trip; limit {reading.limit_text}"
    else:
        what = f"{reading.text}, beyond its limit {reading.limit_text}"
    text = f"Breaker {breaker.name} ({breaker.kind}) tripped: {what}"
    limit = kill_switch_policy().max_reason_length
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Engine:
    """The breakers of this process. `round()` is one evaluation (the loop and tests
    call it); `run_forever()` runs rounds while holding the lease."""

    def __init__(self, *, breakers: tuple[C.Breaker, ...] | None = None, feeds: list[Feed] | None = None,
                 interval: float = DEFAULT_INTERVAL, now: Callable[[], datetime] | None = None,
                 lease: Lease | None = None) -> None:
        self.breakers = tuple(C.configured() if breakers is None else breakers)
        self._feeds = feeds
        self.interval = interval
        self._now = now or clock.now
        self.lease = lease
        self.token = lease.token if lease else f"{socket.gethostname()}:{os.getpid()}"
        self.reports = inputs.ProcessReports()
        self._down_since: dict[str, datetime] = {}
        self._pushed: tuple[dict[str, str], float] = ({}, 0.0)
        self._dead_men = {b.name for b in self.breakers if b.kind == C.DEAD_MAN}
        self._reports_needed = bool(self._dead_men) or any(b.kind == C.STALE_DATA for b in self.breakers)

    # --- reading the world -----------------------------------------------------------------

    def feeds(self) -> list[Feed]:
        if self._feeds is None:
            self._feeds = open_feeds()
        return self._feeds

    def observe(self) -> kinds.World:
        """Read every feed's accounts and the trading processes' reports once."""
        now = self._now()
        days, positions, since = kinds.needs(self.breakers, now)
        request = FeedRequest(days, positions, since)
        world = kinds.World(now=now)
        accounts: list[str] = []
        for feed in self.feeds():
            for account in feed.accounts():
                accounts.append(account)
                try:
                    facts = feed.read(account, request)
                except Exception as exc:  # a feed bug reads as a broker nobody can reach
                    logger.exception("breaker feed %s failed for %s", feed.name, account)
                    facts = AccountFacts(account, feed.name, connected=False,
                                         why={"connection": f"feed error: {type(exc).__name__}: {exc}"})
                world.facts[account] = facts
                if facts.connected:
                    self._down_since.pop(account, None)
                else:
                    self._down_since.setdefault(account, now)
            self._keep_lease()  # a slow broker must not let the lease lapse mid-round
        world.accounts, world.down_since = tuple(accounts), dict(self._down_since)
        if self._reports_needed:
            self._read_reports(world)
        return world

    def _read_reports(self, world: kinds.World) -> None:
        try:
            client = state.client()
            for name, at, by in self.reports.poll(client):
                if name in self._dead_men:  # only configured switches: a typo renews nothing
                    inputs.renew(client, name, by=by, at=at)
            world.processes = self.reports.connected(time.time())
            world.renewals = inputs.renewals(client)
        except (redis.RedisError, OSError) as exc:
            why = f"Redis cannot be read ({type(exc).__name__}: {exc})"
            world.processes, world.processes_why = None, why
            world.renewals, world.renewals_why = None, why

    def _keep_lease(self) -> bool:
        return self.lease is None or self.lease.renew()

    @staticmethod
    def _levels() -> dict[str, str]:
        """Each scope's own level from the database; while it is down, what Redis
        distributes (a trip then takes the services' Redis path, which never lowers)."""
        try:
            return {L.label(kind, key): level
                    for kind, key, level in Scope.objects.values_list("kind", "key", "level")}
        except DatabaseError:
            connection.close()
            logger.warning("breakers: the database is unreachable; scope levels read from Redis")
            state_hash = state.client().hgetall(L.KEY_STATE)
            return {scope: level for scope, level in state_hash.items() if level in L.SEVERITY}

    # --- one round -------------------------------------------------------------------------

    def round(self) -> dict[str, dict[str, Any]]:
        """Evaluate every breaker once; returns each one's row (as state.snapshot shows it)."""
        world = self.observe()
        levels = self._levels()
        latched = state.latches([b.name for b in self.breakers])
        memories = state.memories()
        rows, changed = {}, {}
        for breaker in self.breakers:
            memory = dict(memories.get(breaker.name, {}))
            before = dict(memory)
            rows[breaker.name] = self._evaluate(breaker, world, levels, latched.get(breaker.name), memory)
            if memory != before:
                changed[breaker.name] = memory
        if self._keep_lease():
            state.write_round(rows, changed, leader=self.token, interval=self.interval)
            self._push(rows)
        return rows

    def _evaluate(self, breaker: C.Breaker, world: kinds.World, levels: dict[str, str],
                  latch: dict[str, Any] | None, memory: dict[str, Any]) -> dict[str, Any]:
        reading = kinds.read(breaker, world, memory)
        if reading.memory:
            memory.update(reading.memory)
        level = levels.get(breaker.scope_label, L.RUNNING)
        if latch is not None:
            latch = self._settle(breaker, latch, level)
        breached = reading.value is not None and reading.value > breaker.limit
        if reading.unknown:
            memory.setdefault("unknown_since", world.now.timestamp())
        else:
            memory.pop("unknown_since", None)
            memory.pop("unknown_alerted", None)
        # on_unknown acts once the figure has stayed unknown for its grace.
        unknown_acts = bool(reading.unknown) and (
            world.now.timestamp() - memory["unknown_since"] >= breaker.unknown_grace_seconds)
        if latch is None and (breached or (unknown_acts and breaker.on_unknown == C.TRIP)):
            latch = self._trip(breaker, reading, level, world.now, memory)
        threshold = breaker.warn_threshold
        if latch is not None:
            status = state.TRIPPED
        elif breached:
            status = state.BREACHED  # the trip did not commit (another leader, or no database): next round
        elif reading.unknown:
            status = state.UNKNOWN
        elif reading.idle:
            status = state.IDLE
        elif threshold is not None and reading.value is not None and reading.value >= threshold:
            status = state.WARNING
        else:
            status = state.ARMED
        self._notices(breaker, reading, status, memory, world.now, unknown_acts)
        return {
            "name": breaker.name, "kind": breaker.kind, "scope": breaker.scope_label, "level": breaker.level,
            "state": status, "figure": reading.text, "value": reading.value, "display": reading.display,
            "limit": reading.limit_text, "limit_value": breaker.limit, "warn_at": breaker.warn_at,
            "on_unknown": breaker.on_unknown, "unknown": reading.unknown, "idle": reading.idle,
            "evaluated_at": world.now.isoformat(), "scope_level": level,
            "latch": None if latch is None else {k: latch.get(k) for k in (
                "at", "outcome", "seq", "figure", "limit", "level", "reason", "confirmed")},
        }

    def _settle(self, breaker: C.Breaker, latch: dict[str, Any], level: str) -> dict[str, Any] | None:
        """Confirm a latch once its level is in force; clear it once a person resumed."""
        if not latch.get("confirmed"):
            if L.SEVERITY[level] >= L.SEVERITY.get(latch.get("level", L.HALT), L.SEVERITY[L.HALT]):
                confirmed = {**latch, "confirmed": True}
                return confirmed if state.swap_latch(breaker.name, latch, confirmed) else latch
            return latch  # a trip taken on the Redis path, not audited yet
        if level == L.RUNNING and self._keep_lease() and state.swap_latch(breaker.name, latch, None):
            logger.info("breaker %s re-armed: %s was resumed", breaker.name, breaker.scope_label,
                        extra={"breaker": breaker.name})
            return None
        return latch

    def _trip(self, breaker: C.Breaker, reading: kinds.Reading, level: str, now: datetime,
              memory: dict[str, Any]) -> dict[str, Any] | None:
        """Take the latch and activate. None when another process holds the lease or the
        activation failed (tried again next round)."""
        if not self._keep_lease():
            return None
        reason = reason_for(breaker, reading)
        latch = state.new_latch(at=now.timestamp(), level=breaker.level, scope=breaker.scope_label,
                                figure=reading.text, value=reading.value, limit=reading.limit_text,
                                reason=reason, outcome="tripping", seq=None)
        if not state.take_latch(breaker.name, latch):
            return state.latches([breaker.name]).get(breaker.name)  # another process tripped it
        if L.SEVERITY[level] >= L.SEVERITY[breaker.level]:
            final = {**latch, "outcome": f"{breaker.scope_label} was already at {level}", "confirmed": True}
        else:
            try:
                result = services.activate(scope=breaker.scope, level=breaker.level, reason=reason,
                                           actor=services.Actor.system(breaker.actor), source=Source.AUTOMATIC)
            except services.PermissionRefused:  # a person raised the scope above this level meanwhile
                final = {**latch, "outcome": f"{breaker.scope_label} was raised above {breaker.level} meanwhile",
                         "confirmed": True}
            except Exception:  # released: the next round tries again
                logger.exception("breaker %s could not trip %s", breaker.name, breaker.scope_label)
                state.swap_latch(breaker.name, latch, None)
                return None
            else:
                final = {**latch, "seq": result.seq, "pending_audit": result.pending_audit,
                         "outcome": "activated" if result.changed else f"already at {result.level}",
                         "confirmed": not result.pending_audit, "committed_at": time.time()}
        memory["last_trip_at"] = now.timestamp()
        state.swap_latch(breaker.name, latch, final)
        logger.warning("%s", reason, extra={"breaker": breaker.name, "outcome": final["outcome"],
                                            "seq": final.get("seq")})
        return final

    def _notices(self, breaker: C.Breaker, reading: kinds.Reading, status: str, memory: dict[str, Any],
                 now: datetime, unknown_acts: bool) -> None:
        """Alerts: a warn_at crossing once per window, an unknown figure once per episode
        (after its grace)."""
        previous = memory.get("state")
        memory["state"] = status
        if (status == state.UNKNOWN and unknown_acts and breaker.on_unknown == C.WARN
                and not memory.get("unknown_alerted")):
            seconds = now.timestamp() - memory["unknown_since"]
            if self._alert(breaker, f"breaker {breaker.name} ({breaker.kind}) cannot compute its figure for "
                                    f"{seconds:.0f} s: {reading.unknown}. on_unknown is warn: it does not trip "
                                    f"(limit {reading.limit_text})."):
                memory["unknown_alerted"] = True
        if status == state.WARNING and previous not in (state.WARNING, state.TRIPPED):
            since, label = breaker.warn_window(now)
            if float(memory.get("warned_at", 0)) < since:
                threshold = breaker.warn_threshold or 0.0
                if self._alert(breaker, f"breaker {breaker.name} ({breaker.kind}) warning: {reading.text}, past "
                                        f"{breaker.warn_at:.0%} of its limit {reading.limit_text} (warns once per "
                                        f"{label}; trips at {kinds.number(breaker.limit)}, warns from "
                                        f"{kinds.number(threshold)})."):
                    memory["warned_at"] = now.timestamp()

    def _alert(self, breaker: C.Breaker, detail: str) -> bool:
        if not self._keep_lease():
            return False
        try:
            services.record_alert(scope=breaker.scope, actor=breaker.actor, detail=detail)
        except Exception:  # tried again next round
            logger.exception("breaker %s could not record an alert", breaker.name)
            return False
        return True

    def _push(self, rows: dict[str, dict[str, Any]]) -> None:
        """Live push to open Risk pages: at once when a state changes, else at most every
        PUSH_EVERY_SECONDS while figures move."""
        from killswitch.web import live

        states = {name: f"{row['state']}|{row['figure']}" for name, row in rows.items()}
        previous, at = self._pushed
        moved = states != previous
        changed = {n: s.split("|")[0] for n, s in states.items()} != {n: s.split("|")[0] for n, s in previous.items()}
        if changed or (moved and time.monotonic() - at >= PUSH_EVERY_SECONDS):
            live.push("breaker", {"breakers": list(rows.values())})
            self._pushed = (states, time.monotonic())

    # --- the loop --------------------------------------------------------------------------

    def _leading_round(self) -> None:
        close_old_connections()
        try:
            self.round()
        except DatabaseError:
            connection.close()  # the next round reconnects
            raise

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Rounds every `interval` while this process holds the lease (the shared
        leadership loop, runtime.leadership.run_as_leader: a follower takes over when the
        leader stops, dies or hangs; a round's exception is logged and never ends it).
        Without a lease (tests), every round. The stream cursor is kept while following:
        a process that leads again reads what it missed."""
        stop = stop or threading.Event()
        logger.info("breaker loop started: %s breaker(s), every %ss", len(self.breakers), self.interval)
        try:
            if self.lease is not None:
                run_as_leader(self.lease, self._leading_round, interval=self.interval, stop=stop)
                return
            while not stop.is_set():
                started = time.monotonic()
                try:
                    self._leading_round()
                except Exception:  # never die: a dead breaker loop silently stops watching
                    logger.exception("breaker round failed")
                stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            self.close()
            connection.close()

    def close(self) -> None:
        for feed in self._feeds or []:
            try:
                feed.close()
            except Exception:
                logger.warning("breaker feed %s did not close cleanly", feed.name, exc_info=True)
