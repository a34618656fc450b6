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

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.db import IntegrityError, transaction

from . import clock
from . import levels as L
from .models import GENESIS_HASH, Action, AuditHead, Event, Outcome, Scope, Source
from .policy import kill_switch_policy
from .signals import event_committed

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
        unit = "minute" if self.remaining_minutes == 1 else "minutes"
        self.short_message = f"Kill switch cooldown active. {self.remaining_minutes} {unit} remaining."
        super().__init__(
            f"Kill switch cooldown active. {self.remaining_minutes} {unit} remaining "
            f"(cooldown: {cooldown_minutes:g} minutes)."
        )


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
    event: Event
    cooldown_until: datetime | None
    version: int
    message: str

    @property
    def at(self) -> datetime:
        return self.event.created_at


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
        try:
            with transaction.atomic():
                Scope.objects.create(kind=ref.kind, key=ref.key)
        except IntegrityError:
            pass  # created concurrently; lock the winner's row
        row = Scope.objects.select_for_update().get(kind=ref.kind, key=ref.key)
    return row


def _append_event(head: AuditHead, *, changed: bool = False, **fields: Any) -> Event:
    """Append one event to the chain. The caller holds the head lock inside a transaction."""
    event = Event(seq=head.last_seq + 1, prev_hash=head.last_hash, created_at=clock.now(), **fields)
    event.hash = event.compute_hash()
    event.save(force_insert=True)
    head.last_seq = event.seq
    head.last_hash = event.hash
    head.save(update_fields=["last_seq", "last_hash", "state_version"])
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
    try:
        distribution.publish_event(event, state_changed=changed)
    except Exception:  # Redis down: the reconciler heals it; the DB already has the truth
        logger.warning("could not publish event to Redis", exc_info=True, extra={"seq": event.seq})
    for receiver, result in event_committed.send_robust(sender=Event, event=event, changed=changed):
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


def _refuse(error: KillSwitchError, *, attempted: str, scope: L.ScopeRef | str | None, actor: Actor,
            source: str, reason: str = "", requested_level: str = "",
            client_address: str | None = None) -> KillSwitchError:
    """Record a refused attempt and return the error (with its event) for the caller to raise."""
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
            refusal = CooldownActive(
                remaining_seconds=row.cooldown_remaining_seconds(now),
                cooldown_minutes=policy.cooldown_minutes, cooldown_until=row.cooldown_until,
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
                row.cooldown_until = now + timedelta(minutes=minutes)
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
        if not actor.may("activate"):
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
    return _transition(ref=ref, target=level, actor=actor, source=source, reason=reason,
                       action=Action.ACTIVATE, client_address=client_address,
                       cooldown_minutes=drill_cooldown_minutes)


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
        if not actor.may("deactivate"):
            raise PermissionRefused(
                f"{actor.name} may not deactivate the kill switch; the risk_officer role is required."
            )
    except KillSwitchError as error:
        raise _refuse(error, attempted="deactivate", scope=locals().get("ref", scope), actor=actor,
                      source=source, reason=str(reason or ""), requested_level=L.RUNNING,
                      client_address=client_address) from None
    return _transition(ref=ref, target=L.RUNNING, actor=actor, source=source, reason=reason,
                       action=Action.DEACTIVATE, client_address=client_address)


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
    try:
        result = _transition(
            ref=L.ScopeRef(L.GLOBAL), target=level, actor=actor, source=Source.REDIS,
            reason=f"redis-cli SET trading_switch {observed.strip()}", action=Action.OUT_OF_BAND,
            client_address=None, revert_on_cooldown=True,
        )
    except CooldownActive as refusal:
        return refusal.event
    return result.event


def record_restored(*, detail: str) -> Event:
    """Record that Redis had lost the state and the reconciler republished it."""
    with transaction.atomic():
        row = _lock_scope(L.ScopeRef(L.GLOBAL))
    return _record(action=Action.RESTORED, outcome=Outcome.APPLIED, scope=L.ScopeRef(L.GLOBAL),
                   actor=Actor(SYSTEM_RECONCILER), source=Source.AUTOMATIC, detail=detail,
                   previous_level=row.level, new_level=row.level)


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
