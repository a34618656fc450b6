"""The outage queue: what users did while the database was down, kept in Redis, and
written into the audit log when the database is back.

Guarantees:
- An escalation never waits for the database: `escalate_without_database` raises the
  scope in Redis at once (never lowers it) and queues the request with its actor,
  reason and time; a refusal that could not be recorded is queued the same way.
- `apply_pending` (run by the reconciler before it compares Redis with the database)
  records each queued item once: its id is written into the event, and the item is
  removed from Redis only after that event committed.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import datetime
from typing import Any

import redis
from django.db import transaction

from killswitch import domain as L
from killswitch.models import Action, Event, Outcome, Scope, Source
from killswitch.runtime import clock

from .audit import record
from .authorization import Actor
from .errors import DatabaseUnavailable

logger = logging.getLogger("killswitch")


def queue_without_database(kind: str, *, scope: str, level: str, reason: str, actor: Actor,
                           source: str, client_address: str | None, detail: str = "",
                           escalate: bool = False) -> dict[str, Any]:
    """Keep a request made while the database was down, in Redis, for the audit log.

    With `escalate`, also raise the scope's level in Redis (never lower it). Raises
    DatabaseUnavailable when Redis cannot be reached either.
    """
    from killswitch.distribution import publish

    now = clock.now()
    pending = {
        "id": uuid.uuid4().hex, "kind": kind, "scope": scope, "level": level, "reason": reason,
        "actor": actor.name, "actor_user_id": actor.user_id, "source": source,
        "client_address": client_address, "detail": detail, "requested_at": now.isoformat(),
    }
    try:
        if escalate:
            log_entry = {
                "action": "activate", "reason": reason,
                "timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "outcome": "pending_audit",
                "scope": scope, "new_level": level, "actor": actor.name, "source": source,
                "detail": "applied to Redis while the database was unavailable",
            }
            publish.emergency_escalate(scope, level, pending, log_entry)
        else:
            publish.queue_pending(pending)
    except (redis.RedisError, OSError):
        raise DatabaseUnavailable(
            "Neither the kill switch database nor Redis can be reached: nothing was changed. "
            "Stop trading at the broker by hand (see the README runbook).") from None
    logger.critical("database unavailable: %s kept in Redis for the audit log", kind,
                    extra={"pending": json.dumps(pending)})
    return pending


def escalate_without_database(*, ref: L.ScopeRef, level: str, reason: str, actor: Actor, source: str,
                              client_address: str | None):
    """The Redis path of an activation: every trading process obeys now, the audit
    event follows when the database is back. Returns a TransitionResult (pending_audit)."""
    from .transitions import TransitionResult

    pending = queue_without_database("activate", scope=str(ref), level=level, reason=reason, actor=actor,
                                     source=source, client_address=client_address, escalate=True)
    return TransitionResult(
        str(ref), True, "", level, datetime.fromisoformat(pending["requested_at"]), reason, None, 0,
        f"{ref} raised to {level} in Redis (every trading process obeys now); the database is "
        "unavailable, so the audit event will be written when it is back",
        None, pending_audit=True)


def apply_pending() -> int:
    """Write the requests kept in Redis while the database was down into the audit log.

    Activations are applied as escalations (never lowering a level the database holds);
    refusals are recorded. Each item carries an id written into its event, so a crash
    between the write and the removal from Redis never records an item twice.
    """
    from killswitch.distribution.connection import get_redis

    client = get_redis()
    done = 0
    for raw in client.lrange(L.KEY_PENDING, 0, -1):
        try:
            item = json.loads(raw)
            marker = f"[pending {item['id']}]"
        except (ValueError, KeyError, TypeError):
            client.lrem(L.KEY_PENDING, 1, raw)
            logger.error("dropped an unreadable pending item", extra={"raw": str(raw)[:500]})
            continue
        with transaction.atomic():  # the item's events and its marker commit together
            if not Event.objects.filter(detail__contains=marker).exists():
                _apply_pending_item(item, marker)
        client.lrem(L.KEY_PENDING, 1, raw)
        done += 1
    return done


def _apply_pending_item(item: dict[str, Any], marker: str) -> None:
    from .transitions import transition

    actor = Actor(str(item.get("actor") or "unknown")[:150])
    source = item.get("source") if item.get("source") in Source.values else Source.AUTOMATIC
    reason = str(item.get("reason") or "")
    note = (f"{marker} requested at {item.get('requested_at')} while the database was "
            f"unavailable; recorded on recovery. {item.get('detail') or ''}").strip()
    try:
        ref = L.ScopeRef.parse(item.get("scope"))
    except L.ScopeError:
        ref = None
    level = item.get("level") if item.get("level") in L.ACTIVE_LEVELS else None
    if item.get("kind") == "activate" and ref is not None and level is not None:
        current = Scope.objects.filter(kind=ref.kind, key=ref.key).values_list("level", flat=True).first()
        if L.SEVERITY[level] > L.SEVERITY[current or L.RUNNING]:
            result = transition(ref=ref, target=level, actor=actor, source=source, reason=reason,
                                action=Action.ACTIVATE, client_address=item.get("client_address"))
            # The transition's own event carries the detail "X is now Y"; the marker
            # goes on a companion record so the item is never applied twice.
            record(action=Action.ACTIVATE, outcome=Outcome.NOOP, scope=ref, actor=actor, source=source,
                   reason=reason, detail=f"{note} Applied as event #{result.seq}.", requested_level=level,
                   previous_level=result.level, new_level=result.level,
                   client_address=item.get("client_address"))
            return
    record(action=Action.ACTIVATE if item.get("kind") == "activate" else Action.REFUSED,
           outcome=Outcome.NOOP if item.get("kind") == "activate" else Outcome.REFUSED,
           scope=ref or str(item.get("scope")), actor=actor, source=source, reason=reason, detail=note,
           requested_level=str(level or "")[:16], client_address=item.get("client_address"))
