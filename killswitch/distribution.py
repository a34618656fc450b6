"""Redis as the distribution layer. The database stays the source of truth.

The Redis contract (documented in the README for other languages):

- `trading_switch` (string): the global level, exactly the seed's values
  (`running`, `pause`, `halt`, `kill`), so `redis-cli GET trading_switch` and the
  seed's loop keep working.
- `killswitch:state` (hash): field `version` (the global state version, an
  integer that only grows), field `updated_at` (ISO time), and one field per scope
  (`global`, `account:DU123`, `strategy:momo`, `symbol:AAPL`) whose value is the
  level. `HGETALL killswitch:state` reads every scope and the version in one round trip.
- `killswitch:scopes` (hash): scope -> JSON with level, reason, actor, source, since,
  cooldown_until, version.
- `killswitch:heartbeat` (string): JSON `{"ts": unix seconds, "version": N,
  "stale_after": seconds}`, rewritten by the reconciler every heartbeat interval.
  A reader whose heartbeat is older than `stale_after` must treat the state as `halt`.
- `killswitch:updates` (pub/sub channel): JSON messages
  `{"type": "state", "version": N, "levels": {scope: level}, "event": {...}}` on every
  change and `{"type": "heartbeat", "ts": ..., "version": N, "stale_after": ...}`.
- `risk:kill_switch:log` (list, newest first, bounded): one JSON object per event,
  with the seed's `action`, `reason`, `timestamp` first.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from django.conf import settings

from . import levels as L

KEY_GLOBAL = "trading_switch"
KEY_STATE = "killswitch:state"
KEY_SCOPES = "killswitch:scopes"
KEY_HEARTBEAT = "killswitch:heartbeat"
KEY_LOG = "risk:kill_switch:log"
CHANNEL = "killswitch:updates"
# Requests applied to Redis while the database was down, written to the audit log by
# the reconciler once it is back (services.apply_pending).
KEY_PENDING = "killswitch:pending"

# Writes the whole state atomically, unless Redis already holds a newer version
# (two publishers after two commits can run in either order; the newer one wins).
# ARGV: version, global level, levels JSON, details JSON, message JSON, updated_at, force
_PUBLISH_STATE = """
-- a version that is not a number (written by hand) counts as none
local current = tonumber(redis.call('HGET', KEYS[2], 'version') or '-1') or -1
local version = tonumber(ARGV[1])
if current > version and ARGV[7] ~= '1' then
  return 0
end
local sev = {running=0, pause=1, halt=2, kill=3}
-- trading_switch differing from the global level we last published, and more severe
-- than the one we publish now, is an out-of-band escalation (redis-cli SET) that the
-- reconciler has not audited yet: never undo it here; the reconciler applies it.
local switch = redis.call('GET', KEYS[1])
local published = redis.call('HGET', KEYS[2], 'global')
local keep = switch and published and switch ~= published
             and (sev[switch] or -1) > (sev[ARGV[2]] or -1)
if not keep then
  redis.call('SET', KEYS[1], ARGV[2])
end
redis.call('DEL', KEYS[2], KEYS[3])
redis.call('HSET', KEYS[2], 'version', ARGV[1], 'updated_at', ARGV[6])
-- one field at a time: unpack() of thousands of scopes exceeds Lua's stack
for scope, level in pairs(cjson.decode(ARGV[3])) do
  redis.call('HSET', KEYS[2], scope, level)
end
for scope, detail in pairs(cjson.decode(ARGV[4])) do
  redis.call('HSET', KEYS[3], scope, detail)
end
local message = cjson.decode(ARGV[5])
message['trading_switch'] = redis.call('GET', KEYS[1])
redis.call('PUBLISH', KEYS[4], cjson.encode(message))
return 1
"""

# Raises one scope in Redis without the database (escalation only, never lowers), queues
# the request for the audit log and announces the levels at the current version.
# KEYS: trading_switch, state, channel, pending, log; ARGV: scope, level, pending JSON, log JSON
_EMERGENCY_ESCALATE = """
local sev = {running=0, pause=1, halt=2, kill=3}
local current = redis.call('HGET', KEYS[2], ARGV[1]) or 'running'
local applied = current
if sev[ARGV[2]] > (sev[current] or -1) then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
  applied = ARGV[2]
end
if ARGV[1] == 'global' then
  local switch = redis.call('GET', KEYS[1])
  if switch == false or sev[ARGV[2]] > (sev[switch] or -1) then
    redis.call('SET', KEYS[1], ARGV[2])
  end
end
redis.call('RPUSH', KEYS[4], ARGV[3])
redis.call('LPUSH', KEYS[5], ARGV[4])
local flat = redis.call('HGETALL', KEYS[2])
local levels = {}
for i = 1, #flat, 2 do
  if flat[i] ~= 'version' and flat[i] ~= 'updated_at' then levels[flat[i]] = flat[i + 1] end
end
local version = tonumber(redis.call('HGET', KEYS[2], 'version') or '0') or 0
redis.call('PUBLISH', KEYS[3], cjson.encode({type='state', version=version, levels=levels,
                                             event=cjson.decode(ARGV[4])}))
return applied
"""

_local = threading.local()


def get_redis() -> redis.Redis:
    """A client for settings.REDIS_URL (one per thread), with short timeouts:
    the switch must never hang on a dead Redis."""
    client = getattr(_local, "client", None)
    if client is None or getattr(_local, "url", None) != settings.REDIS_URL:
        client = redis.Redis.from_url(
            settings.REDIS_URL, decode_responses=True, encoding_errors="replace", socket_connect_timeout=2,
            socket_timeout=2, health_check_interval=10,
        )
        _local.client, _local.url = client, settings.REDIS_URL
    return client


@dataclass(frozen=True)
class Snapshot:
    version: int
    levels: dict[str, str]
    details: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def global_level(self) -> str:
        return self.levels.get(L.GLOBAL, L.RUNNING)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def take_snapshot() -> Snapshot:
    """The database state to distribute: every scope row and the state version."""
    from .models import Scope

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
            "since": _iso(row.since), "cooldown_until": _iso(row.cooldown_until),
            "version": row.version,
        }
    return Snapshot(version, levels, details)


def publish_state(snapshot: Snapshot, *, event: dict[str, Any] | None = None,
                  force: bool = False, client: redis.Redis | None = None) -> bool:
    """Write the snapshot to Redis and announce it. Returns False when Redis
    already held a newer version (and `force` was not set)."""
    client = client or get_redis()
    return bool(client.eval(*_publish_args(snapshot, event, force)))


def _publish_args(snapshot: Snapshot, event: dict[str, Any] | None, force: bool) -> tuple[Any, ...]:
    message = json.dumps({"type": "state", "version": snapshot.version, "levels": snapshot.levels,
                          "event": event})
    return (
        _PUBLISH_STATE, 4, KEY_GLOBAL, KEY_STATE, KEY_SCOPES, CHANNEL,
        snapshot.version, snapshot.global_level, json.dumps(snapshot.levels),
        json.dumps({scope: json.dumps(d) for scope, d in snapshot.details.items()}),
        message, datetime.now(UTC).isoformat().replace("+00:00", "Z"), "1" if force else "0",
    )


def publish_event(event, *, state_changed: bool, snapshot: Snapshot | None = None) -> None:
    """After commit: append the event to the Redis log and, if it changed a level,
    publish the state as the database now has it (`snapshot`, taken after the commit,
    or read here)."""
    from .policy import kill_switch_policy

    entry = event.as_log_entry()
    # One round trip; Redis runs the commands in this order: the state first (it is what
    # trading processes wait for), the log after it.
    pipe = get_redis().pipeline(transaction=False)
    if state_changed:
        pipe.eval(*_publish_args(snapshot or take_snapshot(), entry, False))
    pipe.lpush(KEY_LOG, json.dumps(entry))
    pipe.ltrim(KEY_LOG, 0, kill_switch_policy().log_max_entries - 1)
    pipe.execute()


def rebuild_log(client: redis.Redis | None = None) -> int:
    """Refill `risk:kill_switch:log` from the database (after Redis lost it)."""
    from .models import Event
    from .policy import kill_switch_policy

    client = client or get_redis()
    limit = kill_switch_policy().log_max_entries
    entries = [json.dumps(e.as_log_entry()) for e in Event.objects.order_by("-seq")[:limit]]
    pipe = client.pipeline(transaction=True)
    pipe.delete(KEY_LOG)
    if entries:
        pipe.rpush(KEY_LOG, *entries)
    pipe.execute()
    return len(entries)


def publish_heartbeat(version: int, *, stale_after: float, client: redis.Redis | None = None) -> None:
    client = client or get_redis()
    payload = json.dumps({"type": "heartbeat", "ts": time.time(), "version": version,
                          "stale_after": stale_after})
    pipe = client.pipeline(transaction=False)
    pipe.set(KEY_HEARTBEAT, payload)
    pipe.publish(CHANNEL, payload)
    pipe.execute()


@dataclass(frozen=True)
class RedisView:
    trading_switch: str | None
    state: dict[str, str]
    log_exists: bool

    @property
    def version(self) -> int | None:
        raw = self.state.get("version")
        try:
            return int(raw) if raw is not None else None
        except ValueError:
            return None

    @property
    def levels(self) -> dict[str, str]:
        return {k: v for k, v in self.state.items() if k not in ("version", "updated_at")}


def read_view(client: redis.Redis | None = None) -> RedisView:
    client = client or get_redis()
    pipe = client.pipeline(transaction=True)
    pipe.get(KEY_GLOBAL)
    pipe.hgetall(KEY_STATE)
    pipe.exists(KEY_LOG)
    trading_switch, state, log_exists = pipe.execute()
    return RedisView(trading_switch, state or {}, bool(log_exists))


def emergency_escalate(scope: str, level: str, pending: dict[str, Any], log_entry: dict[str, Any],
                       client: redis.Redis | None = None) -> str:
    """Raise `scope` to `level` in Redis while the database is unavailable; returns the
    level Redis now holds for the scope. Trading processes obey at once."""
    client = client or get_redis()
    return client.eval(_EMERGENCY_ESCALATE, 5, KEY_GLOBAL, KEY_STATE, CHANNEL, KEY_PENDING, KEY_LOG,
                       scope, level, json.dumps(pending), json.dumps(log_entry))


def queue_pending(pending: dict[str, Any], client: redis.Redis | None = None) -> None:
    (client or get_redis()).rpush(KEY_PENDING, json.dumps(pending))
