"""Activating and deactivating the switch: the cooldown rule and the transition contract.

One contract for every caller (API, admin, CLI, chat, breakers, reconciler):
`activate()` / `deactivate()` return a TransitionResult that always says what was
committed and what is pending — `at`, `reason`, `version` and `message` are always
set; `seq` is the audit event's number, or None with `pending_audit` when the
database was unavailable and the escalation went to Redis (audited when it is back) —
or raise one typed error (services.errors.KillSwitchError), whose refusal is audited.

Guarantees:
- A transition and its audit event are written in one transaction, under a row lock
  on the scope (and on the audit head, which serializes the hash chain); Redis,
  Channels, Celery and notifications are touched only after commit (services.audit).
- Repeating a request is a no-op that answers correctly ("already at halt"), with
  the time and reason of the level in force.
- Never refuse a stop: an escalation whose database write fails takes the Redis path.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError

from killswitch import domain as L
from killswitch.models import Action, Outcome, Scope
from killswitch.policy import kill_switch_policy
from killswitch.runtime import clock

from .audit import append_event, bounded_transaction, lock_head, lock_scope
from .authorization import (
    ACTIVATE,
    DEACTIVATE,
    Actor,
    lowering_refused_message,
    missing_role_message,
    permission_for_change,
)
from .errors import (
    CooldownActive,
    DatabaseUnavailable,
    InvalidRequest,
    KillSwitchError,
    PermissionRefused,
)
from .refusals import check_reason, check_source, parse_scope, refuse


@dataclass(frozen=True)
class TransitionResult:
    """What a transition did, complete whether its audit event committed or is pending."""

    scope: str
    changed: bool
    previous_level: str  # "" when unknown: the database was unavailable (pending_audit)
    level: str
    at: datetime  # when this change was made; for a no-op, when the level in force was set
    reason: str  # this change's reason; for a no-op, the reason of the level in force
    cooldown_until: datetime | None
    version: int
    message: str
    seq: int | None  # the audit event; None only while pending_audit
    # True when the database was down: the level is in Redis (every client obeys) and the
    # audit event will be written by the reconciler when the database is back.
    pending_audit: bool = False


def _cooldown_refusal(row: Scope, ref: L.ScopeRef, now: datetime) -> CooldownActive:
    # The cooldown this scope actually got (a drill's may be shorter than the policy's):
    # `since` is the escalation that started it.
    started = (row.cooldown_until - row.since).total_seconds() / 60
    return CooldownActive(
        remaining_seconds=row.cooldown_remaining_seconds(now),
        cooldown_minutes=started if started > 0 else kill_switch_policy().cooldown_minutes,
        cooldown_until=row.cooldown_until, scope=str(ref))


# A resume is never urgent: it waits for a busy database this long (an escalation waits
# KILLSWITCH_DB_LOCK_TIMEOUT_MS, then takes the Redis path).
RESUME_LOCK_TIMEOUT_MS = 30_000


def transition(*, ref: L.ScopeRef, target: str, actor: Actor, source: str, reason: str, action: str,
               client_address: str | None, revert_on_cooldown: bool = False,
               cooldown_minutes: float | None = None, lock_timeout_ms: int | None = None,
               note: str = "") -> TransitionResult:
    """Move one scope to `target` under its row lock, applying the cooldown rule.

    Exactly one event is appended, in the same transaction: the change (applied), the
    no-op, or the refusal. Escalation: always allowed; restarts the scope's cooldown.
    De-escalation or resume: needs the deactivate permission and an expired cooldown,
    else PermissionRefused or CooldownActive is raised once the refusal has committed.
    Raises DatabaseError when the database fails (nothing was committed).
    """
    refusal: KillSwitchError | None = None
    with bounded_transaction(lock_timeout_ms):
        row = lock_scope(ref)
        head = lock_head()
        now = clock.now()
        current = row.level
        common = dict(
            action=action, scope_kind=ref.kind, scope_key=ref.key, requested_level=target,
            actor=actor.name[:150], actor_user_id=actor.user_id, source=source, reason=reason,
            client_address=client_address or None, previous_level=current,
        )
        if target == current:
            message = f"{ref} is already at {current}"
            event = append_event(head, outcome=Outcome.NOOP, new_level=current, version=head.state_version,
                                 detail=message, **common)
            return TransitionResult(str(ref), False, current, current, row.since, row.reason,
                                    row.cooldown_until, row.version, message, event.seq)
        needed = permission_for_change(current, target)
        if needed == DEACTIVATE and not actor.may(DEACTIVATE):
            refusal = PermissionRefused(lowering_refused_message(actor, str(ref), current, target))
            common["action"] = Action.REFUSED
        elif needed == DEACTIVATE and row.cooldown_remaining_seconds(now) > 0:
            refusal = _cooldown_refusal(row, ref, now)
            common["action"] = Action.COOLDOWN_VIOLATION
        if refusal is not None:
            refusal.event = append_event(
                head, outcome=Outcome.REVERTED if revert_on_cooldown else Outcome.REFUSED,
                new_level=current, version=head.state_version, detail=f"{action}: {refusal.message}", **common)
        else:
            head.state_version += 1
            row.level, row.reason, row.actor, row.source = target, reason, actor.name[:150], source
            row.since, row.version = now, head.state_version
            if needed == ACTIVATE:
                minutes = kill_switch_policy().cooldown_minutes if cooldown_minutes is None else cooldown_minutes
                # Restart the cooldown, but never end one that is running sooner (a drill's
                # short cooldown, or a lowered policy, must not shorten a real one).
                row.cooldown_until = max(row.cooldown_until or now, now + timedelta(minutes=minutes))
            row.save()
            message = f"{ref} is now {target} (was {current})"
            if needed == ACTIVATE and cooldown_minutes is not None:
                message += f"; drill cooldown {cooldown_minutes:g} minutes"
            message += note
            event = append_event(head, changed=True, outcome=Outcome.APPLIED, new_level=target,
                                 version=head.state_version, detail=message, **common)
            return TransitionResult(str(ref), True, current, target, event.created_at, reason,
                                    row.cooldown_until, row.version, message, event.seq)
    raise refusal  # its event committed with the block above


def _refused(error: KillSwitchError, *, attempted: str, scope: Any, actor: Actor, source: str,
             reason: Any, requested_level: str, client_address: str | None) -> KillSwitchError:
    return refuse(error, attempted=attempted, scope=scope, actor=actor, source=source,
                  reason=str(reason or ""), requested_level=requested_level, client_address=client_address)


def activate(*, scope: L.ScopeRef | str | None, level: str | None, reason: str, actor: Any,
             source: str, client_address: str | None = None,
             drill_cooldown_minutes: float | None = None) -> TransitionResult:
    """Raise `scope` to `level` (default: the policy's default_level, `halt`).

    `drill_cooldown_minutes` shortens this activation's cooldown for a kill-switch drill
    (`killswitch drill`); it may only shorten, never lengthen, and the event says so.

    Raises InvalidRequest (bad scope/level/reason), PermissionRefused, CooldownActive
    (when `level` is below the current level inside the cooldown), DatabaseUnavailable
    (neither the database nor Redis could take it). Each refusal is audited.
    """
    from .outage import escalate_without_database

    check_source(source)
    actor = Actor.of(actor)
    requested = "" if level is None else str(level)
    ref: L.ScopeRef | Any = scope
    try:
        ref = parse_scope(scope)
        level = level or kill_switch_policy().default_level
        if not isinstance(level, str) or level not in L.ACTIVE_LEVELS:
            raise InvalidRequest(
                f"Invalid level {level!r}; expected one of {', '.join(L.ACTIVE_LEVELS)}.", field="level")
        reason = check_reason(reason if isinstance(reason, str) else None, required=True)
        try:
            permitted = actor.may(ACTIVATE)
        except DatabaseError:
            raise DatabaseUnavailable(
                "The kill switch database is unavailable, so your permissions cannot be checked: "
                "nothing was changed. On the server, `manage.py killswitch activate` or "
                "`redis-cli SET trading_switch halt` still stop trading at once and are audited "
                "when the database is back.") from None
        if not permitted:
            raise PermissionRefused(missing_role_message(actor.name, ACTIVATE))
        policy_minutes = kill_switch_policy().cooldown_minutes
        if drill_cooldown_minutes is not None and not 0 <= drill_cooldown_minutes <= policy_minutes:
            raise InvalidRequest(
                f"Drill cooldown {drill_cooldown_minutes!r} minutes is invalid; expected 0 to the "
                f"policy's {policy_minutes:g} minutes.", field="cooldown")
    except KillSwitchError as error:
        raise _refused(error, attempted="activate", scope=ref, actor=actor, source=source, reason=reason,
                       requested_level=requested, client_address=client_address) from None
    try:
        return transition(ref=ref, target=level, actor=actor, source=source, reason=reason,
                          action=Action.ACTIVATE, client_address=client_address,
                          cooldown_minutes=drill_cooldown_minutes)
    except DatabaseError:
        # The actor's permission was confirmed above; trading must still stop.
        return escalate_without_database(ref=ref, level=level, reason=reason, actor=actor, source=source,
                                         client_address=client_address)


def deactivate(*, scope: L.ScopeRef | str | None, actor: Any, source: str, reason: str = "",
               client_address: str | None = None, request: int | None = None) -> Any:
    """Resume trading on `scope` (level `running`), once its cooldown has expired, as the
    resume rules say (services.resumes): a TransitionResult when it resumed (or was
    already running), a ResumeRequested when a second risk officer must approve.
    `request` approves that resume request explicitly.

    Raises InvalidRequest, PermissionRefused, CooldownActive, ResumeRefused,
    DatabaseUnavailable (resuming needs the database, where the cooldown is kept); each
    refusal is audited.
    """
    from .resumes import resume

    check_source(source)
    actor = Actor.of(actor)
    ref: L.ScopeRef | Any = scope
    unavailable = ("The kill switch database is unavailable: nothing was changed. Resuming needs the "
                   "database, where the cooldown is kept; try again when it is back.")
    try:
        ref = parse_scope(scope)
        reason = check_reason(reason if isinstance(reason, str) else None, required=False)
        try:
            permitted = actor.may(DEACTIVATE)
        except DatabaseError:
            raise DatabaseUnavailable(unavailable) from None
        if not permitted:
            raise PermissionRefused(missing_role_message(actor.name, DEACTIVATE))
        try:
            return resume(ref=ref, actor=actor, source=source, reason=reason, client_address=client_address,
                          request_id=request)
        except DatabaseError:
            raise DatabaseUnavailable(unavailable) from None
    except KillSwitchError as error:
        if error.event is not None or error.counted_as_repeat:  # recorded where it was decided
            raise
        raise _refused(error, attempted="deactivate", scope=ref, actor=actor, source=source, reason=reason,
                       requested_level=L.RUNNING, client_address=client_address) from None
