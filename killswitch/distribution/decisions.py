"""The reconciler's decisions, written once: the database state × what Redis holds → one
named case and what to do about it. Pure: no I/O, so every case is tested directly.

Redis is read before the database (reconciler.py), and a change is published to Redis
only after it commits, so an honest Redis is never ahead of the database: a version
ahead, or levels that differ at the same version, were written by somebody else.

| case               | Redis holds                                   | action                                      |
|--------------------|-----------------------------------------------|---------------------------------------------|
| wrong_type         | a contract key of the wrong type              | alert, delete the bad keys, forced republish |
| lost               | no (numeric) version: restart, FLUSHALL       | judge what trading_switch says, republish    |
| outage_pending     | items in the outage queue (emergency levels)  | nothing: the next round applies them first   |
| ahead              | a version above the database's                | alert (tampering), forced republish          |
| behind             | a version below the database's                | republish (a publish after commit was missed)|
| levels_edited      | the database's version with other levels      | alert (tampering), forced republish          |
| switch_deleted     | no trading_switch                             | record restored, republish                   |
| switch_spelling    | the global level spelt otherwise ("HALT ")    | republish (canonical spelling)               |
| switch_out_of_band | another level in trading_switch (redis-cli)   | judge it (services.reconcile_out_of_band)    |
| log_missing        | no risk:kill_switch:log                       | rebuild the log from the database            |
| in_sync            | the database's state                          | nothing                                      |

The first case that applies wins; the next round sees what is left.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from killswitch import domain as L

from .publish import RedisView, Snapshot


class Case(StrEnum):
    WRONG_TYPE = "wrong_type"
    LOST = "lost"
    OUTAGE_PENDING = "outage_pending"
    AHEAD = "ahead"
    BEHIND = "behind"
    LEVELS_EDITED = "levels_edited"
    SWITCH_DELETED = "switch_deleted"
    SWITCH_SPELLING = "switch_spelling"
    SWITCH_OUT_OF_BAND = "switch_out_of_band"
    LOG_MISSING = "log_missing"
    IN_SYNC = "in_sync"


class Do(StrEnum):
    NOTHING = "nothing"
    REPUBLISH = "republish"
    ALERT_AND_FORCE = "alert_and_force"
    RESTORE = "restore"  # record `restored`, then republish
    JUDGE_LOSS = "judge_loss"  # services.restore_after_loss, republish, rebuild the log
    JUDGE_SWITCH = "judge_switch"  # services.reconcile_out_of_band
    REBUILD_LOG = "rebuild_log"


@dataclass(frozen=True)
class Decision:
    case: Case
    do: Do
    finding: str = ""  # what was found, for the audit event


def decide(db: Snapshot, redis: RedisView) -> Decision:
    """What to do about `redis` given the database state `db` (both read this round)."""
    if redis.wrong_types:
        return Decision(Case.WRONG_TYPE, Do.ALERT_AND_FORCE,
                        f"Redis keys of the wrong type: {', '.join(redis.wrong_types)}")
    version = redis.version
    if version is None:
        return Decision(Case.LOST, Do.JUDGE_LOSS)
    if redis.pending:
        # An escalation made without the database raised levels in Redis and queued itself
        # after this round applied the queue: republishing now would lower it.
        return Decision(Case.OUTAGE_PENDING, Do.NOTHING)
    if version > db.version:
        return Decision(Case.AHEAD, Do.ALERT_AND_FORCE,
                        f"killswitch:state version {version} is ahead of the database's {db.version}: "
                        "written outside the service")
    if version < db.version:
        return Decision(Case.BEHIND, Do.REPUBLISH)
    if redis.levels != db.levels:
        changed = sorted(set(redis.levels.items()) ^ set(db.levels.items()))
        shown = ", ".join(f"{scope}={level}" for scope, level in changed[:10])
        return Decision(Case.LEVELS_EDITED, Do.ALERT_AND_FORCE,
                        f"killswitch:state at version {version} holds other levels than the database ({shown})")
    switch = redis.trading_switch
    if switch != db.global_level:
        if switch is None:
            return Decision(Case.SWITCH_DELETED, Do.RESTORE, "trading_switch was deleted")
        if L.normalize_level(switch) == db.global_level:
            return Decision(Case.SWITCH_SPELLING, Do.REPUBLISH)
        return Decision(Case.SWITCH_OUT_OF_BAND, Do.JUDGE_SWITCH)
    if not redis.log_exists:
        return Decision(Case.LOG_MISSING, Do.REBUILD_LOG)
    return Decision(Case.IN_SYNC, Do.NOTHING)
