"""The outage queue: what users did while the database was down, kept in Redis, and
written into the audit log when the database is back.

Guarantees:
- An escalation never waits for the database: `escalate_without_database` raises the
  scope in Redis at once (never lowers it) and queues the request with its actor,
  reason and time; a refusal that could not be recorded is queued the same way.
- `apply_pending` (run by the reconciler before it compares Redis with the database)
  records each queued item once: its id is written into the event, and the item is
  removed from Redis only after that event committed.
- Only the service can queue an item that is applied: items are signed with the
  service's SECRET_KEY (HMAC-SHA256) and validated like any request; anything else (a
  forgery pushed by a host with Redis write access, garbage) goes to the dead-letter
  list with an alert and never blocks the loop. With Redis users (manage.py killswitch
  redis-acl) only the service's user can write the queue at all.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import uuid
from datetime import datetime
from typing import Any

import redis
from django.conf import settings
from django.db import transaction

from killswitch import domain as L
from killswitch.models import Action, Event, Outcome, Scope, Source
from killswitch.runtime import clock

from .audit import record
from .authorization import BREAKER_PREFIX, CLI_PREFIX, Actor
from .errors import DatabaseUnavailable
from .refusals import MAX_REFUSED_REASON, as_typed

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
    pending["sig"] = sign(pending)
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


DEAD_LETTER = L.KEY_PENDING + ":dead"


def sign(item: dict[str, Any]) -> str:
    """HMAC-SHA256 of an item (without its signature) under the service's SECRET_KEY:
    only the service can queue an item the reconciler will apply."""
    body = json.dumps({k: v for k, v in item.items() if k != "sig"}, sort_keys=True, separators=(",", ":"))
    return hmac.new(settings.SECRET_KEY.encode(), body.encode(), hashlib.sha256).hexdigest()


def _validated(item: Any) -> tuple[dict[str, Any] | None, str]:
    """(item, "") when it is one the service queued and may apply, else (None, why not)."""
    from django.contrib.auth import get_user_model

    if not isinstance(item, dict):
        return None, "not a JSON object"
    if not isinstance(item.get("sig"), str) or not hmac.compare_digest(item["sig"], sign(item)):
        return None, "its signature does not verify: it was not queued by the service (forged or altered)"
    if not isinstance(item.get("id"), str) or not item["id"].isalnum() or len(item["id"]) > 64:
        return None, "its id is not a hex string"
    if item.get("kind") not in ("activate", "refusal"):
        return None, f"kind {str(item.get('kind'))[:40]!r} is not activate or refusal"
    if item.get("source") not in Source.values:
        return None, f"source {str(item.get('source'))[:40]!r} is not one of {', '.join(Source.values)}"
    for key, limit in (("reason", MAX_REFUSED_REASON), ("detail", MAX_REFUSED_REASON), ("scope", 200),
                       ("actor", 150), ("level", 16)):
        value = item.get(key) or ""
        if not isinstance(value, str) or len(value) > limit or as_typed(value) != value:
            return None, f"{key} is not plain text of at most {limit} characters"
    try:
        datetime.fromisoformat(item["requested_at"])
    except (KeyError, TypeError, ValueError):
        return None, "requested_at is not an ISO 8601 time"
    address = item.get("client_address")
    if address is not None:
        try:
            ipaddress.ip_address(address)
        except (TypeError, ValueError):
            return None, "client_address is not an IP address"
    actor, user_id = item.get("actor") or "", item.get("actor_user_id")
    if user_id is None:
        if actor.startswith(BREAKER_PREFIX):
            # An automatic breaker's trip (killswitch.breakers): it may only activate.
            if item.get("kind") == "activate" and item.get("source") != Source.AUTOMATIC:
                return None, f"actor {actor[:40]!r} is a breaker, whose activations come from source automatic"
        elif not actor.startswith(CLI_PREFIX):
            return None, f"actor {actor[:40]!r} is neither a user nor a cli: operator"
    elif not (isinstance(user_id, int) and get_user_model().objects.filter(pk=user_id, username=actor).exists()):
        return None, f"actor {actor[:40]!r} (user id {str(user_id)[:20]}) is not a user of this service"
    if item["kind"] == "activate":
        try:
            L.ScopeRef.parse(item.get("scope"))
        except L.ScopeError as exc:
            return None, f"scope is invalid: {exc}"
        if item.get("level") not in L.ACTIVE_LEVELS:
            return None, f"level {item.get('level')!r} is not one of {', '.join(L.ACTIVE_LEVELS)}"
    return item, ""


def apply_pending() -> int:
    """Write the requests kept in Redis while the database was down into the audit log.

    Each item must be one the service queued (signed with SECRET_KEY) and valid as any
    request is; an item that is not is moved to `killswitch:pending:dead` with an alert
    event naming why, and never blocks the loop. Activations are applied as escalations
    (never lowering a level the database holds); refusals are recorded. Each item's id
    is written into its event, so a crash between the write and the removal from Redis
    never records an item twice. Raises DatabaseError / RedisError when either is down
    (the item stays queued for the next round).
    """
    from killswitch.distribution.connection import get_redis

    from .reconcile import record_alert

    client = get_redis()
    done = 0
    for raw in client.lrange(L.KEY_PENDING, 0, -1):
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        item, why = _validated(parsed) if parsed is not None else (None, "not JSON")
        if item is None:
            # The alert first: if the database cannot take it, the item stays for the next round.
            record_alert(scope=L.GLOBAL, actor="system:reconciler",
                         detail=f"an item of the outage queue was refused and moved to {DEAD_LETTER}: {why}. "
                                f"It began {as_typed(str(raw)[:200])!r}.")
            pipe = client.pipeline(transaction=True)
            pipe.rpush(DEAD_LETTER, raw)
            pipe.lrem(L.KEY_PENDING, 1, raw)
            pipe.execute()
            continue
        marker = f"[pending {item['id']}]"
        queued = datetime.fromisoformat(item["requested_at"])
        with transaction.atomic():  # the item's events and its marker commit together
            if not Event.objects.filter(created_at__gte=queued, detail__contains=marker).exists():
                _apply_pending_item(item, marker)
        client.lrem(L.KEY_PENDING, 1, raw)
        done += 1
    return done


def _apply_pending_item(item: dict[str, Any], marker: str) -> None:
    from django.contrib.auth import get_user_model

    from .transitions import transition

    user = get_user_model().objects.filter(pk=item["actor_user_id"]).first() if item.get("actor_user_id") else None
    actor = Actor.of(user) if user is not None else Actor.system(item["actor"])
    source, reason = item["source"], item.get("reason") or ""
    note = (f"{marker} from the outage queue: requested at {item['requested_at']} while the database was "
            f"unavailable, applied at {clock.now().isoformat()}. {item.get('detail') or ''}").strip()
    if item["kind"] == "activate":
        ref, level = L.ScopeRef.parse(item["scope"]), item["level"]
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
        record(action=Action.ACTIVATE, outcome=Outcome.NOOP, scope=ref, actor=actor, source=source, reason=reason,
               detail=f"{note} Already at {current}.", requested_level=level,
               client_address=item.get("client_address"))
        return
    try:
        scope: L.ScopeRef | str = L.ScopeRef.parse(item.get("scope"))
    except L.ScopeError:
        scope = item.get("scope") or ""
    record(action=Action.REFUSED, outcome=Outcome.REFUSED, scope=scope, actor=actor, source=source,
           reason=reason, detail=note, requested_level=(item.get("level") or "")[:16],
           client_address=item.get("client_address"))
