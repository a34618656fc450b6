"""Input rules shared by every service, and the audit record of every refused attempt.

Guarantees: a refused attempt leaves exactly one event (action `refused`, or
`cooldown_violation`), with the input kept as typed but storable; if the database is
down the refusal is kept in Redis for the audit log (services.outage); a refusal is
never lost silently (at worst it is logged as critical).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError

from killswitch import domain as L
from killswitch.models import Action, Outcome, Scope, Source
from killswitch.policy import kill_switch_policy

from .audit import record
from .authorization import Actor
from .errors import CooldownActive, DatabaseUnavailable, InvalidRequest, KillSwitchError

logger = logging.getLogger("killswitch")

MAX_REFUSED_REASON = 10_000
# Identical refusals recorded one by one in a window before the rest are only counted:
# a person repeating an attempt is on record each time; a flood is one event more.
RECORDED_REPEATS = 3


def parse_scope(scope: L.ScopeRef | str | None) -> L.ScopeRef:
    """A scope from its text. Raises InvalidRequest naming the forms allowed."""
    if isinstance(scope, L.ScopeRef):
        return scope
    try:
        return L.ScopeRef.parse(scope)
    except L.ScopeError as exc:
        raise InvalidRequest(f"Invalid scope: {exc}", field="scope") from None


def check_source(source: str) -> None:
    if source not in Source.values:
        raise ValueError(f"source {source!r} is not one of {Source.values}")


def check_reason(reason: str | None, *, required: bool) -> str:
    """The reason, stripped. Raises InvalidRequest when missing (if required), too long,
    or holding control characters."""
    reason = (reason or "").strip()
    limit = kill_switch_policy().max_reason_length
    if required and not reason:
        raise InvalidRequest("A reason is required to activate the kill switch.", field="reason")
    if len(reason) > limit:
        raise InvalidRequest(f"Reason is {len(reason)} characters long; at most {limit} are allowed.",
                             field="reason")
    if any(not (c.isprintable() or c in "\n\t") for c in reason):
        raise InvalidRequest("Reason contains control characters; use plain text.", field="reason")
    return reason


def as_typed(text: str) -> str:
    """Refused input kept as typed but storable: control characters (NUL, which PostgreSQL
    refuses in text, escape sequences) are written as escapes; newlines and tabs stay."""
    return "".join(c if c.isprintable() or c in "\n\t" else f"\\x{ord(c):02x}" for c in text)


def _window_seconds() -> int:
    return max(1, int(getattr(settings, "KILLSWITCH_FAILED_ATTEMPTS_WINDOW", 60)))


def _counted_as_repeat(error: KillSwitchError, fields: dict[str, Any]) -> bool:
    """True when RECORDED_REPEATS identical refusals (same actor, address, source,
    attempt, answer and scope) were already recorded in this window: it is counted in
    Redis instead of becoming one more event, and `flush_repeated_refusals` records the
    count when the window is over. Cooldown violations are never folded (each is an
    operator's act); without Redis every refusal is recorded."""
    from killswitch.distribution.connection import get_redis

    if isinstance(error, CooldownActive):
        return False
    window = int(time.time() // _window_seconds())
    fingerprint = hashlib.sha256(json.dumps(
        [fields["actor"], fields["client_address"], fields["source"], fields["attempted"], error.code,
         fields["scope"], error.message], default=str).encode()).hexdigest()[:32]
    key = f"{L.KEY_REFUSALS}:{window}"
    try:
        client = get_redis()
        pipe = client.pipeline(transaction=True)
        pipe.hincrby(key, fingerprint, 1)
        pipe.hsetnx(f"{key}:fields", fingerprint, json.dumps(fields, default=str))
        pipe.expire(key, 4 * _window_seconds())
        pipe.expire(f"{key}:fields", 4 * _window_seconds())
        pipe.sadd(f"{L.KEY_REFUSALS}:windows", window)
        count = pipe.execute()[0]
    except (redis.RedisError, OSError):
        return False
    return count > RECORDED_REPEATS


def flush_repeated_refusals() -> int:
    """Record one event per refusal repeated within a window that is over: "N more
    identical refusals". Run by the reconciler; returns the number of events written."""
    from killswitch.distribution.connection import get_redis

    client = get_redis()
    current = int(time.time() // _window_seconds())
    written = 0
    for raw_window in client.smembers(f"{L.KEY_REFUSALS}:windows"):
        window = int(raw_window)
        if window >= current:
            continue
        key = f"{L.KEY_REFUSALS}:{window}"
        counts, described = client.hgetall(key), client.hgetall(f"{key}:fields")
        start = datetime.fromtimestamp(window * _window_seconds(), UTC)
        for fingerprint, count in counts.items():
            more = int(count) - RECORDED_REPEATS
            if more < 1 or fingerprint not in described:
                continue
            fields = json.loads(described[fingerprint])
            record(action=Action.REFUSED, outcome=Outcome.REFUSED, scope=fields["scope"],
                   actor=Actor(fields["actor"]), source=fields["source"], reason=fields["reason"],
                   detail=f"{fields['attempted']}: {fields['message']} (and {more} more identical "
                          f"refusal(s) between {start:%H:%M:%S} and "
                          f"{start + timedelta(seconds=_window_seconds()):%H:%M:%S} UTC, counted, not recorded "
                          "one by one)", requested_level=fields["requested_level"],
                   client_address=fields["client_address"])
            written += 1
        pipe = client.pipeline(transaction=True)
        pipe.delete(key, f"{key}:fields")
        pipe.srem(f"{L.KEY_REFUSALS}:windows", raw_window)
        pipe.execute()
    return written


def refuse(error: KillSwitchError, *, attempted: str, scope: L.ScopeRef | str | None, actor: Actor,
           source: str, reason: str = "", requested_level: str = "",
           client_address: str | None = None) -> KillSwitchError:
    """Record a refused attempt and return the error (with its event) for the caller to raise.

    A refusal identical to one already recorded in the current window is counted
    instead (see _counted_as_repeat); its error then carries no event."""
    from .outage import queue_without_database

    reason = as_typed(str(reason or ""))
    requested_level = as_typed(str(requested_level or ""))
    if not isinstance(scope, L.ScopeRef):
        scope = as_typed(str(scope or ""))
    if _counted_as_repeat(error, {"actor": actor.name, "client_address": client_address, "source": source,
                                  "attempted": attempted, "scope": str(scope), "reason": reason[:MAX_REFUSED_REASON],
                                  "requested_level": requested_level[:16], "message": error.message}):
        error.counted_as_repeat = True
        return error
    try:
        current = ""
        if isinstance(scope, L.ScopeRef):
            row = Scope.objects.filter(kind=scope.kind, key=scope.key).first()
            current = row.level if row else L.RUNNING
        error.event = record(
            action=Action.COOLDOWN_VIOLATION if isinstance(error, CooldownActive) else Action.REFUSED,
            outcome=Outcome.REFUSED, scope=scope, actor=actor, source=source,
            reason=reason[:MAX_REFUSED_REASON], detail=f"{attempted}: {error.message}",
            requested_level=requested_level[:16], previous_level=current, new_level=current,
            client_address=client_address,
        )
    except DatabaseError:
        # Nothing a user did is lost: the refusal is kept in Redis for the audit log.
        try:
            queue_without_database("refusal", scope=str(scope), level=requested_level, reason=reason,
                                   actor=actor, source=source, client_address=client_address,
                                   detail=f"{attempted}: {error.message}")
        except DatabaseUnavailable:
            logger.critical("refusal could not be recorded anywhere", extra={
                "attempted": attempted, "scope": str(scope), "actor": actor.name, "detail": error.message})
    return error


def record_refusal(*, attempted: str, scope: Any, actor: Any, source: str, error: KillSwitchError,
                   reason: str = "", requested_level: str = "",
                   client_address: str | None = None) -> KillSwitchError:
    """Audit a refusal decided outside the services (unauthenticated, HTTP disabled, bad JSON,
    a missing typed confirmation). Returns the error with its event attached, for the
    caller to present."""
    check_source(source)
    ref: L.ScopeRef | str | None
    try:
        ref = parse_scope(scope)
    except InvalidRequest:
        ref = str(scope)
    return refuse(error, attempted=attempted, scope=ref, actor=Actor.of(actor), source=source,
                  reason=str(reason or "")[:MAX_REFUSED_REASON],
                  requested_level=str(requested_level or "")[:16], client_address=client_address)
