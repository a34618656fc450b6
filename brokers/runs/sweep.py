"""The sweep: the backstop while a scope is halted (see brokers/cli/sweep.py for the loop)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from killswitch import domain as L
from killswitch.models import Event, Scope

from ..adapters import SWEEP, adapter_for, session_key
from ..adapters.base import BrokerAdapter, BrokerError, BrokerScope, WorkingOrder
from ..config import brokers_config
from ..models import TERMINAL_STATES, ActionOutcome, BrokerRun, RunKind, RunState
from . import following, planning
from .cancelling import apply_cancel_results, is_own_closing_order, record_pending
from .lease import LeaseKeeper, claim, release, worker_token
from .planning import BROKER_LEVELS

logger = logging.getLogger("brokers")


@dataclass
class SweepReport:
    runs: list[BrokerRun]
    resumed: list[int]
    errors: list[str]
    started: list[BrokerRun] = field(default_factory=list)  # runs a lost hook never created


MISSED_EVENT_WINDOW = timedelta(minutes=15)


def ensure_runs_for_missed_events() -> list[BrokerRun]:
    """Runs for halt/kill transitions whose after-commit hook never created them (the
    process died between commit and hook, or the hook's database write failed).

    Only the newest applied event of each scope counts, and only while that scope is
    still at that level: a halt that has since been lifted must not cancel orders
    placed after the resume. Idempotent (runs are unique per event and account).
    """
    since = timezone.now() - MISSED_EVENT_WINDOW
    current = {r.label: r.level for r in Scope.objects.all()}
    newest: dict[str, Event] = {}
    for event in (Event.objects.filter(created_at__gte=since, outcome="applied")
                  .exclude(new_level="").order_by("seq")):
        newest[event.scope_label] = event
    started: list[BrokerRun] = []
    for scope, event in newest.items():
        if event.new_level not in BROKER_LEVELS or current.get(scope) != event.new_level:
            continue
        if BrokerRun.objects.filter(kind=RunKind.SWITCH, event_seq=event.seq).exists():
            continue
        logger.warning("event #%s had no broker runs; starting them now", event.seq,
                       extra={"seq": event.seq, "scope": scope})
        started += planning.start_runs_for_event(event=event)
    return started


def sweep_once(*, adapters: dict[str, BrokerAdapter] | None = None,
               still_leading: Callable[[], bool] | None = None) -> SweepReport:
    """One pass: in every account, cancel the working orders whose level in force is
    halt or kill (an order placed anyway, or a run no live worker holds), recorded as
    a sweep run; end runs whose scope was lifted (superseded); re-enqueue runs nobody
    holds; alert on runs no worker has taken in time.

    An account where a live worker holds a switch run's lease is left to that run.
    Elsewhere the sweep takes the unfinished runs' leases for the moment it cancels,
    so a worker arriving meanwhile waits seconds instead of cancelling the same orders.
    `adapters` caches one adapter per broker session across passes (the loop keeps
    its IB sessions open; accounts of one IB connection share one). `still_leading`
    (the loop's `lease.renew`) is asked right before each cancel: a sweep frozen in the
    middle of a pass and woken after another took over stops there, cancelling nothing.
    """
    adapters = {} if adapters is None else adapters
    report = SweepReport([], [], [])
    report.resumed = resume_stale_runs()
    levels = following.scope_levels()
    if not any(level in BROKER_LEVELS for level in levels.values()):
        return report
    report.started += ensure_runs_for_missed_events()
    token = f"sweep:{worker_token()}"
    for account in sorted(brokers_config().accounts):
        held = _hold_runs(account, token)
        if held is None:
            continue  # a live worker is on it, or is about to take it
        keepers = [LeaseKeeper(run, seconds=SWEEP_LEASE_SECONDS).__enter__() for run in held]
        try:
            key = session_key(account)  # accounts on one IB connection share its sweep session
            adapter = adapters.get(key) or adapters.setdefault(key, adapter_for(account, purpose=SWEEP))
            orders = [o for o in adapter.working_orders(BrokerScope(account)) if not is_own_closing_order(o)]
            groups: dict[tuple[str, str], list[WorkingOrder]] = {}
            for order in orders:
                level, scope = following.level_for(levels, account=account, strategy=order.strategy,
                                                   instrument=order.instrument)
                if level in BROKER_LEVELS:
                    groups.setdefault((scope, level), []).append(order)
            for (scope_label, level), found in groups.items():
                if still_leading is not None and not still_leading():
                    report.errors.append(f"{account}: no longer leading (the sweep lease is another's): "
                                         f"{len(found)} order(s) left to the leader")
                    return report
                report.runs.append(_sweep_run(adapter, account, scope_label, level, found))
        except BrokerError as exc:
            broken = adapters.pop(session_key(account), None)
            if broken is not None:
                broken.close()  # its session (the sweep's client id) must not linger
            report.errors.append(f"{account}: {exc.message}")
        finally:
            for keeper in keepers:
                keeper.__exit__()
            for run in held:
                release(run)
    return report


# The sweep holds a run's lease (renewed) only while it cancels beside it: a worker
# that comes for the run meanwhile retries this soon after.
SWEEP_LEASE_SECONDS = 3.0


def _hold_runs(account: str, token: str) -> list[BrokerRun] | None:
    """Take the leases of `account`'s unfinished switch runs; None (and nothing held)
    when a live worker holds one of them or a worker may still take a new one (not
    overdue yet: sweeping beside it would only race it)."""
    held: list[BrokerRun] = []
    now = timezone.now()
    unfinished = BrokerRun.objects.filter(kind=RunKind.SWITCH, account=account).exclude(state__in=TERMINAL_STATES)
    # Expected soon: a retry waiting for its time, or a new run within its first seconds.
    # (A run the sweep re-enqueued was overdue already: that one is swept beside.)
    if unfinished.filter(lease_until__isnull=True).filter(
            Q(due_at__gt=now) | Q(started_at__isnull=True, created_at__gte=now - STALE_GRACE)).exists():
        return None
    for run_id in unfinished.values_list("pk", flat=True):
        claimed, run = claim(run_id, token, seconds=SWEEP_LEASE_SECONDS)
        if claimed and run is not None:
            held.append(run)
        elif run is not None and not run.finished:
            for other in held:
                release(other)
            return None
    return held
def _sweep_run(adapter: BrokerAdapter, account: str, scope_label: str, level: str,
               orders: list[WorkingOrder]) -> BrokerRun:
    ref = L.ScopeRef.parse(scope_label)
    now = timezone.now()
    run = BrokerRun.objects.create(
        kind=RunKind.SWEEP, scope_kind=ref.kind, scope_key=ref.key, level=level, account=account,
        broker=adapter.kind, state=RunState.CANCELLING, attempts=1, started_at=now,
        notes=f"sweep: {len(orders)} working order(s) appeared in {scope_label} while at {level}",
    )
    if not adapter.atomic_cancels:
        record_pending(run, orders)
    result = adapter.cancel_all(BrokerScope(account), orders, global_scope=False)
    apply_cancel_results(run, result.results)
    errors = [r for r in result.results if r.outcome == ActionOutcome.ERROR]
    state = RunState.FAILED if errors else RunState.COMPLETED
    BrokerRun.objects.filter(pk=run.pk).update(state=state, finished_at=timezone.now(), updated_at=timezone.now(),
                                                error="; ".join(r.detail for r in errors)[:10_000])
    run.refresh_from_db()
    logger.warning("sweep cancelled %s order(s) in %s (%s) for account %s", len(orders), scope_label, level,
                   account)
    return run


STALE_GRACE = timedelta(seconds=3)


def resume_stale_runs() -> list[int]:
    """Unfinished runs nobody holds although they are overdue (a worker killed or
    stopped mid-run, whose lease expired, or a message no worker took): a run whose
    scope was lifted ends superseded here (the same rule a run applies before each
    step); any other is enqueued again, and one overdue past
    brokers.sweep.stall_alert_seconds raises an alert once. The run's lease and
    idempotency make a duplicate delivery harmless."""
    from .execution import supersede

    now = timezone.now()
    candidates = list(
        BrokerRun.objects.filter(kind=RunKind.SWITCH).exclude(state__in=TERMINAL_STATES)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .filter(Q(due_at__isnull=True) | Q(due_at__lt=now - STALE_GRACE))
    )
    if not candidates:
        return []
    levels = following.scope_levels()
    stall = timedelta(seconds=brokers_config().sweep.stall_alert_seconds)
    resumed = []
    for run in candidates:
        allowed = following.allowed_for(run, levels)
        if allowed.superseded:
            claimed, current = claim(run.pk, f"sweep:{worker_token()}", seconds=SWEEP_LEASE_SECONDS)
            if claimed and current is not None:
                supersede(current, allowed, adapter=None)
            continue
        if run.stall_alert_seq is None and run.updated_at < now - stall:
            _stall_alert(run, now)
        planning.enqueue_run(run_id=run.pk)  # sets due_at: the next pass does not enqueue it again at once
        resumed.append(run.pk)
    return resumed


def _stall_alert(run: BrokerRun, now) -> None:
    """Once per run: no worker has taken it in time. The sweep keeps cancelling in
    halted scopes meanwhile, but only a worker closes positions."""
    from killswitch.services import record_alert

    waited = (now - run.updated_at).total_seconds()
    try:
        event = record_alert(
            scope=L.ScopeRef(run.scope_kind, run.scope_key), actor="system:brokers",
            detail=(f"broker run {run.pk} ({run.level}, account {run.account}) has not been worked for "
                    f"{waited:.0f}s: is a broker worker running (celery -Q broker)? The sweep cancels "
                    "working orders in halted scopes meanwhile; positions are only closed by a worker."))
    except Exception:
        logger.exception("could not record the stall alert for broker run %s", run.pk)
        return
    BrokerRun.objects.filter(pk=run.pk).update(stall_alert_seq=event.seq)
