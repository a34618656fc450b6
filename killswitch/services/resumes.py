"""Resuming is a decision: one risk officer, or two, and a look at what is still open.

`kill_switch.resume_approvals: 1` (the default): a risk officer's deactivate after the
cooldown resumes. With `2`, it becomes a resume request (audited); a *different* risk
officer's deactivate (or `approve`) of the same scope within `resume_request_minutes`
resumes, and the resume's audit event names both. The requester approving their own
request, an expired request, a person without the risk_officer role, or an approval
for another scope are refused and audited. A request is for the level the scope was at
when it was asked: once the scope changes (a new activation), it is withdrawn.

`kill_switch.resume_requires_clean_runs: true` refuses a resume while a broker run in
the scope is unfinished, or failed with no later run completing on its account.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from killswitch import domain as L
from killswitch.models import Action, Outcome, ResumeRequest, ResumeState, Scope
from killswitch.policy import kill_switch_policy
from killswitch.runtime import clock

from .audit import append_event, bounded_transaction, lock_head, lock_scope
from .authorization import Actor
from .errors import KillSwitchError, PermissionRefused
from .transitions import RESUME_LOCK_TIMEOUT_MS, TransitionResult, transition


class ResumeRefused(KillSwitchError):
    """A resume the rules of resuming refuse (own request, expired, runs not clean)."""

    code = "resume_refused"


@dataclass(frozen=True)
class ResumeRequested:
    """A resume that waits for a second risk officer."""

    request_id: int
    scope: str
    level: str
    requested_by: str
    requested_at: datetime
    expires_at: datetime
    seq: int
    message: str


def _same_person(request: ResumeRequest, actor: Actor) -> bool:
    if actor.user_id is not None or request.requested_by_id is not None:
        return actor.user_id == request.requested_by_id
    return actor.name == request.requested_by


def _unclean_runs(ref: L.ScopeRef) -> list[str]:
    from killswitch.selectors.open_items import open_in_scope

    runs = open_in_scope(ref).get("runs") or {}
    if "error" in runs:
        return [runs["error"]]
    return [f"run {r['id']} ({r['account']}, {r['state']})" for r in runs.get("unfinished", []) + runs.get("failed", [])]


def _event(head, ref: L.ScopeRef, actor: Actor, source: str, reason: str, client_address: str | None,
           level: str, detail: str, outcome: str = Outcome.RECORDED, action: str = Action.RESUME_REQUEST):
    return append_event(head, action=action, outcome=outcome, scope_kind=ref.kind, scope_key=ref.key,
                        previous_level=level, new_level=level, requested_level=L.RUNNING, actor=actor.name[:150],
                        actor_user_id=actor.user_id, source=source, reason=reason,
                        client_address=client_address or None, detail=detail, version=head.state_version)


def resume(*, ref: L.ScopeRef, actor: Actor, source: str, reason: str, client_address: str | None,
           request_id: int | None = None) -> TransitionResult | ResumeRequested:
    """Resume `ref` as the policy says: at once (one approval), or by request and a second
    risk officer's approval. `request_id` (an explicit approve) must name the open request
    of this scope. The caller checked the actor's deactivate permission. Raises
    CooldownActive, PermissionRefused, ResumeRefused (each audited)."""
    policy = kill_switch_policy()
    if policy.resume_requires_clean_runs:
        blocking = _unclean_runs(ref)
        if blocking:
            raise _refuse(ref, actor, source, reason, client_address, ResumeRefused(
                f"Resume of {ref} refused: kill_switch.resume_requires_clean_runs is on and broker runs in the "
                f"scope are not clean: {', '.join(blocking[:10])}. Settle them at the broker first."))
    if policy.resume_approvals < 2 and request_id is None:
        return transition(ref=ref, target=L.RUNNING, actor=actor, source=source, reason=reason,
                          action=Action.DEACTIVATE, client_address=client_address,
                          lock_timeout_ms=RESUME_LOCK_TIMEOUT_MS)
    refusal: KillSwitchError | None = None
    with bounded_transaction(RESUME_LOCK_TIMEOUT_MS):
        row = lock_scope(ref)
        now = clock.now()
        if row.level == L.RUNNING or row.cooldown_remaining_seconds(now) > 0:
            # Already running (a no-op), or inside the cooldown (the seed's refusal, whose
            # event must commit with this block: it is raised once the block is left).
            try:
                return transition(ref=ref, target=L.RUNNING, actor=actor, source=source, reason=reason,
                                  action=Action.DEACTIVATE, client_address=client_address)
            except KillSwitchError as error:
                refusal = error
        request = None if refusal is not None else _open_request(ref, row, now)
        head = lock_head()
        if refusal is not None:
            pass
        elif request_id is not None and (request is None or request.pk != request_id):
            asked = ResumeRequest.objects.filter(pk=request_id).first()
            why = (f"there is no resume request #{request_id}" if asked is None else
                   f"resume request #{request_id} is for {asked.scope_label}, not {ref}" if asked.scope_label != str(ref)
                   else f"resume request #{request_id} is {asked.get_state_display().lower()}")
            refusal = ResumeRefused(f"Approval refused: {why}.")
        elif request is None:
            request = _new_request(ref, row, actor, source, reason, client_address, head, now, policy)
            return ResumeRequested(request.pk, str(ref), row.level, request.requested_by, request.requested_at,
                                   request.expires_at, request.request_seq,
                                   f"resume of {ref} requested by {request.requested_by}; waiting for a second risk "
                                   f"officer until {request.expires_at:%H:%M:%S} UTC")
        elif _same_person(request, actor):
            refusal = ResumeRefused(
                f"{actor.name} asked for this resume (request #{request.pk}); a different risk officer must "
                "approve it.")
        if refusal is not None:
            if refusal.event is None:
                refusal.event = _event(head, ref, actor, source, reason, client_address, row.level,
                                       f"approve resume: {refusal.message}", Outcome.REFUSED, Action.REFUSED)
        else:
            note = (f"; approved resume request #{request.pk} of {request.requested_by} "
                    f"(asked {request.requested_at:%Y-%m-%d %H:%M:%S} UTC, event #{request.request_seq})")
            result = transition(ref=ref, target=L.RUNNING, actor=actor, source=source, reason=reason,
                                action=Action.DEACTIVATE, client_address=client_address, note=note)
            ResumeRequest.objects.filter(pk=request.pk).update(
                state=ResumeState.APPROVED, approved_by=actor.name[:150], approved_by_id=actor.user_id,
                closed_at=now, resume_seq=result.seq)
            return result
    raise refusal


def _open_request(ref: L.ScopeRef, row: Scope, now: datetime) -> ResumeRequest | None:
    """The scope's open request, after closing those that expired or whose scope changed."""
    open_rows = list(ResumeRequest.objects.select_for_update().filter(
        scope_kind=ref.kind, scope_key=ref.key, state=ResumeState.OPEN).order_by("-requested_at"))
    current = None
    for request in open_rows:
        if request.expires_at <= now:
            request.state = ResumeState.EXPIRED
        elif request.scope_version != row.version:
            request.state = ResumeState.WITHDRAWN
        elif current is None:
            current = request
            continue
        else:
            request.state = ResumeState.WITHDRAWN
        request.closed_at = now
        request.save(update_fields=["state", "closed_at"])
    return current


def _new_request(ref, row, actor, source, reason, client_address, head, now, policy) -> ResumeRequest:
    expires = now + timedelta(minutes=policy.resume_request_minutes)
    event = _event(head, ref, actor, source, reason, client_address, row.level,
                   f"resume of {ref} (at {row.level}) requested by {actor.name}; a different risk officer must "
                   f"approve it before {expires:%Y-%m-%d %H:%M:%S} UTC (kill_switch.resume_approvals: 2)")
    return ResumeRequest.objects.create(
        scope_kind=ref.kind, scope_key=ref.key, level=row.level, scope_version=row.version, reason=reason,
        requested_by=actor.name[:150], requested_by_id=actor.user_id, requested_at=now, expires_at=expires,
        request_seq=event.seq)


def _refuse(ref, actor, source, reason, client_address, error: KillSwitchError) -> KillSwitchError:
    from .refusals import refuse

    return refuse(error, attempted="deactivate", scope=ref, actor=actor, source=source, reason=reason,
                  requested_level=L.RUNNING, client_address=client_address)


def open_requests() -> list[dict[str, Any]]:
    """Open (unexpired) resume requests, newest first, for the Risk page, the API and the CLI."""
    now = clock.now()
    return [{"request": r.pk, "scope": r.scope_label, "level": r.level, "requested_by": r.requested_by,
             "requested_at": r.requested_at, "expires_at": r.expires_at, "reason": r.reason, "seq": r.request_seq}
            for r in ResumeRequest.objects.filter(state=ResumeState.OPEN, expires_at__gt=now)]


__all__ = ["PermissionRefused", "ResumeRefused", "ResumeRequested", "open_requests", "resume"]
