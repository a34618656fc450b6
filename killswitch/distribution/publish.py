"""Publishing the database's state to Redis, the distribution layer.

The Redis contract (key names, message shapes; the README documents it for other
languages) is killswitch_client.contract, read through killswitch.domain. What this
module guarantees:
- `publish_state` writes the whole state atomically (one Lua script) and announces it
  on the channel, never overwriting a newer version (unless forced by the
  reconciler), never undoing an out-of-band escalation of `trading_switch` that the
  reconciler has not audited yet, and, when it leaves the global level as it was
  published, never overwriting any out-of-band level the reconciler has not judged yet;
- `publish_event` appends the event to the seed's log list and, when a level changed,
  publishes the state first (the state is what trading processes wait for);
- `emergency_escalate` raises one scope without the database (never lowers).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from killswitch import domain as L

from . import scripts
from .connection import get_redis


@dataclass(frozen=True)
class Snapshot:
    """The database state to distribute: every scope's level and details, and the version."""

    version: int
    levels: dict[str, str]
    details: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def global_level(self) -> str:
        return self.levels.get(L.GLOBAL, L.RUNNING)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 UTC with a Z, or None."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def take_snapshot() -> Snapshot:
    """The database state to distribute: every scope row and the state version."""
    from killswitch.models import Scope

    # One query: every applied change stamps its row with the new state version, so the
    # highest row version is the state version, consistent with the levels read with it.
    levels: dict[str, str] = {L.GLOBAL: L.RUNNING}
    details: dict[str, dict[str, Any]] = {}
    version = 0
    for row in Scope.objects.all():
        version = max(version, row.version)
        levels[row.label] = row.level
        details[row.label] = {
            "scope": row.label, "kind": row.kind, "key": row.key, "level": row.level,
            "reason": row.reason, "actor": row.actor, "source": row.source,
            "since": iso(row.since), "cooldown_until": iso(row.cooldown_until),
            "version": row.version,
        }
    return Snapshot(version, levels, details)


def _publish_args(snapshot: Snapshot, event: dict[str, Any] | None, force: bool,
                  judged: str | None = None) -> tuple[list[str], list]:
    keys = [L.KEY_GLOBAL, L.KEY_STATE, L.KEY_SCOPES, L.CHANNEL]
    args = [
        snapshot.version, snapshot.global_level, json.dumps(snapshot.levels),
        json.dumps({scope: json.dumps(d) for scope, d in snapshot.details.items()}),
        L.state_message(snapshot.version, snapshot.levels, event), iso(datetime.now(UTC)), "1" if force else "0",
        judged if judged is not None else "",
    ]
    return keys, args


def publish_state(snapshot: Snapshot, *, event: dict[str, Any] | None = None,
                  force: bool = False, judged: str | None = None, client: redis.Redis | None = None) -> bool:
    """Write the snapshot to Redis and announce it. Returns False when Redis
    already held a newer version (and `force` was not set).

    When the global level stays as it was published (and not forced), another level in
    `trading_switch` is left for the reconciler to judge, unless it is `judged`: the
    value the caller has just judged and reverts."""
    keys, args = _publish_args(snapshot, event, force, judged)
    return bool(scripts.run(client or get_redis(), "publish_state", keys, args))


def publish_event(event: Any, *, state_changed: bool, snapshot: Snapshot | None = None) -> None:
    """After commit: append the event to the Redis log and, if it changed a level,
    publish the state as the database now has it (`snapshot`, taken after the commit,
    or read here)."""
    from killswitch.policy import kill_switch_policy

    entry = event.as_log_entry()
    # One round trip; Redis runs the commands in this order: the state first (it is what
    # trading processes wait for), the log after it.
    pipe = get_redis().pipeline(transaction=False)
    if state_changed:
        keys, args = _publish_args(snapshot or take_snapshot(), entry, False)
        scripts.run(pipe, "publish_state", keys, args)
    pipe.lpush(L.KEY_LOG, json.dumps(entry))
    pipe.ltrim(L.KEY_LOG, 0, kill_switch_policy().log_max_entries - 1)
    pipe.execute()


def recent_logged_events(client: redis.Redis | None = None, count: int = 50) -> dict[int, str]:
    """seq -> hash of the newest audited events in `risk:kill_switch:log` (entries queued
    while the database was down carry neither)."""
    found: dict[int, str] = {}
    for raw in (client or get_redis()).lrange(L.KEY_LOG, 0, count - 1):
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("seq"), int) and isinstance(entry.get("hash"), str):
            found[entry["seq"]] = entry["hash"]
    return found


def rebuild_log(client: redis.Redis | None = None) -> int:
    """Refill `risk:kill_switch:log` from the database (after Redis lost it)."""
    from killswitch.models import Event
    from killswitch.policy import kill_switch_policy

    client = client or get_redis()
    limit = kill_switch_policy().log_max_entries
    entries = [json.dumps(e.as_log_entry()) for e in Event.objects.order_by("-seq")[:limit]]
    pipe = client.pipeline(transaction=True)
    pipe.delete(L.KEY_LOG)
    if entries:
        pipe.rpush(L.KEY_LOG, *entries)
    pipe.execute()
    return len(entries)


def publish_heartbeat(version: int, *, stale_after: float, client: redis.Redis | None = None) -> None:
    """The reconciler's proof of life: written to the heartbeat key and announced."""
    client = client or get_redis()
    payload = L.heartbeat_message(time.time(), version, stale_after)
    pipe = client.pipeline(transaction=False)
    pipe.set(L.KEY_HEARTBEAT, payload)
    pipe.publish(L.CHANNEL, payload)
    pipe.execute()


@dataclass(frozen=True)
class RedisView:
    """What Redis holds, read in one transaction. `wrong_types` names contract keys that
    hold another type than the contract's (somebody wrote them by hand)."""

    trading_switch: str | None
    state: dict[str, str]
    log_exists: bool
    wrong_types: tuple[str, ...] = ()
    pending: int = 0  # items in the outage queue

    @property
    def version(self) -> int | None:
        return L.version_of(self.state)

    @property
    def levels(self) -> dict[str, str]:
        return L.levels_of(self.state)


# The type each contract key must have (TYPE's answer; "none" when absent is fine).
KEY_TYPES = {L.KEY_GLOBAL: "string", L.KEY_STATE: "hash", L.KEY_SCOPES: "hash",
             L.KEY_HEARTBEAT: "string", L.KEY_LOG: "list", L.KEY_PENDING: "list"}


def read_view(client: redis.Redis | None = None) -> RedisView:
    """trading_switch, the state hash and whether the log exists, in one MULTI; keys of
    the wrong type are reported instead of raising (WRONGTYPE would stop the reconciler)."""
    client = client or get_redis()
    pipe = client.pipeline(transaction=True)
    for key in KEY_TYPES:
        pipe.type(key)
    pipe.get(L.KEY_GLOBAL)
    pipe.hgetall(L.KEY_STATE)
    pipe.exists(L.KEY_LOG)
    pipe.llen(L.KEY_PENDING)
    *types, trading_switch, state, log_exists, pending = pipe.execute(raise_on_error=False)
    wrong = tuple(key for key, kind in zip(KEY_TYPES, types, strict=True)
                  if kind not in ("none", KEY_TYPES[key]))
    if wrong or any(isinstance(v, Exception) for v in (trading_switch, state, log_exists, pending)):
        return RedisView(None, {}, False, wrong or tuple(KEY_TYPES))
    return RedisView(trading_switch, state or {}, bool(log_exists), (), int(pending))


def delete_keys(keys: tuple[str, ...], client: redis.Redis | None = None) -> None:
    """Remove contract keys that hold the wrong type, so the next publish can write them."""
    if keys:
        (client or get_redis()).delete(*keys)


def emergency_escalate(scope: str, level: str, pending: dict[str, Any], log_entry: dict[str, Any],
                       client: redis.Redis | None = None) -> str:
    """Raise `scope` to `level` in Redis while the database is unavailable; returns the
    level Redis now holds for the scope. Trading processes obey at once."""
    keys = [L.KEY_GLOBAL, L.KEY_STATE, L.CHANNEL, L.KEY_PENDING, L.KEY_LOG]
    return scripts.run(client or get_redis(), "emergency_escalate", keys,
                       [scope, level, json.dumps(pending), json.dumps(log_entry)])


def queue_pending(pending: dict[str, Any], client: redis.Redis | None = None) -> None:
    """Keep a request made while the database was down (services.outage)."""
    (client or get_redis()).rpush(L.KEY_PENDING, json.dumps(pending))
