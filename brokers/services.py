"""Every rule of the broker work: which runs a transition starts, what a run does,
how it retries, how the sweep catches orders placed anyway, and the demo data.

A run (one per account in scope, per transition to halt or kill):
    pending -> cancelling -> [kill: closing] -> verifying -> completed
                                                            \\-> failed (+ alert event)
Each round cancels every working order in scope, for kill closes every position in
scope at market, then re-reads the broker. A run completes only when the re-read
shows no working order in scope (and, for kill, no position): an unverified run is
never reported as done.

Idempotency (a retry, a redelivered message or a restarted worker repeats a step):
- BrokerAction is unique per (run, key): a cancel's key is the broker order id, a
  close's key is its client reference.
- A closing order's action row, with its client reference ("ks-close-<run>-<symbol>-<n>"),
  is committed BEFORE the order is sent. A later attempt first resolves every open
  close action at the broker by that reference and sends a new closing order only
  when none is working or unknown, for the quantity a fresh position read shows.
  The paper broker also refuses a second order with the same reference.
- A worker holds a run through a lease (renewed at every step); a second worker
  waits for it to expire, so two workers never act on one run at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from killswitch import background
from killswitch import levels as L
from killswitch.models import Event, Scope

from .adapters import SWEEP, adapter_for, broker_of
from .adapters.base import (
    DONE_CANCELLED,
    DONE_REJECTED,
    FILLED,
    BrokerAdapter,
    BrokerError,
    BrokerScope,
    OrderState,
    WorkingOrder,
)
from .config import brokers_config
from .models import (
    OPEN_OUTCOMES,
    TERMINAL_STATES,
    ActionKind,
    ActionOutcome,
    BrokerAction,
    BrokerRun,
    RunKind,
    RunState,
)

logger = logging.getLogger("brokers")

SYSTEM_ACTOR = "system:brokers"
CLOSE_REF_PREFIX = "ks-close-"
BROKER_LEVELS = (L.HALT, L.KILL)


# --- Which runs a transition starts --------------------------------------------------------


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


def dispatch_runs_for_event(*, event: Event) -> list[BrokerRun]:
    """After commit: hand the event's runs, created in its transaction, to the workers.

    The Celery messages go out from the after-commit lane (killswitch.background), so
    the activation answers without waiting for them; the runs are already committed,
    and a message lost with its process is re-sent by the sweep once the run is
    overdue. If the runs are missing (the in-transaction receiver failed), they are
    created here and enqueued at once."""
    runs = list(BrokerRun.objects.filter(kind=RunKind.SWITCH, event_seq=event.seq))
    if not runs:
        return start_runs_for_event(event=event)
    due = [run.pk for run in runs if not run.finished]  # due_at was set when they were created
    if due:
        background.dispatch.submit(_publish_runs, due)
    return runs


def _publish_runs(run_ids: list[int]) -> None:
    for run_id in run_ids:
        _publish_run(run_id)


# Publishing must not hold up the transition's after-commit hooks when Redis is down.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.1, "interval_max": 0.2}


def enqueue_run(*, run_id: int, countdown: float = 0) -> bool:
    """Mark the run due and publish its task. Returns False when publishing failed."""
    BrokerRun.objects.filter(pk=run_id).update(due_at=timezone.now() + timedelta(seconds=countdown))
    return _publish_run(run_id, countdown)


def _publish_run(run_id: int, countdown: float = 0) -> bool:
    from .tasks import execute_run  # the task module imports this one

    try:
        execute_run.apply_async(args=[run_id], countdown=countdown or None, retry=True,
                                retry_policy=PUBLISH_RETRY)
    except Exception:  # kombu raises several connection error types
        logger.exception("could not enqueue broker run %s; the sweep loop will", run_id)
        return False
    return True


# --- Executing a run ------------------------------------------------------------------------


@dataclass(frozen=True)
class StepResult:
    """What execute_run decided: `retry_in` seconds when the task should run again."""

    run: BrokerRun | None
    retry_in: float | None = None


class _Unverified(Exception):
    def __init__(self, problems: list[str], *, retryable: bool) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.retryable = retryable


def _worker_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _claim(run_id: int, token: str) -> tuple[bool, BrokerRun | None]:
    now = timezone.now()
    lease = timedelta(seconds=brokers_config().runs.lease_seconds)
    claimed = (
        BrokerRun.objects.filter(pk=run_id)
        .exclude(state__in=TERMINAL_STATES)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=token))
        .update(lease_owner=token, lease_until=now + lease, updated_at=now)
    )
    return bool(claimed), BrokerRun.objects.filter(pk=run_id).first()


def _touch(run: BrokerRun, **fields: Any) -> None:
    """Save `fields` and renew the lease (only while this worker still holds it)."""
    now = timezone.now()
    fields.update(updated_at=now, lease_until=now + timedelta(seconds=brokers_config().runs.lease_seconds))
    BrokerRun.objects.filter(pk=run.pk, lease_owner=run.lease_owner).update(**fields)
    for name, value in fields.items():
        setattr(run, name, value)


class _LeaseKeeper:
    """Renews the run's lease from a background thread while a step runs, so a long
    step (1,000 IB cancels at the pacing limit) never looks like a dead worker. If the
    worker process dies, the thread dies with it and the lease runs out."""

    def __init__(self, run: BrokerRun) -> None:
        self.run_id, self.owner = run.pk, run.lease_owner
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"lease-{run.pk}", daemon=True)

    def _loop(self) -> None:
        from django.db import connection

        seconds = brokers_config().runs.lease_seconds
        try:
            while not self.stop.wait(seconds / 3):
                BrokerRun.objects.filter(pk=self.run_id, lease_owner=self.owner).update(
                    lease_until=timezone.now() + timedelta(seconds=seconds))
        except Exception:  # the main step's own touches still renew it
            logger.warning("lease renewal for run %s failed", self.run_id, exc_info=True)
        finally:
            connection.close()

    def __enter__(self) -> _LeaseKeeper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def _release(run: BrokerRun) -> None:
    BrokerRun.objects.filter(pk=run.pk, lease_owner=run.lease_owner).update(lease_owner="", lease_until=None)


def _note(run: BrokerRun, text: str) -> None:
    if text not in run.notes:
        run.notes = (run.notes + "\n" + text).strip()
        _touch(run, notes=run.notes)


def execute_run(*, run_id: int) -> StepResult:
    """Do (or resume) run `run_id` until it is verified, or decide to retry or fail.

    Never raises for broker trouble: a retryable failure returns `retry_in` (backoff
    grows with the run's attempts, up to brokers.runs.max_attempts); anything else,
    or the last attempt, ends the run failed with an alert event.
    """
    token = _worker_token()
    claimed, run = _claim(run_id, token)
    if run is None or run.finished:
        return StepResult(run)
    if not claimed:
        # Another worker holds it (or held it and died): look again when its lease ends.
        remaining = (run.lease_until - timezone.now()).total_seconds() if run.lease_until else 1.0
        return StepResult(run, retry_in=max(0.5, remaining + 0.1))
    policy = brokers_config().runs
    run.attempts += 1
    _touch(run, attempts=run.attempts, started_at=run.started_at or timezone.now(), error="")
    adapter: BrokerAdapter | None = None
    try:
        adapter = adapter_for(run.account)
        with _LeaseKeeper(run):
            _perform(run, adapter)
    except (BrokerError, _Unverified) as exc:
        retryable = exc.retryable
        message = exc.message if isinstance(exc, BrokerError) else str(exc)
    except Exception as exc:  # a bug or the database: recorded, retried, then failed loudly
        logger.exception("broker run %s crashed", run.pk)
        retryable, message = True, f"{type(exc).__name__}: {exc}"
    else:
        return StepResult(run)
    finally:
        if adapter is not None:
            adapter.close()
    if retryable and run.attempts < policy.max_attempts:
        delay = min(policy.retry_backoff_max_seconds, policy.retry_backoff_seconds * 2 ** (run.attempts - 1))
        _touch(run, error=f"attempt {run.attempts}: {message}",
               due_at=timezone.now() + timedelta(seconds=delay))
        _release(run)
        logger.warning("broker run %s attempt %s failed, retrying in %.1fs: %s", run.pk, run.attempts,
                       delay, message)
        return StepResult(run, retry_in=delay)
    fail_run(run=run, error=message)
    return StepResult(run)


def _perform(run: BrokerRun, adapter: BrokerAdapter) -> None:
    scope = broker_scope(run)
    kill = run.level == L.KILL
    closable = kill and run.scope_kind != L.STRATEGY
    if kill and not closable:
        _note(run, "Positions left for manual management: brokers keep one net position per account "
                   "and symbol, not per strategy, so closing 'strategy' positions at market would "
                   "also close other strategies' exposure.")
    rounds = brokers_config().runs.verify_rounds
    problems: list[str] = []
    rejected = False
    for _ in range(rounds):
        _touch(run, state=RunState.CANCELLING)
        _cancel_step(run, adapter, scope)
        if closable:
            _touch(run, state=RunState.CLOSING)
            rejected = _close_step(run, adapter, scope) or rejected
        _touch(run, state=RunState.VERIFYING)
        problems = _verify(adapter, scope, closable)
        if not problems:
            now = timezone.now()
            _touch(run, state=RunState.COMPLETED, finished_at=now, error="")
            _release(run)
            logger.info("broker run %s completed", run.pk, extra={"run": run.pk, "account": run.account})
            return
    # Rejected closing orders do not heal by waiting; anything else (an order still
    # working, a closing order not yet filled) may, so the task retries later.
    raise _Unverified([f"not verified after {rounds} rounds"] + problems, retryable=not rejected)


def _is_own_closing_order(order: WorkingOrder) -> bool:
    return order.client_ref.startswith(CLOSE_REF_PREFIX)


def _cancel_step(run: BrokerRun, adapter: BrokerAdapter, scope: BrokerScope) -> None:
    orders = [o for o in adapter.working_orders(scope) if not _is_own_closing_order(o)]
    global_scope = run.scope_kind == L.GLOBAL and run.kind == RunKind.SWITCH
    _settle_interrupted_cancels(run, adapter, {o.order_id for o in orders})
    if not orders:
        return
    # Recorded as pending before the cancel goes out: an attempt cut short (connection
    # lost, worker killed) leaves rows that the next attempt settles. An all-or-nothing
    # broker (the paper broker's one transaction) needs no such trail.
    if not adapter.atomic_cancels:
        _record_pending(run, orders)
    result = adapter.cancel_all(scope, orders, global_scope=global_scope)
    if result.global_cancel:
        key = f"global-cancel-{run.attempts}"
        BrokerAction.objects.get_or_create(
            run=run, key=key,
            defaults={"action": ActionKind.GLOBAL_CANCEL, "account": run.account, "attempts": 1,
                      "outcome": ActionOutcome.CANCELLED, "finished_at": timezone.now(),
                      "detail": f"one broker-wide cancel for {len(orders)} listed order(s)"},
        )
    _apply_cancel_results(run, result.results)
    _touch(run)


_INSERT_PENDING = """
INSERT INTO brokers_brokeraction
    (run_id, key, action, account, broker_order_id, client_ref, symbol, strategy, side, quantity,
     filled_quantity, outcome, detail, attempts, created_at, updated_at, finished_at)
VALUES (%s, %s, 'cancel', %s, %s, '', %s, %s, %s, %s, %s, %s, %s, 0, %s, %s, %s)
ON CONFLICT (run_id, key) DO NOTHING
"""

_UPSERT_ACTIONS = """
INSERT INTO brokers_brokeraction
    (run_id, key, action, account, broker_order_id, client_ref, symbol, strategy, side, quantity,
     filled_quantity, outcome, detail, attempts, created_at, updated_at, finished_at)
VALUES (%s, %s, 'cancel', %s, %s, '', %s, %s, %s, %s, %s, %s, %s, 1, %s, %s, %s)
ON CONFLICT (run_id, key) DO UPDATE SET
    outcome = excluded.outcome, filled_quantity = excluded.filled_quantity, detail = excluded.detail,
    attempts = brokers_brokeraction.attempts + 1, updated_at = excluded.updated_at,
    finished_at = excluded.finished_at
"""


def _record_pending(run: BrokerRun, orders: list[WorkingOrder]) -> None:
    from django.db import connection

    ops = connection.ops
    now = ops.adapt_datetimefield_value(timezone.now())
    rows = [(run.pk, f"order:{o.order_id}", o.account, o.order_id, o.symbol, o.strategy[:64], o.side,
             ops.adapt_decimalfield_value(o.quantity, 20, 4), ops.adapt_decimalfield_value(o.filled, 20, 4),
             ActionOutcome.PENDING, "", now, now, None) for o in orders]
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(_INSERT_PENDING, rows)


def _settle_interrupted_cancels(run: BrokerRun, adapter: BrokerAdapter, working_ids: set[str]) -> None:
    """Cancels an earlier attempt sent without noting the answer: the orders that are
    no longer working are classified from the broker (cancelled, or filled)."""
    stale = [a for a in run.actions.filter(action=ActionKind.CANCEL, outcome=ActionOutcome.PENDING)
             if a.broker_order_id not in working_ids]
    if not stale:
        return
    orders = [WorkingOrder(account=a.account, order_id=a.broker_order_id, symbol=a.symbol, side=a.side,
                           quantity=a.quantity, filled=a.filled_quantity, strategy=a.strategy) for a in stale]
    _apply_cancel_results(run, adapter.settle(orders))


def _apply_cancel_results(run: BrokerRun, results: list) -> None:
    """Store each outcome on the run of the order's account (a broker-wide cancel also
    reaches the other accounts of the same transition, whose runs get the record).

    One INSERT ... ON CONFLICT per order through executemany, in one transaction:
    10,000 cancels must not mean 10,000 ORM round trips; a retry updates the same row
    (unique run + key) and counts the attempt.
    """
    from django.db import connection

    ops = connection.ops
    now = ops.adapt_datetimefield_value(timezone.now())
    targets: dict[str, int] = {run.account: run.pk}
    rows = []
    for r in results:
        account = r.order.account
        if account not in targets:
            sibling = BrokerRun.objects.filter(kind=run.kind, event_seq=run.event_seq, account=account).first()
            targets[account] = sibling.pk if sibling else run.pk
        o = r.order
        rows.append((
            targets[account], f"order:{o.order_id}", account, o.order_id, o.symbol, o.strategy[:64], o.side,
            ops.adapt_decimalfield_value(o.quantity, 20, 4), ops.adapt_decimalfield_value(r.filled, 20, 4),
            r.outcome, r.detail[:2000], now, now, None if r.outcome == ActionOutcome.ERROR else now,
        ))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(_UPSERT_ACTIONS, rows)


def _close_ref(run: BrokerRun, symbol: str, n: int) -> str:
    return f"{CLOSE_REF_PREFIX}{run.pk}-{symbol}-{n}"


def _apply_state(action: BrokerAction, state: OrderState | None) -> None:
    now = timezone.now()
    if state is None:
        # The broker never accepted it (the worker stopped before sending, or the
        # broker refused it without keeping a record): safe to send a new one.
        action.outcome = ActionOutcome.ERROR
        action.detail = "not found at the broker by its reference: never sent"
        action.finished_at = now
    else:
        action.broker_order_id = state.order_id
        action.filled_quantity = state.filled
        action.detail = state.detail[:2000]
        action.outcome = {
            FILLED: ActionOutcome.FILLED, DONE_REJECTED: ActionOutcome.REJECTED,
            DONE_CANCELLED: ActionOutcome.CANCELLED,
        }.get(state.status, ActionOutcome.SUBMITTED)
        action.finished_at = now if state.done else None
    action.updated_at = now
    action.save()


# How long after a closing order filled its position report is not trusted yet.
POSITION_REPORT_LAG = timedelta(seconds=3)


def _close_step(run: BrokerRun, adapter: BrokerAdapter, scope: BrokerScope) -> bool:
    """Close every position in scope at market. Returns True if a closing order was rejected."""
    rejected = False
    # First settle every closing order an earlier attempt sent (or may have sent),
    # whether or not its position still shows: the answer may never have been noted.
    waiting: set[str] = set()
    for action in run.actions.filter(action=ActionKind.CLOSE, outcome__in=OPEN_OUTCOMES).order_by("id"):
        action.attempts += 1
        _apply_state(action, adapter.find_order(account=run.account, client_ref=action.client_ref))
        if action.outcome in OPEN_OUTCOMES:
            waiting.add(action.symbol)
    # Never close what another order is already closing or has just closed, whichever run
    # sent it: two kill runs on one account (say account:X, then global) would otherwise
    # each sell the same position, and a broker's position report can trail its fill
    # report (IB does), so a just-filled close may still show as an open position.
    closes = BrokerAction.objects.filter(account=run.account, action=ActionKind.CLOSE)
    waiting |= set(closes.filter(outcome__in=OPEN_OUTCOMES).values_list("symbol", flat=True))
    waiting |= set(closes.filter(outcome=ActionOutcome.FILLED,
                                 finished_at__gte=timezone.now() - POSITION_REPORT_LAG)
                   .values_list("symbol", flat=True))
    for position in adapter.positions(scope):
        symbol = position.symbol
        if symbol in waiting:
            continue  # a closing order is still working: never send a second one
        # Every earlier closing order is settled (read above, after settling): the
        # broker's position now is what is left to close.
        quantity = abs(position.quantity)
        sent = run.actions.filter(action=ActionKind.CLOSE, symbol=symbol).count()
        ref = _close_ref(run, symbol, sent + 1)
        action = BrokerAction.objects.create(
            run=run, key=ref, action=ActionKind.CLOSE, account=run.account, client_ref=ref, symbol=symbol,
            side="SELL" if position.quantity > 0 else "BUY", quantity=quantity,
            outcome=ActionOutcome.SENDING, attempts=1,
        )  # committed before the order exists: a crash from here on is resolved by `ref`
        _apply_state(action, adapter.close_position(position, quantity=quantity, client_ref=ref))
        rejected = rejected or action.outcome == ActionOutcome.REJECTED
        _touch(run)
    return rejected


def _verify(adapter: BrokerAdapter, scope: BrokerScope, closable: bool) -> list[str]:
    problems = []
    left = [o for o in adapter.working_orders(scope) if not _is_own_closing_order(o)]
    if left:
        problems.append(f"{len(left)} working order(s) still in {scope}: "
                        + ", ".join(f"{o.order_id} {o.side} {o.remaining} {o.symbol}" for o in left[:10]))
    if closable:
        positions = adapter.positions(scope)
        if positions:
            problems.append(f"not flat in {scope}: "
                            + ", ".join(f"{p.symbol} {p.quantity}" for p in positions[:10]))
    return problems


def fail_run(*, run: BrokerRun, error: str) -> BrokerRun:
    """End `run` failed and raise an alert event (audited, pushed like any event)."""
    from killswitch.services import record_alert

    now = timezone.now()
    with transaction.atomic():  # the failed state and its alert become visible together
        BrokerRun.objects.filter(pk=run.pk).update(state=RunState.FAILED, error=error[:10_000], finished_at=now,
                                                    updated_at=now, lease_owner="", lease_until=None)
        run.refresh_from_db()
        try:
            with transaction.atomic():
                event = record_alert(
                    scope=L.ScopeRef(run.scope_kind, run.scope_key), actor=SYSTEM_ACTOR,
                    detail=f"broker run {run.pk} ({run.level}, account {run.account}) failed: {error}"[:5000],
                )
        except Exception:  # the run's failure is stored all the same; the log says why no alert
            logger.exception("could not record the alert for broker run %s", run.pk)
        else:
            BrokerRun.objects.filter(pk=run.pk).update(alert_event_seq=event.seq)
            run.alert_event_seq = event.seq
    logger.error("broker run %s failed: %s", run.pk, error, extra={"run": run.pk, "account": run.account})
    return run


# --- The sweep --------------------------------------------------------------------------------


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
        started += start_runs_for_event(event=event)
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
            orders = [o for o in adapter.working_orders(BrokerScope(account)) if not _is_own_closing_order(o)]
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
        _record_pending(run, orders)
    result = adapter.cancel_all(BrokerScope(account), orders, global_scope=False)
    _apply_cancel_results(run, result.results)
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
        enqueue_run(run_id=run_id)  # sets due_at: the next pass does not enqueue it again at once
        resumed.append(run_id)
    return resumed


# --- Demo data ---------------------------------------------------------------------------------

DEMO_ACCOUNTS = ("DU111111", "DU222222")
DEMO_PRICES = {"AAPL": "190.00", "MSFT": "410.00", "TSLA": "240.00", "SPY": "520.00", "NVDA": "900.00"}
DEMO_POSITIONS = (
    ("DU111111", "AAPL", "100", "185.50"),
    ("DU111111", "TSLA", "-50", "250.00"),
    ("DU222222", "MSFT", "30", "400.00"),
    ("DU222222", "SPY", "-20", "525.00"),
)
DEMO_ORDERS = (
    ("demo-1", "DU111111", "AAPL", "BUY", "50", "180.00", "momentum"),
    ("demo-2", "DU111111", "TSLA", "SELL", "25", "260.00", "mean_reversion"),
    ("demo-3", "DU111111", "NVDA", "BUY", "10", "850.00", "momentum"),
    ("demo-4", "DU222222", "MSFT", "SELL", "15", "420.00", "momentum"),
    ("demo-5", "DU222222", "SPY", "BUY", "40", "500.00", "index_arb"),
)


def seed_demo_data() -> dict[str, int]:
    """Paper accounts DU111111 and DU222222 with prices, long and short positions and
    working orders tagged with strategies. Every other configured paper account (e.g.
    the drill's DRILL01) is opened empty, so a global halt finds nothing missing there.
    Idempotent: existing orders (by their client ids) and positions are left as they are."""
    from .adapters import paper
    from .config import brokers_config

    with transaction.atomic():
        for code in dict.fromkeys([*DEMO_ACCOUNTS, *brokers_config().paper_accounts]):
            paper.ensure_account(code)
        for symbol, price in DEMO_PRICES.items():
            if paper.last_price(symbol) is None:
                paper.set_price(symbol, price)
        from .models import PaperPosition

        for account, symbol, qty, cost in DEMO_POSITIONS:
            if not PaperPosition.objects.filter(account__code=account, symbol=symbol).exists():
                paper.set_position(account=account, symbol=symbol, quantity=qty, avg_cost=cost)
        for ref, account, symbol, side, qty, limit, strategy in DEMO_ORDERS:
            paper.place_order(account=account, symbol=symbol, side=side, quantity=Decimal(qty),
                              limit_price=limit, strategy=strategy, client_order_id=ref)
    return {"accounts": len(DEMO_ACCOUNTS), "positions": len(DEMO_POSITIONS), "orders": len(DEMO_ORDERS)}
