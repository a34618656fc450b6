"""What the reconciler decides to record: out-of-band writes of `trading_switch`,
a Redis that lost (or garbled) the state, and alerts.

The reconciler (killswitch.distribution.reconciler) compares Redis with the database
and calls one of these; each is judged under the locks, against exactly the state
the reconciler saw (`expected_version`), so a change that committed meanwhile is
never mistaken for an out-of-band write.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F

from killswitch import domain as L
from killswitch.models import Action, Event, Outcome, Scope, Source

from .audit import append_event, lock_head, lock_scope, record
from .authorization import REDIS_CLI_ACTOR, Actor
from .errors import KillSwitchError
from .refusals import parse_scope
from .transitions import transition

SYSTEM_RECONCILER = "system:reconciler"


def reconcile_out_of_band(*, observed: str | None, expected_version: int) -> Event | None:
    """Turn an out-of-band write of `trading_switch` into an audited event.

    Called when Redis' `trading_switch` differs from the global level while Redis is
    otherwise at `expected_version`. Escalations are applied (source `redis`, so they
    get the same broker work as any other); a resume or de-escalation inside the
    cooldown is reverted and recorded as a violation; a value that is not a level is
    reverted and recorded. Returns the event, or None when the state moved meanwhile
    (the next round looks again).
    """
    actor = Actor.system(REDIS_CLI_ACTOR)
    with transaction.atomic():
        row = lock_scope(L.ScopeRef(L.GLOBAL))
        head = lock_head()
        if head.state_version != expected_version:
            return None
        level = L.normalize_level(observed)
        if level is None:
            shown = (observed or "")[:200]
            return append_event(
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
            result = transition(
                ref=L.ScopeRef(L.GLOBAL), target=level, actor=actor, source=Source.REDIS,
                reason=f"redis-cli SET trading_switch {observed.strip()}", action=Action.OUT_OF_BAND,
                client_address=None, revert_on_cooldown=True,
            )
        except KillSwitchError as refusal:  # cooldown, or redis_resume off
            return refusal.event  # caught inside the block: the refusal event commits
        return Event.objects.get(seq=result.seq)


def restore_after_loss(*, observed: str | None, expected_version: int,
                       started_empty: bool = False) -> Event | None:
    """Redis lost the state (restart, FLUSHALL): decide what `trading_switch`, if
    anything was written into the emptied Redis, means.

    Only an escalation is honoured (as an audited out-of-band change): anything else is
    not a decision to resume — the seed's own loop writes `running` when it finds the key
    missing — so the database state is restored and the finding recorded: as the first
    start (no event yet), a restart (`started_empty`: the stack started a new, empty
    Redis itself), or a loss.
    """
    found = L.normalize_level(observed)
    current = Scope.objects.filter(kind=L.GLOBAL, key="").values_list("level", flat=True).first() or L.RUNNING
    if found is not None and L.SEVERITY[found] > L.SEVERITY[current]:
        return reconcile_out_of_band(observed=observed, expected_version=expected_version)
    seen = "" if observed is None else f" (found trading_switch={observed[:50]!r})"
    if not Event.objects.exists():
        return record_restored(cause=f"first start: the kill switch state was published to Redis{seen}")
    if started_empty:
        return record_restored(cause=f"restart: the stack started an empty Redis{seen}")
    return record_restored(cause=f"Redis had lost the kill switch state{seen}")


def record_restored(*, cause: str) -> Event:
    """Record that Redis had lost (or garbled) the state and the reconciler republishes it.

    The detail names the version and global level read under the locks, i.e. exactly
    what the reconciler's next snapshot publishes.
    """
    with transaction.atomic():
        row = lock_scope(L.ScopeRef(L.GLOBAL))
        head = lock_head()
        return append_event(
            head, action=Action.RESTORED, outcome=Outcome.APPLIED, scope_kind=L.GLOBAL, scope_key="",
            previous_level=row.level, new_level=row.level, requested_level="",
            actor=SYSTEM_RECONCILER, actor_user_id=None, source=Source.AUTOMATIC, reason="",
            detail=f"{cause}; republished version {head.state_version} (global {row.level}).",
            version=head.state_version,
        )


def record_alert(*, scope: L.ScopeRef | str, actor: str, detail: str, reason: str = "") -> Event:
    """Record an alert (a broker run that cannot finish, a client that did not obey)."""
    return record(action=Action.ALERT, outcome=Outcome.RECORDED, scope=parse_scope(scope),
                  actor=Actor.system(actor), source=Source.AUTOMATIC, detail=detail, reason=reason)


def unexplained_levels(rows: dict[str, tuple[str, int]]) -> dict[str, str]:
    """Scope rows (label -> (level, version)) whose level no audit event explains, mapped
    to the level the events do give (running when none): a row changed in the database
    outside the service. An applied change stamps its row with the state version of its
    event, so each row must match the applied event carrying its version."""
    versions = {version for _, version in rows.values() if version}
    explained: dict[int, tuple[str, str]] = {}
    if versions:
        for version, kind, key, level in (Event.objects.filter(version__in=versions, outcome="applied")
                                          .exclude(previous_level=F("new_level"))
                                          .values_list("version", "scope_kind", "scope_key", "new_level")):
            explained[version] = (L.label(kind, key), level)
    found: dict[str, str] = {}
    for scope, (level, version) in rows.items():
        if version == 0:
            if level != L.RUNNING:
                found[scope] = L.RUNNING
            continue
        event_scope, event_level = explained.get(version, ("", ""))
        if event_scope != scope or event_level != level:
            found[scope] = event_level if event_scope == scope else _last_level(scope)
    return found


def _last_level(scope: str) -> str:
    """The level the audit log gives a scope (its latest applied change), running if none."""
    ref = L.ScopeRef.parse(scope)
    level = (Event.objects.filter(scope_kind=ref.kind, scope_key=ref.key, outcome="applied")
             .exclude(previous_level=F("new_level")).order_by("-seq").values_list("new_level", flat=True).first())
    return level or L.RUNNING
