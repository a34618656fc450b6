"""Keeps Redis equal to the database, and turns out-of-band writes into audited events.

One round (`Reconciler.run_once`):
1. read the database snapshot (version, every scope's level), then Redis;
2. Redis lost the state (restart, FLUSHALL, deleted key) -> record `restored`, republish;
3. Redis is behind (a publish after commit was missed) -> republish;
4. `trading_switch` differs while Redis is at the database's version -> somebody ran
   `redis-cli SET trading_switch ...`: services.reconcile_out_of_band decides
   (escalation applied; resume in cooldown and non-levels reverted; all audited);
5. write the heartbeat that clients use as their staleness bound.

The heartbeat is written only after a round that saw both the database and Redis:
when the switch's state cannot be known, the heartbeat stops and clients halt.
"""

from __future__ import annotations

import logging
import threading
import time

import redis
from django.db import DatabaseError, close_old_connections, connection

from . import distribution as D
from . import levels as L
from . import services
from .policy import kill_switch_policy

logger = logging.getLogger("killswitch.reconciler")

REQUEUE_INTERVAL_SECONDS = 5.0


class Reconciler:
    def __init__(self, *, interval: float | None = None, heartbeat_interval: float | None = None,
                 stale_after: float | None = None) -> None:
        policy = kill_switch_policy()
        self.interval = interval or policy.reconcile_interval_seconds
        self.heartbeat_interval = heartbeat_interval or policy.heartbeat_interval_seconds
        self.stale_after = stale_after or policy.client_stale_after_seconds
        self._last_heartbeat = 0.0
        self._last_requeue = 0.0
        self._ahead_rounds = 0
        self.last_outcome = ""

    def run_once(self) -> str:
        """One comparison. Returns what it did (for logs and tests)."""
        try:
            snap = D.take_snapshot()
        except DatabaseError:
            logger.error("database unreachable; heartbeat withheld so clients fail closed", exc_info=True)
            connection.close()
            return self._done("db_down")
        try:
            # Requests kept in Redis while the database was down go into the audit log
            # first, so their escalations are recorded as theirs, not as out-of-band writes.
            if services.apply_pending():
                snap = D.take_snapshot()
            outcome = self._reconcile(snap)
        except (redis.RedisError, OSError):
            logger.error("redis unreachable; will republish when it is back", exc_info=True)
            return self._done("redis_down")
        except DatabaseError:
            connection.close()
            return self._done("db_down")
        now = time.monotonic()
        if now - self._last_heartbeat >= self.heartbeat_interval:
            try:
                D.publish_heartbeat(snap.version, stale_after=self.stale_after)
                self._last_heartbeat = now
            except (redis.RedisError, OSError, DatabaseError):
                return self._done("redis_down")
        try:  # acknowledgements from trading processes; never allowed to stop the reconciler
            from .acks import ingest_acknowledgements
            ingest_acknowledgements()
        except Exception:
            logger.warning("acknowledgement ingestion failed", exc_info=True)
        if now - self._last_requeue >= REQUEUE_INTERVAL_SECONDS:
            self._last_requeue = now
            try:  # notifications whose task was never queued or was lost
                from .notifications.services import requeue_stuck
                requeue_stuck()
            except Exception:
                logger.warning("re-queuing stuck notifications failed", exc_info=True)
        return self._done(outcome)

    def _done(self, outcome: str) -> str:
        if outcome != self.last_outcome and outcome not in ("ok", "ahead"):
            logger.info("reconcile: %s", outcome, extra={"outcome": outcome})
        self.last_outcome = outcome
        return outcome

    def _republish(self, *, force: bool = False) -> None:
        # Not forced: the script accepts an equal or newer version, so a transition that
        # committed and published meanwhile is never overwritten by this older snapshot.
        D.publish_state(D.take_snapshot(), force=force)

    def _reconcile(self, snap: D.Snapshot) -> str:
        view = D.read_view()
        redis_version = view.version
        if redis_version is None:
            event = services.restore_after_loss(observed=view.trading_switch, expected_version=snap.version)
            self._republish()
            D.rebuild_log()
            return "out_of_band" if event is not None and event.action == "out_of_band" else "restored"
        if redis_version < snap.version:
            D.publish_state(snap)
            return "published"
        if redis_version > snap.version:
            # Normal when a commit lands between our two reads; persistent only if
            # somebody wrote a version by hand. Then the database wins.
            self._ahead_rounds += 1
            if self._ahead_rounds < 3:
                return "ahead"
            self._ahead_rounds = 0
            self._republish(force=True)
            return "published"
        self._ahead_rounds = 0
        outcome = "ok"
        if view.levels != snap.levels:
            services.record_restored(cause="killswitch:state was edited outside the service")
            self._republish()
            outcome = "restored"
        if view.trading_switch != snap.global_level:
            if view.trading_switch is None:
                services.record_restored(cause="trading_switch was deleted")
                self._republish()
                return "restored"
            if L.normalize_level(view.trading_switch) == snap.global_level:
                self._republish()  # e.g. "HALT " written by hand: same level, canonical spelling
                return "published"
            event = services.reconcile_out_of_band(observed=view.trading_switch,
                                                   expected_version=snap.version)
            if event is not None and event.outcome != "applied":
                self._republish()  # revert: the database level stands
            return "out_of_band" if event is not None else "ok"
        if not view.log_exists:
            D.rebuild_log()
        return outcome

    def run_forever(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        logger.info("reconciler started", extra={"interval": self.interval,
                                                  "heartbeat_interval": self.heartbeat_interval})
        try:
            while not stop.is_set():
                started = time.monotonic()
                close_old_connections()
                try:
                    self.run_once()
                except Exception:  # never die: a dead reconciler silently halts every client
                    logger.exception("reconcile round failed")
                stop.wait(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            connection.close()
