"""Which runs a transition starts, and handing them to the workers.

A transition to halt or kill gets one run per account in scope, inserted in the
event's own transaction (receivers.py) and published to Celery after commit from the
after-commit lane; the sweep re-sends a run whose message was lost once it is overdue.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from killswitch import domain as L
from killswitch.models import Event
from killswitch.runtime import background

from ..adapters import broker_of
from ..adapters.base import BrokerError, BrokerScope
from ..config import brokers_config
from ..models import TERMINAL_STATES, BrokerRun, RunKind

logger = logging.getLogger("brokers")

BROKER_LEVELS = L.BROKER_LEVELS


def accounts_in_scope(scope: L.ScopeRef) -> list[str]:
    """Accounts a scope's broker work touches: one for an account scope, every
    configured account for global, strategy and symbol scopes."""
    if scope.kind == L.ACCOUNT:
        return [scope.key]
    return sorted(brokers_config().accounts)


def broker_scope(run: BrokerRun) -> BrokerScope:
    return BrokerScope(
        account=run.account,
        strategy=run.scope_key if run.scope_kind == L.STRATEGY else None,
        symbol=run.scope_key.upper() if run.scope_kind == L.SYMBOL else None,
    )


def _new_runs(event: Event) -> list[BrokerRun]:
    """Unsaved runs for a transition to halt or kill: one per account in scope, due now.
    None for other events."""
    if event.new_level not in BROKER_LEVELS or event.outcome != "applied":
        return []
    scope = L.ScopeRef(event.scope_kind, event.scope_key)
    now = timezone.now()
    runs = []
    for account in accounts_in_scope(scope):
        try:
            broker = broker_of(account)
        except BrokerError:
            broker = "unknown"  # the run fails with the reason, visibly, instead of vanishing
        runs.append(BrokerRun(kind=RunKind.SWITCH, event_seq=event.seq, account=account,
                              scope_kind=scope.kind, scope_key=scope.key, level=event.new_level,
                              broker=broker, created_at=now, updated_at=now, due_at=now))
    return runs


def insert_runs_for_new_event(*, event: Event) -> None:
    """Inside the event's own transaction (receivers.py): the event is new, so its runs
    cannot exist yet; one INSERT, and the halt and its runs commit together."""
    runs = _new_runs(event)
    if runs:
        BrokerRun.objects.bulk_create(runs)


def create_runs_for_event(*, event: Event) -> list[BrokerRun]:
    """The runs for a committed transition to halt or kill (see _new_runs). Idempotent:
    a second call returns the same rows. Used after commit when the in-transaction
    insert failed, and by the sweep for events that have none."""
    runs = _new_runs(event)
    if not runs:
        return []
    with transaction.atomic():
        # One statement; rows that exist already are left as they are.
        BrokerRun.objects.bulk_create(runs, ignore_conflicts=True)
        found = {r.account: r for r in BrokerRun.objects.filter(
            kind=RunKind.SWITCH, event_seq=event.seq, account__in=[r.account for r in runs])}
    return [found[r.account] for r in runs if r.account in found]


def start_runs_for_event(*, event: Event) -> list[BrokerRun]:
    """Create the runs for `event` (if they are not there yet) and hand each unfinished
    one to a Celery worker. A run whose message cannot be published (Redis down) stays
    pending and is enqueued by the sweep loop once it is overdue."""
    runs = create_runs_for_event(event=event)
    for run in runs:
        if not run.finished:
            enqueue_run(run_id=run.pk)
    return runs


def dispatch_runs_for_event(*, event: Event) -> list[int]:
    """After commit: hand the event's runs, created in its transaction, to the workers.

    The Celery messages go out from the after-commit lane (killswitch.runtime.background), so
    the activation answers without waiting for them; the runs are already committed,
    and a message lost with its process is re-sent by the sweep once the run is
    overdue. If the runs are missing (the in-transaction receiver failed), they are
    created here and enqueued at once. Returns the runs' ids.

    Reads ids and states only: this runs in the activation's answer, and building the
    full rows (their actions and notes) cost as much as the rest of the after-commit work."""
    runs = list(BrokerRun.objects.filter(kind=RunKind.SWITCH, event_seq=event.seq).values_list("pk", "state"))
    if not runs:
        return [run.pk for run in start_runs_for_event(event=event)]
    due = [pk for pk, state in runs if state not in TERMINAL_STATES]  # due_at was set when they were created
    if due:
        background.dispatch.submit(_publish_runs, due)
    return [pk for pk, _ in runs]


def _publish_runs(run_ids: list[int]) -> None:
    for run_id in run_ids:
        publish_run(run_id)


# Publishing must not hold up the transition's after-commit hooks when Redis is down.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.2}


def enqueue_run(*, run_id: int, countdown: float = 0) -> bool:
    """Mark the run due and publish its task. Returns False when publishing failed."""
    BrokerRun.objects.filter(pk=run_id).update(due_at=timezone.now() + timedelta(seconds=countdown))
    return publish_run(run_id, countdown)


def publish_run(run_id: int, countdown: float = 0) -> bool:
    from ..tasks import execute_run  # the task module imports this one

    try:
        execute_run.apply_async(args=[run_id], countdown=countdown or None, retry=True,
                                retry_policy=PUBLISH_RETRY)
    except Exception:  # kombu raises several connection error types
        logger.exception("could not enqueue broker run %s; the sweep loop will", run_id)
        return False
    return True
