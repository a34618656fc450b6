"""What the breaker process keeps in Redis, and the reads every interface shows.

Keys (service-only: trading processes never touch them):
- `killswitch:breakers:readings` (hash): each breaker's last evaluation as JSON, and
  `_round` = {"at", "leader", "interval"} of the last round. Written every round by the
  leading breaker process; the CLI, the API, the Risk page and /metrics read it.
- `killswitch:breakers:latch:<name>` (string): a trip, taken with SET NX before the
  activation, so that one breach trips once whichever process sees it. It stays until
  a person has resumed the scope (`running`) after the trip took effect: a breaker
  never resumes, and a level a person lowered to (halt -> pause) is left alone.
- `killswitch:breakers:memory` (hash): what a breaker carries between rounds and
  processes: the day's peak P&L, when it last tripped, when it last warned.

The audit log stays the record: the last trip each interface shows is the breaker's
latest applied activation event.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

import redis

from killswitch.distribution.connection import get_redis

from . import config as C

logger = logging.getLogger("killswitch.breakers")

READINGS_KEY = "killswitch:breakers:readings"
LATCH_KEY = "killswitch:breakers:latch:{name}"
MEMORY_KEY = "killswitch:breakers:memory"
ROUND_FIELD = "_round"

ARMED, WARNING, TRIPPED, UNKNOWN, IDLE = "armed", "warning", "tripped", "unknown", "idle"
# Beyond its limit but the trip is not committed yet (retried every round).
BREACHED = "breached"
STATES = (ARMED, WARNING, TRIPPED, UNKNOWN, IDLE, BREACHED)
# Readings older than this many rounds (and never less than STALE_AFTER_SECONDS) mean no
# breaker process is evaluating: every interface then says so instead of showing them.
STALE_ROUNDS = 10
STALE_AFTER_SECONDS = 5.0

# KEYS[1] = latch key; ARGV[1] = the latch id it must hold; ARGV[2] = new JSON ("" deletes).
_SWAP = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
local ok, latch = pcall(cjson.decode, current)
if not ok or type(latch) ~= 'table' or latch['id'] ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2]) end
return 1
"""


def client() -> redis.Redis:
    return get_redis()


# --- latches ---------------------------------------------------------------------------------


def new_latch(**fields: Any) -> dict[str, Any]:
    return {"id": uuid.uuid4().hex, "confirmed": False, **fields}


def take_latch(name: str, latch: dict[str, Any]) -> bool:
    """Take the trip of `name`: True for exactly one taker until it is cleared."""
    return bool(client().set(LATCH_KEY.format(name=name), json.dumps(latch), nx=True))


def latches(names: list[str]) -> dict[str, dict[str, Any]]:
    """The latch of each breaker that has one."""
    if not names:
        return {}
    raw = client().mget([LATCH_KEY.format(name=n) for n in names])
    found = {}
    for name, value in zip(names, raw, strict=True):
        try:
            latch = json.loads(value) if value else None
        except ValueError:
            latch = None
        if isinstance(latch, dict):
            found[name] = latch
    return found


def swap_latch(name: str, latch: dict[str, Any], new: dict[str, Any] | None) -> bool:
    """Replace (or with None, clear) the latch of `name` if it is still `latch`."""
    return bool(client().eval(_SWAP, 1, LATCH_KEY.format(name=name), latch["id"],
                              "" if new is None else json.dumps(new)))


# --- memory and readings ---------------------------------------------------------------------


def memories() -> dict[str, dict[str, Any]]:
    found = {}
    for name, raw in client().hgetall(MEMORY_KEY).items():
        try:
            value = json.loads(raw)
        except ValueError:
            continue
        if isinstance(value, dict):
            found[name] = value
    return found


def write_round(rows: dict[str, dict[str, Any]], memory: dict[str, dict[str, Any]], *, leader: str,
                interval: float) -> None:
    """Store one round's readings (and the memories that changed) in one round trip."""
    with client().pipeline(transaction=False) as pipe:
        mapping = {name: json.dumps(row) for name, row in rows.items()}
        mapping[ROUND_FIELD] = json.dumps({"at": time.time(), "leader": leader, "interval": interval})
        # Readings of breakers no longer configured stay until overwritten: snapshot()
        # shows configured breakers only.
        pipe.hset(READINGS_KEY, mapping=mapping)
        if memory:
            pipe.hset(MEMORY_KEY, mapping={name: json.dumps(value) for name, value in memory.items()})
        pipe.execute()


@dataclass(frozen=True)
class Snapshot:
    rows: list[dict[str, Any]]
    evaluated_at: float | None
    leader: str
    fresh: bool
    note: str


def snapshot() -> Snapshot:
    """Every configured breaker as the interfaces show it: the leader's last reading,
    its last trip from the audit log; `unknown` with the reason when no breaker process
    has evaluated recently or Redis cannot be read."""
    breakers = C.configured()
    try:
        raw = client().hgetall(READINGS_KEY)
    except (redis.RedisError, OSError) as exc:
        raw, note = {}, f"Redis cannot be read ({type(exc).__name__}): breaker readings are unknown"
    else:
        note = ""
    meta = _json(raw.get(ROUND_FIELD)) or {}
    at = meta.get("at")
    interval = float(meta.get("interval") or 1.0)
    fresh = at is not None and time.time() - at <= max(STALE_AFTER_SECONDS, STALE_ROUNDS * interval)
    if not note and at is None:
        note = "no breaker process has evaluated yet (manage.py killswitch breakers run; make run starts it)"
    elif not note and not fresh:
        note = (f"no breaker process has evaluated for {time.time() - at:.0f} s: the readings below are "
                "unknown until one runs again")
    trips = last_trips([b.name for b in breakers])
    rows = []
    for breaker in breakers:
        row = _json(raw.get(breaker.name)) or blank_row(breaker)
        if not fresh:
            row = {**row, "state": UNKNOWN, "unknown": note}
        row["last_trip"] = trips.get(breaker.name)
        rows.append(row)
    return Snapshot(rows, at, str(meta.get("leader") or ""), fresh, note)


def blank_row(breaker: C.Breaker) -> dict[str, Any]:
    from .kinds import limit_text

    return {"name": breaker.name, "kind": breaker.kind, "scope": breaker.scope_label, "level": breaker.level,
            "state": UNKNOWN, "figure": "", "value": None, "display": None, "limit": limit_text(breaker),
            "limit_value": breaker.limit,
            "warn_at": breaker.warn_at, "on_unknown": breaker.on_unknown, "unknown": "not evaluated yet",
            "evaluated_at": None, "latch": None}


def last_trips(names: list[str]) -> dict[str, dict[str, Any]]:
    """Each breaker's latest applied activation (its trip) from the audit log."""
    from killswitch.models import Action, Event, Outcome

    found: dict[str, dict[str, Any]] = {}
    for name in names:
        event = (Event.objects.filter(actor=f"breaker:{name}", action=Action.ACTIVATE, outcome=Outcome.APPLIED)
                 .order_by("-seq").only("seq", "created_at", "reason", "new_level", "scope_kind", "scope_key")
                 .first())
        if event is not None:
            found[name] = {"seq": event.seq, "at": event.created_at.isoformat(), "level": event.new_level,
                           "scope": event.scope_label, "reason": event.reason}
    return found


def _json(raw: str | None) -> dict[str, Any] | None:
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def metric_readings() -> list[Any]:
    """The readings /metrics exports (killswitch_breaker_state, killswitch_breaker_value,
    in the unit of the limit), read from Redis at scrape time; no value while no breaker
    process evaluates."""
    from killswitch.ops.hooks import BreakerReading

    snap = snapshot()
    return [BreakerReading(r["name"], r["kind"], r["scope"], r["state"] == TRIPPED,
                           r["value"] if snap.fresh else None) for r in snap.rows]
