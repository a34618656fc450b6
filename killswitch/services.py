"""Every write and every rule of the kill switch.

Callers (API, admin, CLI, reconciler, Celery tasks) translate their input, call one
function here and present its result. Each function is keyword-only and asks who
acted, from where and why.

Guarantees:
- A transition and its audit event are written in one transaction, under a row lock
  on the scope (and on the audit head, which serializes the hash chain).
- Redis, Channels, Celery and notifications are touched only after commit.
- Repeating a request is a no-op that answers correctly ("already at halt").
- Every refused attempt leaves an event; the exception raised carries it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import redis
from django.db import DatabaseError, IntegrityError, transaction

from . import clock
from . import levels as L
from .models import GENESIS_HASH, Action, AuditHead, Event, Outcome, Scope, Source
from .policy import kill_switch_policy
from .signals import event_committed, event_recorded

logger = logging.getLogger("killswitch")

SYSTEM_RECONCILER = "system:reconciler"
REDIS_CLI_ACTOR = "redis-cli"


# --- Errors -------------------------------------------------------------------------------


class KillSwitchError(Exception):
    """A refused request. `code` is stable for programs; `message` is for people.

    `event` is the audit event the refusal left (None only if even that failed).
    """

    code = "error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.event: Event | None = None


class InvalidRequest(KillSwitchError):
    code = "invalid"


class PermissionRefused(KillSwitchError):
    code = "forbidden"


class ControlDisabled(KillSwitchError):
    code = "disabled"


class DatabaseUnavailable(KillSwitchError):
    """The database (the source of truth) cannot be reached and the request could not be
    carried out without it. Nothing was changed."""

    code = "database_unavailable"


class CooldownActive(KillSwitchError):
    """Resume or de-escalation inside a scope's cooldown. Messages are the seed's."""

    code = "cooldown_active"

    def __init__(self, *, remaining_seconds: float, cooldown_minutes: float,
                 cooldown_until: datetime, scope: str) -> None:
        self.remaining_seconds = remaining_seconds
        self.remaining_minutes = max(1, math.ceil(remaining_seconds / 60))
        self.cooldown_minutes = cooldown_minutes
        self.cooldown_until = cooldown_until
        self.scope = scope
        if cooldown_minutes < 1:
            # Only drills get sub-minute cooldowns; "1 minute remaining" would mislead them.
            seconds = max(1, math.ceil(remaining_seconds))
            remaining = f"{seconds} second{'' if seconds == 1 else 's'}"
            total = f"{round(cooldown_minutes * 60, 1):g} seconds"
        else:
            remaining = f"{self.remaining_minutes} minute{'' if self.remaining_minutes == 1 else 's'}"
            total = f"{round(cooldown_minutes, 2):g} minutes"
        self.short_message = f"Kill switch cooldown active. {remaining} remaining."
        super().__init__(f"Kill switch cooldown active. {remaining} remaining (cooldown: {total}).")


# --- Actors -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Actor:
    """Who acted: a Django user, or a named system actor (reconciler, redis-cli, cli:<os user>).

    System actors are trusted: they run on the service's own machines with its
    credentials. Users need the model permissions the roles grant.
    """

    name: str
    user: Any = None

    @classmethod
    def of(cls, actor: Any) -> Actor:
        if isinstance(actor, Actor):
            return actor
        if actor is None:
            return cls("anonymous")
        if isinstance(actor, str):
            return cls(actor)
        if getattr(actor, "is_authenticated", False):
            return cls(actor.get_username(), actor)
        return cls("anonymous")

    @property
    def user_id(self) -> int | None:
        return getattr(self.user, "pk", None)

    def may(self, what: str) -> bool:
        """what: 'view', 'activate' or 'deactivate'."""
        if self.user is None:
            return self.name != "anonymous"
        if not self.user.is_active:
            return False
        return self.user.has_perm(f"killswitch.{what}_killswitch")


# --- Results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransitionResult:
    scope: str
    changed: bool
    previous_level: str
    level: str
    event: Event | None  # None only when pending_audit
    cooldown_until: datetime | None
    version: int
    message: str
    # True when the database was down: the level is in Redis (every client obeys) and the
    # audit event will be written by the reconciler when the database is back.
    pending_audit: bool = False
    requested_at: datetime | None = None

    @property
    def at(self) -> datetime:
        return self.event.created_at if self.event is not None else self.requested_at


@dataclass(frozen=True)
class AuditReport:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""


# --- Internals ----------------------------------------------------------------------------


def _lock_head() -> AuditHead:
    head = AuditHead.objects.select_for_update().filter(pk=1).first()
    if head is None:  # created by migration; recreated if someone emptied the table
        try:
            with transaction.atomic():
                AuditHead.objects.create(pk=1)
        except IntegrityError:
            pass
        head = AuditHead.objects.select_for_update().get(pk=1)
    return head


def _lock_scope(ref: L.ScopeRef) -> Scope:
    row = Scope.objects.select_for_update().filter(kind=ref.kind, key=ref.key).first()
    if row is None:
        # INSERT ... ON CONFLICT DO NOTHING: a row created concurrently is no error (and
        # needs no savepoint); then lock whichever row won.
        Scope.objects.bulk_create([Scope(kind=ref.kind, key=ref.key)], ignore_conflicts=True)
        row = Scope.objects.select_for_update().get(kind=ref.kind, key=ref.key)
    return row


def _append_event(head: AuditHead, *, changed: bool = False, **fields: Any) -> Event:
    """Append one event to the chain. The caller holds the head lock inside a transaction."""
    if fields.get("client_address"):
        # Hash the address as the database will store it (IPv6 in canonical form).
        try:
            fields["client_address"] = str(ipaddress.ip_address(fields["client_address"]))
        except ValueError:
            fields["client_address"] = None
    event = Event(seq=head.last_seq + 1, prev_hash=head.last_hash, created_at=clock.now(), **fields)
    event.hash = event.compute_hash()
    event.save(force_insert=True)
    head.last_seq = event.seq
    head.last_hash = event.hash
    head.save(update_fields=["last_seq", "last_hash", "state_version"])
    event_recorded.send(event=event, changed=changed)  # rows that commit with the event
    transaction.on_commit(partial(_after_commit, event, changed))
    return event


def _after_commit(event: Event, changed: bool) -> None:
    """Distribute a committed event. Failures here never undo the transition:
    the reconciler republishes whatever Redis missed."""
    from . import distribution

    logger.info(
        "kill switch %s %s", event.action, event.outcome,
        extra={
            "seq": event.seq, "scope": event.scope_label, "previous_level": event.previous_level,
            "new_level": event.new_level, "requested_level": event.requested_level,
            "actor": event.actor, "source": event.source, "reason": event.reason,
            "detail": event.detail, "version": event.version, "client_address": event.client_address,
        },
    )
    snapshot = None
    try:
        # Read once, after the commit: published to Redis and handed to the receivers.
        snapshot = distribution.take_snapshot() if changed else None
        distribution.publish_event(event, state_changed=changed, snapshot=snapshot)
    except Exception:  # Redis down: the reconciler heals it; the DB already has the truth
        logger.warning("could not publish event to Redis", exc_info=True, extra={"seq": event.seq})
    for receiver, result in event_committed.send_robust(sender=Event, event=event, changed=changed,
                                                        snapshot=snapshot):
        if isinstance(result, Exception):
            logger.error("event_committed receiver %s failed: %r", receiver, result, extra={"seq": event.seq})


def _scope_fields(scope: L.ScopeRef | str | None) -> dict[str, str]:
    if isinstance(scope, L.ScopeRef):
        return {"scope_kind": scope.kind, "scope_key": scope.key}
    # An unparseable scope is kept as typed (truncated) so the attempt is still on record.
    return {"scope_kind": "", "scope_key": str(scope or "")[: L.MAX_SCOPE_KEY]}


def _record(*, action: str, outcome: str, scope: L.ScopeRef | str | None, actor: Actor, source: str,
            reason: str = "", detail: str = "", requested_level: str = "", previous_level: str = "",
            new_level: str = "", client_address: str | None = None) -> Event:
    with transaction.atomic():
        head = _lock_head()
        return _append_event(
            head, action=action, outcome=outcome, **_scope_fields(scope),
            previous_level=previous_level, new_level=new_level, requested_level=requested_level,
            actor=actor.name[:150], actor_user_id=actor.user_id, source=source,
            reason=reason or "", detail=detail, client_address=client_address or None,
            version=head.state_version,
        )


def _as_typed(text: str) -> str:
    """Refused input kept as typed but storable: control characters (NUL, which PostgreSQL
    refuses in text, escape sequences) are written as escapes; newlines and tabs stay."""
    return "".join(c if c.isprintable() or c in "\n\t" else f"\\x{ord(c):02x}" for c in text)


def _refuse(error: KillSwitchError, *, attempted: str, scope: L.ScopeRef | str | None, actor: Actor,
            source: str, reason: str = "", requested_level: str = "",
            client_address: str | None = None) -> KillSwitchError:
    """Record a refused attempt and return the error (with its event) for the caller to raise."""
    reason = _as_typed(str(reason or ""))
    requested_level = _as_typed(str(requested_level or ""))
    if not isinstance(scope, L.ScopeRef):
        scope = _as_typed(str(scope or ""))
    try:
        current = ""
        if isinstance(scope, L.ScopeRef):
            row = Scope.objects.filter(kind=scope.kind, key=scope.key).first()
            current = row.level if row else L.RUNNING
        error.event = _record(
            action=Action.COOLDOWN_VIOLATION if isinstance(error, CooldownActive) else Action.REFUSED,
            outcome=Outcome.REFUSED, scope=scope, actor=actor, source=source, reason=reason[:10_000],
            detail=f"{attempted}: {error.message}", requested_level=requested_level[:16],
            previous_level=current, new_level=current, client_address=client_address,
        )
    except DatabaseError:
        # Nothing a user did is lost: the refusal is kept in Redis for the audit log.
        try:
            _queue_without_database("refusal", scope=str(scope), level=requested_level, reason=reason,
                                    actor=actor, source=source, client_address=client_address,
                                    detail=f"{attempted}: {error.message}")
        except DatabaseUnavailable:
            logger.critical("refusal could not be recorded anywhere", extra={
                "attempted": attempted, "scope": str(scope), "actor": actor.name, "detail": error.message})
    return error


def _parse_scope(scope: L.ScopeRef | str | None) -> L.ScopeRef:
    if isinstance(scope, L.ScopeRef):
        return scope
    try:
        return L.ScopeRef.parse(scope)
    except L.ScopeError as exc:
        raise InvalidRequest(f"Invalid scope: {exc}", field="scope") from None


def _check_source(source: str) -> None:
    if source not in Source.values:
        raise ValueError(f"source {source!r} is not one of {Source.values}")


def _check_reason(reason: str | None, *, required: bool) -> str:
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


def _transition(*, ref: L.ScopeRef, target: str, actor: Actor, source: str, reason: str,
                action: str, client_address: str | None,
                revert_on_cooldown: bool = False,
                cooldown_minutes: float | None = None) -> TransitionResult:
    """Move one scope to `target` under its row lock, applying the cooldown rule.

    Escalation: always allowed; restarts the scope's cooldown.
    De-escalation or resume: needs the deactivate permission and an expired cooldown;
    otherwise a cooldown-violation event is recorded and CooldownActive raised.
    """
    policy = kill_switch_policy()
    refusal: KillSwitchError | None = None
    with transaction.atomic():
        row = _lock_scope(ref)
        now = clock.now()
        current = row.level
        common = dict(
            action=action, scope_kind=ref.kind, scope_key=ref.key, requested_level=target,
            actor=actor.name[:150], actor_user_id=actor.user_id, source=source, reason=reason,
            client_address=client_address or None,
        )
        if target == current:
            head = _lock_head()
            message = f"{ref} is already at {current}"
            event = _append_event(head, outcome=Outcome.NOOP, previous_level=current,
                                  new_level=current, version=head.state_version,
                                  detail=message, **common)
            return TransitionResult(str(ref), False, current, current, event, row.cooldown_until,
                                    row.version, message)
        escalation = L.SEVERITY[target] > L.SEVERITY[current]
        if not escalation and not actor.may("deactivate"):
            refusal = PermissionRefused(
                f"{actor.name} may not lower {ref} from {current} to {target}; "
                "the risk_officer role (deactivate permission) is required."
            )
        elif not escalation and row.cooldown_remaining_seconds(now) > 0:
            # The cooldown this scope actually got (a drill's may be shorter than the policy's):
            # `since` is the escalation that started it.
            started = (row.cooldown_until - row.since).total_seconds() / 60
            refusal = CooldownActive(
                remaining_seconds=row.cooldown_remaining_seconds(now),
                cooldown_minutes=started if started > 0 else policy.cooldown_minutes,
                cooldown_until=row.cooldown_until,
                scope=str(ref),
            )
            head = _lock_head()
            common["action"] = Action.COOLDOWN_VIOLATION
            refusal.event = _append_event(
                head, outcome=Outcome.REVERTED if revert_on_cooldown else Outcome.REFUSED,
                previous_level=current, new_level=current, version=head.state_version,
                detail=f"{action}: {refusal.message}", **common,
            )
        else:
            head = _lock_head()
            head.state_version += 1
            row.level = target
            row.reason = reason
            row.actor = actor.name[:150]
            row.source = source
            row.since = now
            row.version = head.state_version
            if escalation:
                minutes = policy.cooldown_minutes if cooldown_minutes is None else cooldown_minutes
                # Restart the cooldown, but never end one that is running sooner (a drill's
                # short cooldown, or a lowered policy, must not shorten a real one).
                row.cooldown_until = max(row.cooldown_until or now, now + timedelta(minutes=minutes))
            row.save()
            message = f"{ref} is now {target} (was {current})"
            if escalation and cooldown_minutes is not None:
                message += f"; drill cooldown {cooldown_minutes:g} minutes"
            event = _append_event(head, changed=True, outcome=Outcome.APPLIED, previous_level=current,
                                  new_level=target, version=head.state_version, detail=message,
                                  **common)
            return TransitionResult(str(ref), True, current, target, event, row.cooldown_until,
                                    row.version, message)
    if refusal.event is None:  # permission refusal: recorded after the scope lock is released
        _refuse(refusal, attempted=action, scope=ref, actor=actor, source=source, reason=reason,
                requested_level=target, client_address=client_address)
    raise refusal


# --- Public services ----------------------------------------------------------------------


def _queue_without_database(kind: str, *, scope: str, level: str, reason: str, actor: Actor,
                            source: str, client_address: str | None, detail: str = "",
                            escalate: bool = False) -> dict[str, Any]:
    """Keep a request made while the database was down, in Redis, for the audit log.

    With `escalate`, also raise the scope's level in Redis (never lower it). Raises
    DatabaseUnavailable when Redis cannot be reached either.
    """
    from . import distribution

    now = clock.now()
    pending = {
        "id": uuid.uuid4().hex, "kind": kind, "scope": scope, "level": level, "reason": reason,
        "actor": actor.name, "actor_user_id": actor.user_id, "source": source,
        "client_address": client_address, "detail": detail,
        "requested_at": now.isoformat(),
    }
    try:
        if escalate:
            log_entry = {
                "action": "activate", "reason": reason,
                "timestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "outcome": "pending_audit",
                "scope": scope, "new_level": level, "actor": actor.name, "source": source,
                "detail": "applied to Redis while the database was unavailable",
            }
            distribution.emergency_escalate(scope, level, pending, log_entry)
        else:
            distribution.queue_pending(pending)
    except (redis.RedisError, OSError):
        raise DatabaseUnavailable(
            "Neither the kill switch database nor Redis can be reached: nothing was changed. "
            "Stop trading at the broker by hand (see the README runbook)."
        ) from None
    logger.critical("database unavailable: %s kept in Redis for the audit log", kind,
                    extra={"pending": json.dumps(pending)})
    return pending


def apply_pending() -> int:
    """Write the requests kept in Redis while the database was down into the audit log.

    Called by the reconciler before it compares Redis with the database. Activations are
    applied as escalations (never lowering a level the database holds); refusals are
    recorded. Each item carries an id written into its event, so a crash between the
    write and the removal from Redis never records an item twice.
    """
    from . import distribution

    client = distribution.get_redis()
    done = 0
    for raw in client.lrange(distribution.KEY_PENDING, 0, -1):
        try:
            item = json.loads(raw)
            marker = f"[pending {item['id']}]"
        except (ValueError, KeyError, TypeError):
            client.lrem(distribution.KEY_PENDING, 1, raw)
            logger.error("dropped an unreadable pending item", extra={"raw": str(raw)[:500]})
            continue
        with transaction.atomic():  # the item's events and its marker commit together
            if not Event.objects.filter(detail__contains=marker).exists():
                _apply_pending_item(item, marker)
        client.lrem(distribution.KEY_PENDING, 1, raw)
        done += 1
    return done


def _apply_pending_item(item: dict[str, Any], marker: str) -> None:
    actor = Actor(str(item.get("actor") or "unknown")[:150])
    source = item.get("source") if item.get("source") in Source.values else Source.AUTOMATIC
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
            result = _transition(ref=ref, target=level, actor=actor, source=source,
                                 reason=str(item.get("reason") or ""), action=Action.ACTIVATE,
                                 client_address=item.get("client_address"))
            # The transition's own event carries the detail "X is now Y"; the marker
            # goes on a companion record so the item is never applied twice.
            _record(action=Action.ACTIVATE, outcome=Outcome.NOOP, scope=ref, actor=actor, source=source,
                    reason=str(item.get("reason") or ""), detail=f"{note} Applied as event #{result.event.seq}.",
                    requested_level=level, previous_level=result.level, new_level=result.level,
                    client_address=item.get("client_address"))
            return
    _record(action=Action.ACTIVATE if item.get("kind") == "activate" else Action.REFUSED,
            outcome=Outcome.NOOP if item.get("kind") == "activate" else Outcome.REFUSED,
            scope=ref or str(item.get("scope")), actor=actor, source=source,
            reason=str(item.get("reason") or ""), detail=note, requested_level=str(level or "")[:16],
            client_address=item.get("client_address"))


def activate(*, scope: L.ScopeRef | str | None, level: str | None, reason: str, actor: Any,
             source: str, client_address: str | None = None,
             drill_cooldown_minutes: float | None = None) -> TransitionResult:
    """Raise `scope` to `level` (default: the policy's default_level, `halt`).

    `drill_cooldown_minutes` shortens this activation's cooldown for a kill-switch drill
    (`killswitch drill`); it may only shorten, never lengthen, and the event says so.

    Raises InvalidRequest (bad scope/level/reason), PermissionRefused, CooldownActive
    (when `level` is below the current level inside the cooldown). Each refusal is audited.
    """
    _check_source(source)
    actor = Actor.of(actor)
    requested = "" if level is None else str(level)
    try:
        ref = _parse_scope(scope)
        level = (level or kill_switch_policy().default_level)
        if not isinstance(level, str) or level not in L.ACTIVE_LEVELS:
            raise InvalidRequest(
                f"Invalid level {level!r}; expected one of {', '.join(L.ACTIVE_LEVELS)}.", field="level"
            )
        reason = _check_reason(reason if isinstance(reason, str) else None, required=True)
        try:
            permitted = actor.may("activate")
        except DatabaseError:
            raise DatabaseUnavailable(
                "The kill switch database is unavailable, so your permissions cannot be checked: "
                "nothing was changed. On the server, `manage.py killswitch activate` or "
                "`redis-cli SET trading_switch halt` still stop trading at once and are audited "
                "when the database is back."
            ) from None
        if not permitted:
            raise PermissionRefused(f"{actor.name} may not activate the kill switch; the trader role is required.")
        if drill_cooldown_minutes is not None and not (
                0 <= drill_cooldown_minutes <= kill_switch_policy().cooldown_minutes):
            raise InvalidRequest(
                f"Drill cooldown {drill_cooldown_minutes!r} minutes is invalid; expected 0 to the "
                f"policy's {kill_switch_policy().cooldown_minutes:g} minutes.", field="cooldown")
    except KillSwitchError as error:
        raise _refuse(error, attempted="activate", scope=locals().get("ref", scope), actor=actor,
                      source=source, reason=str(reason or ""), requested_level=requested,
                      client_address=client_address) from None
    try:
        return _transition(ref=ref, target=level, actor=actor, source=source, reason=reason,
                           action=Action.ACTIVATE, client_address=client_address,
                           cooldown_minutes=drill_cooldown_minutes)
    except DatabaseError:
        pass  # the actor's permission was confirmed above; fall through to the Redis path
    # The database went away: trading must still stop. Escalate in Redis, audit later.
    pending = _queue_without_database("activate", scope=str(ref), level=level, reason=reason,
                                      actor=actor, source=source, client_address=client_address,
                                      escalate=True)
    return TransitionResult(
        str(ref), True, "", level, None, None, 0,
        f"{ref} raised to {level} in Redis (every trading process obeys now); the database is "
        "unavailable, so the audit event will be written when it is back",
        pending_audit=True, requested_at=datetime.fromisoformat(pending["requested_at"]),
    )


def deactivate(*, scope: L.ScopeRef | str | None, actor: Any, source: str, reason: str = "",
               client_address: str | None = None) -> TransitionResult:
    """Resume trading on `scope` (level `running`), once its cooldown has expired.

    Raises InvalidRequest, PermissionRefused, CooldownActive; each refusal is audited.
    """
    _check_source(source)
    actor = Actor.of(actor)
    try:
        ref = _parse_scope(scope)
        reason = _check_reason(reason if isinstance(reason, str) else None, required=False)
        try:
            permitted = actor.may("deactivate")
        except DatabaseError:
            raise DatabaseUnavailable(
                "The kill switch database is unavailable: nothing was changed. Resuming needs the "
                "database, where the cooldown is kept; try again when it is back."
            ) from None
        if not permitted:
            raise PermissionRefused(
                f"{actor.name} may not deactivate the kill switch; the risk_officer role is required."
            )
    except KillSwitchError as error:
        raise _refuse(error, attempted="deactivate", scope=locals().get("ref", scope), actor=actor,
                      source=source, reason=str(reason or ""), requested_level=L.RUNNING,
                      client_address=client_address) from None
    try:
        return _transition(ref=ref, target=L.RUNNING, actor=actor, source=source, reason=reason,
                           action=Action.DEACTIVATE, client_address=client_address)
    except DatabaseError:
        error = DatabaseUnavailable(
            "The kill switch database is unavailable: nothing was changed. Resuming needs the "
            "database, where the cooldown is kept; try again when it is back."
        )
        raise _refuse(error, attempted="deactivate", scope=ref, actor=actor, source=source,
                      reason=reason, requested_level=L.RUNNING, client_address=client_address) from None


def record_refusal(*, attempted: str, scope: Any, actor: Any, source: str, error: KillSwitchError,
                   reason: str = "", requested_level: str = "",
                   client_address: str | None = None) -> KillSwitchError:
    """Audit a refusal decided outside the services (unauthenticated, HTTP disabled, bad JSON).

    Returns the error with its event attached, for the caller to present.
    """
    _check_source(source)
    ref: L.ScopeRef | str | None
    try:
        ref = _parse_scope(scope)
    except InvalidRequest:
        ref = str(scope)
    return _refuse(error, attempted=attempted, scope=ref, actor=Actor.of(actor), source=source,
                   reason=str(reason or "")[:10_000], requested_level=str(requested_level or "")[:16],
                   client_address=client_address)


def reconcile_out_of_band(*, observed: str | None, expected_version: int) -> Event | None:
    """Turn an out-of-band write of `trading_switch` into an audited event.

    Called by the reconciler when Redis' `trading_switch` differs from the global
    level while Redis is otherwise at `expected_version`. Escalations are applied
    (source `redis`, and so get the same broker work as any other); a resume or
    de-escalation inside the cooldown is reverted and recorded as a violation; a value
    that is not a level is reverted and recorded. Returns the event, or None when the
    state moved meanwhile (the next round looks again).
    """
    actor = Actor(REDIS_CLI_ACTOR)
    with transaction.atomic():
        row = _lock_scope(L.ScopeRef(L.GLOBAL))
        head = _lock_head()
        if head.state_version != expected_version:
            return None
        level = L.normalize_level(observed)
        if level is None:
            shown = (observed or "")[:200]
            return _append_event(
                head, action=Action.OUT_OF_BAND, outcome=Outcome.REVERTED, scope_kind=L.GLOBAL,
                scope_key="", previous_level=row.level, new_level=row.level, requested_level="",
                actor=actor.name, actor_user_id=None, source=Source.REDIS,
                reason=f"redis-cli SET trading_switch {shown!r}",
                detail=f"{shown!r} is not a level; expected one of {', '.join(L.LEVELS)}. "
                       f"Reverted to {row.level}.",
                version=head.state_version,
            )
        if level == row.level:
            return None
        # Still under the locks that checked the version: the write is judged against
        # exactly the state it was made on.
        try:
            result = _transition(
                ref=L.ScopeRef(L.GLOBAL), target=level, actor=actor, source=Source.REDIS,
                reason=f"redis-cli SET trading_switch {observed.strip()}", action=Action.OUT_OF_BAND,
                client_address=None, revert_on_cooldown=True,
            )
        except CooldownActive as refusal:
            return refusal.event  # caught inside the block: the violation event commits
        return result.event


def restore_after_loss(*, observed: str | None, expected_version: int) -> Event | None:
    """Redis lost the state (restart, FLUSHALL): decide what `trading_switch`, if
    anything was written into the emptied Redis, means.

    Only an escalation is honoured (as an audited out-of-band change): anything else is
    not a decision to resume — the seed's own loop writes `running` when it finds the key
    missing — so the database state is restored and the finding recorded.
    """
    found = L.normalize_level(observed)
    current = Scope.objects.filter(kind=L.GLOBAL, key="").values_list("level", flat=True).first() or L.RUNNING
    if found is not None and L.SEVERITY[found] > L.SEVERITY[current]:
        return reconcile_out_of_band(observed=observed, expected_version=expected_version)
    seen = "" if observed is None else f" (found trading_switch={observed[:50]!r})"
    return record_restored(cause=f"Redis had lost the kill switch state{seen}")


def record_restored(*, cause: str) -> Event:
    """Record that Redis had lost (or garbled) the state and the reconciler republishes it.

    The detail names the version and global level read under the locks, i.e. exactly
    what the reconciler's next snapshot publishes.
    """
    with transaction.atomic():
        row = _lock_scope(L.ScopeRef(L.GLOBAL))
        head = _lock_head()
        return _append_event(
            head, action=Action.RESTORED, outcome=Outcome.APPLIED, scope_kind=L.GLOBAL, scope_key="",
            previous_level=row.level, new_level=row.level, requested_level="",
            actor=SYSTEM_RECONCILER, actor_user_id=None, source=Source.AUTOMATIC, reason="",
            detail=f"{cause}; republished version {head.state_version} (global {row.level}).",
            version=head.state_version,
        )


def record_alert(*, scope: L.ScopeRef | str, actor: str, detail: str, reason: str = "") -> Event:
    """Record an alert (a broker run that cannot finish, a client that did not obey)."""
    return _record(action=Action.ALERT, outcome=Outcome.RECORDED, scope=_parse_scope(scope),
                   actor=Actor(actor), source=Source.AUTOMATIC, detail=detail, reason=reason)


def verify_audit_chain() -> AuditReport:
    """Walk the event chain in order. Reports the first event that was changed, removed
    or inserted: a gap in `seq`, a broken link, a hash that no longer matches, or a
    tip that disagrees with the audit head."""
    expected_prev = GENESIS_HASH
    expected_seq = 1
    checked = 0
    for event in Event.objects.order_by("seq").iterator(chunk_size=2000):
        if event.seq != expected_seq:
            return AuditReport(False, checked, expected_seq,
                               f"event #{expected_seq} is missing (next stored event is #{event.seq})")
        if event.prev_hash != expected_prev:
            return AuditReport(False, checked, event.seq,
                               f"event #{event.seq} does not link to event #{event.seq - 1}")
        if event.compute_hash() != event.hash:
            return AuditReport(False, checked, event.seq,
                               f"event #{event.seq} was changed after it was written")
        expected_prev = event.hash
        expected_seq += 1
        checked += 1
    head = AuditHead.objects.filter(pk=1).first()
    last_seq = head.last_seq if head else 0
    if last_seq != checked:
        return AuditReport(False, checked, checked + 1,
                           f"the chain ends at event #{checked} but {last_seq} events were written; "
                           f"event #{checked + 1} onwards was removed")
    if head and head.last_hash != expected_prev:
        return AuditReport(False, checked, checked, f"event #{checked} does not match the chain head")
    return AuditReport(True, checked)
