"""Keeps Redis equal to the database, and turns out-of-band writes into audited events.

One round (`Reconciler.run_once`):
1. write what was queued while the database was down into the audit log;
2. read Redis, then the database (in that order: an honest Redis is then never ahead);
3. act on `decisions.decide(database, redis)` — one named case per round;
4. write the heartbeat that clients use as their staleness bound;
5. ingest acknowledgements, re-queue stuck notifications (never allowed to stop the loop).

The heartbeat is written only after a round that saw both the database and Redis:
when the switch's state cannot be known, the heartbeat stops and clients halt.

Run it twice (or more) for availability: `run_forever` holds the `reconciler` lease
(killswitch.runtime.leadership), so one process runs rounds and the others wait to
take over within 3 s; a round that is about to write checks the lease again first.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import redis
from django.db import DatabaseError, close_old_connections, connection

from killswitch import domain as L
from killswitch import services
from killswitch.models import Event
from killswitch.policy import kill_switch_policy
from killswitch.runtime.hooks import heartbeat_sent
from killswitch.runtime.leadership import Lease, run_as_leader

from . import publish as P
from .decisions import Case, Decision, Do, decide

logger = logging.getLogger("killswitch.reconciler")

REQUEUE_INTERVAL_SECONDS = 5.0
LOG_COPY_INTERVAL_SECONDS = 5.0
SYSTEM_ACTOR = "system:reconciler"
LEASE = "reconciler"
# Heartbeats every 0.5 s, clients stale after 5 s: a follower taking over within
# ttl + one poll (2.25 s) keeps every client running through a reconciler failover.
LEASE_TTL_SECONDS = 2.0
NOT_LEADER = "not_leader"


class Reconciler:
    def __init__(self, *, interval: float | None = None, heartbeat_interval: float | None = None,
                 stale_after: float | None = None) -> None:
        policy = kill_switch_policy()
        self.interval = interval or policy.reconcile_interval_seconds
        self.heartbeat_interval = heartbeat_interval or policy.heartbeat_interval_seconds
        self.stale_after = stale_after or policy.client_stale_after_seconds
        self._last_heartbeat = 0.0
        self._last_requeue = 0.0
        self._last_log_copy = 0.0
        self._checked: tuple | None = None  # the snapshot whose rows were checked against the events
        self._unexplained: dict[str, str] = {}
        self._reported: set = set()  # findings already alerted (one alert per finding)
        self._disagreeing: dict[str, float] = {}  # client_id -> since when (monotonic) it disagrees
        self.last_outcome = ""
        self.lease: Lease | None = None  # set by run_forever; run_once alone (--once, tests) holds none
        # Set by `make run` for a new embedded Redis: its first loss is this start.
        self._started_empty = os.environ.get("KILLSWITCH_REDIS_STARTED_EMPTY") == "1"

    def run_once(self) -> str:
        """One comparison. Returns what it did: a decisions.Case value, `db_down` or
        `redis_down` (for logs and tests)."""
        try:
            return self._round()
        except (redis.RedisError, OSError):
            logger.error("redis unreachable; will republish when it is back", exc_info=True)
            return self._done("redis_down")
        except DatabaseError:
            logger.error("database unreachable; heartbeat withheld so clients fail closed", exc_info=True)
            connection.close()
            return self._done("db_down")

    def _round(self) -> str:
        # Requests kept in Redis while the database was down go into the audit log first,
        # so their escalations are recorded as theirs, not as out-of-band writes.
        services.apply_pending()
        view = P.read_view()
        snap = self._trusted(P.take_snapshot())
        decision = decide(snap, view)
        if not self._still_leading():
            # Frozen after the round began (SIGSTOP) and a follower took over: what this
            # round saw is stale and the new leader acts on it (no act, no heartbeat, no
            # alert from here). Disagreements are timed afresh when it leads again.
            self._disagreeing = {}
            return self._done(NOT_LEADER)
        outcome = self._act(decision, view, snap)
        now = time.monotonic()
        if now - self._last_heartbeat >= self.heartbeat_interval:
            # Only after a round that saw both the database and Redis: when the state
            # cannot be known, the heartbeat stops and clients halt.
            P.publish_heartbeat(snap.version, stale_after=self.stale_after)
            self._last_heartbeat = now
            heartbeat_sent.send_robust(sender=Reconciler, version=snap.version)
        self._side_work(now, snap)
        return self._done(outcome)

    def _trusted(self, snap: P.Snapshot) -> P.Snapshot:
        """The snapshot to distribute: the database's, except that a scope row no audit
        event explains (changed in the database outside the service) never publishes a
        lower level than the events give; it is alerted once per finding."""
        key = (snap.version, tuple(sorted((s, d["level"], d["version"]) for s, d in snap.details.items())))
        if key != self._checked:
            rows = {s: (d["level"], d["version"]) for s, d in snap.details.items()}
            self._unexplained = services.unexplained_levels(rows)
            self._checked = key
            for scope, explained in self._unexplained.items():
                finding = ("row", scope, rows[scope])
                if finding not in self._reported:
                    self._reported.add(finding)
                    services.record_alert(
                        scope=scope, actor=SYSTEM_ACTOR,
                        detail=f"database tampering: scope {scope} is at {rows[scope][0]} (version {rows[scope][1]}) "
                               f"in the database, and no audit event explains it (the events say {explained}). "
                               "Redis keeps the more severe of the two until a person acts.")
        if not self._unexplained:
            return snap
        levels, details = dict(snap.levels), {s: dict(d) for s, d in snap.details.items()}
        for scope, explained in self._unexplained.items():
            if L.SEVERITY[explained] > L.SEVERITY.get(levels.get(scope, L.RUNNING), 0):
                levels[scope] = explained
                details[scope]["level"] = explained
        return P.Snapshot(snap.version, levels, details)

    def _check_log_copy(self) -> None:
        """The Redis log is a copy of the chain outside the database: its recent audited
        events must still be in the database with the same hashes, or events were
        removed or rewritten there (alerted once per finding)."""
        copied = P.recent_logged_events()
        if not copied:
            return
        stored = dict(Event.objects.filter(seq__in=list(copied)).values_list("seq", "hash"))
        for seq, digest in sorted(copied.items()):
            if stored.get(seq) != digest and ("log", seq, digest) not in self._reported:
                self._reported.add(("log", seq, digest))
                services.record_alert(
                    scope="global", actor=SYSTEM_ACTOR,
                    detail=f"the audit log in the database no longer holds event #{seq} with hash {digest[:16]}… "
                           f"({'it is missing' if seq not in stored else 'its hash differs'}) although Redis' "
                           "copy of the log does: events were removed or rewritten in the database.")

    def _act(self, decision: Decision, view: P.RedisView, snap: P.Snapshot) -> str:
        """Carry out one decision. Republishes are not forced unless the case says so:
        the script accepts an equal or newer version, so a transition that committed and
        published meanwhile is never overwritten by this older snapshot."""
        do = decision.do
        if do is Do.ALERT_AND_FORCE:
            if L.KEY_LOG not in view.wrong_types:
                self._check_log_copy()  # before the log is rebuilt from the database
            services.record_alert(scope="global", actor=SYSTEM_ACTOR,
                                  detail=f"Redis tampering ({decision.case}): {decision.finding}; "
                                         "the database's state is republished.")
            P.delete_keys(view.wrong_types)
            P.publish_state(snap, force=True)
            P.rebuild_log()
        elif do is Do.JUDGE_LOSS:
            services.restore_after_loss(observed=view.trading_switch, expected_version=snap.version,
                                        started_empty=self._started_empty)
            self._started_empty = False
            P.publish_state(self._trusted(P.take_snapshot()))
            P.rebuild_log()
        elif do is Do.REPUBLISH:
            P.publish_state(snap)
        elif do is Do.RESTORE:
            services.record_restored(cause=decision.finding)
            P.publish_state(self._trusted(P.take_snapshot()))
        elif do is Do.JUDGE_SWITCH:
            event = services.reconcile_out_of_band(observed=view.trading_switch, expected_version=snap.version)
            if event is not None and event.outcome != "applied":
                # revert: the database level stands over the value just judged
                P.publish_state(self._trusted(P.take_snapshot()), judged=view.trading_switch)
        elif do is Do.REBUILD_LOG:
            P.rebuild_log()
        return str(decision.case)

    def _still_leading(self) -> bool:
        """Asked right before a write: the lease is still this process' (renewed)."""
        return self.lease is None or self.lease.renew()

    def _watch_disagreements(self, now: float, snap: P.Snapshot) -> None:
        """A process that reports another level than the service gives it for longer than
        ack_timeout_seconds (a forged message it believed, a stale heartbeat, a bug) is an
        alert, once per process and disagreement."""
        from killswitch.services.acknowledgements import disagreeing_clients

        timeout = kill_switch_policy().ack_timeout_seconds
        current = {}
        for row, expected in disagreeing_clients(snap.levels):
            since = self._disagreeing.get(row.client_id, now)
            current[row.client_id] = since
            finding = ("client", row.client_id, row.level_seen, expected)
            if now - since > timeout and finding not in self._reported and self._still_leading():
                self._reported.add(finding)
                cause = f" (cause {row.cause})" if row.cause else ""
                services.record_alert(
                    scope=L.label(L.ACCOUNT, row.account) if row.account else "global", actor=SYSTEM_ACTOR,
                    detail=f"trading process {row.name} ({row.client_id}) reads {row.level_seen}{cause} but the "
                           f"service gives it {expected}, for more than {timeout:g} s")
        self._disagreeing = current

    def _side_work(self, now: float, snap: P.Snapshot) -> None:
        from killswitch.services.acknowledgements import ingest_acknowledgements

        if now - self._last_log_copy >= LOG_COPY_INTERVAL_SECONDS:
            self._last_log_copy = now
            try:
                self._check_log_copy()
            except Exception:
                logger.warning("checking the audit log against its Redis copy failed", exc_info=True)

        try:  # acknowledgements from trading processes
            ingest_acknowledgements()
            self._watch_disagreements(now, snap)
        except Exception:
            logger.warning("acknowledgement ingestion failed", exc_info=True)
        if now - self._last_requeue >= REQUEUE_INTERVAL_SECONDS:
            self._last_requeue = now
            try:  # repeated refusals of windows that are over: one event with the count each
                services.flush_repeated_refusals()
            except Exception:
                logger.warning("recording repeated refusals failed", exc_info=True)
            try:  # notifications whose task was never queued or was lost
                from killswitch.notifications.services import requeue_stuck

                requeue_stuck()
            except Exception:
                logger.warning("re-queuing stuck notifications failed", exc_info=True)

    def _done(self, outcome: str) -> str:
        if outcome != self.last_outcome and outcome != Case.IN_SYNC:
            logger.info("reconcile: %s", outcome, extra={"outcome": outcome})
        self.last_outcome = outcome
        return outcome

    def run_forever(self, stop: threading.Event | None = None, *, lease: Lease | None = None) -> None:
        """Rounds every `interval` while this process holds the reconciler's lease (a
        follower otherwise), until `stop` is set; the lease is released on the way out."""
        stop = stop or threading.Event()
        self.lease = lease or Lease(LEASE, ttl=LEASE_TTL_SECONDS)
        logger.info("reconciler started", extra={"interval": self.interval,
                                                  "heartbeat_interval": self.heartbeat_interval,
                                                  "lease": self.lease.token})

        def one_round() -> None:
            close_old_connections()
            self.run_once()

        try:
            # max_round: a round stuck in the database longer than this lets the lease go.
            run_as_leader(self.lease, one_round, interval=self.interval, stop=stop, max_round=10.0)
        finally:
            connection.close()
