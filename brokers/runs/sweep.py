"""The sweep: the backstop while a scope is halted (see brokers/cli/sweep.py for the loop)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from killswitch import domain as L
from killswitch.models import Event, Scope

from ..adapters import SWEEP, adapter_for
from ..adapters.base import BrokerAdapter, BrokerError, BrokerScope, WorkingOrder
from ..config import brokers_config
from ..models import TERMINAL_STATES, ActionOutcome, BrokerRun, RunKind, RunState
from . import planning
from .cancelling import apply_cancel_results, is_own_closing_order, record_pending
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


def _halted_levels() -> dict[str, str]:
    return {r.label: r.level for r in Scope.objects.filter(level__in=BROKER_LEVELS)}


def sweep_once(*, adapters: dict[str, BrokerAdapter] | None = None) -> SweepReport:
    """One pass: in every account, cancel the working orders whose effective level is
    halt or kill (an order placed anyway), recorded as a sweep run; and re-enqueue runs
    whose worker vanished (lease expired) so they finish.

    `adapters` caches one adapter per account across passes (the loop keeps its IB
    sessions open). Accounts with a switch run in progress are left to that run.
    """
    adapters = {} if adapters is None else adapters
    report = SweepReport([], [], [])
    report.resumed = resume_stale_runs()
    levels = _halted_levels()
    if not levels:
        return report
    report.started += ensure_runs_for_missed_events()
    # Any switch run not finished (leased, pending or waiting to retry) owns its account:
    # sweeping beside it would cancel the same orders twice.
    busy = set(
        BrokerRun.objects.filter(kind=RunKind.SWITCH).exclude(state__in=TERMINAL_STATES)
        .values_list("account", flat=True)
    )
    for account in sorted(brokers_config().accounts):
        if account in busy:
            continue
        try:
            adapter = adapters.get(account) or adapters.setdefault(account, adapter_for(account, purpose=SWEEP))
            orders = [o for o in adapter.working_orders(BrokerScope(account)) if not is_own_closing_order(o)]
            groups: dict[tuple[str, str], list[WorkingOrder]] = {}
            for order in orders:
                level, scope = L.effective_level(levels, account=account, strategy=order.strategy or None,
                                                 symbol=order.symbol)
                if level in BROKER_LEVELS:
                    groups.setdefault((scope, level), []).append(order)
            for (scope_label, level), found in groups.items():
                report.runs.append(_sweep_run(adapter, account, scope_label, level, found))
        except BrokerError as exc:
            adapters.pop(account, None)
            report.errors.append(f"{account}: {exc.message}")
    return report


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
    """Re-enqueue unfinished runs nobody holds although they are overdue: a worker
    killed mid-run (its lease expired) or a message lost before a worker took it.
    The run's lease and idempotency make a duplicate delivery harmless."""
    now = timezone.now()
    candidates = (
        BrokerRun.objects.filter(kind=RunKind.SWITCH).exclude(state__in=TERMINAL_STATES)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .filter(Q(due_at__isnull=True) | Q(due_at__lt=now - STALE_GRACE))
    )
    resumed = []
    for run_id in candidates.values_list("pk", flat=True):
        planning.enqueue_run(run_id=run_id)  # sets due_at: the next pass does not enqueue it again at once
        resumed.append(run_id)
    return resumed
