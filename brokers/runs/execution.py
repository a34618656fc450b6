"""Executing a run: cancel, [close,] verify, in rounds, until the broker shows the scope
done; retries with backoff; a run that cannot finish ends failed with an alert.

Before every step (each cancel round, each close round, each verification) the run
re-reads its scope's level from the database (following.allowed_for): lifted, it
ends `superseded` and sends nothing more; a kill lowered to halt stops closing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from killswitch import domain as L

from ..adapters import adapter_for
from ..adapters.base import BrokerAdapter, BrokerError, BrokerScope
from ..config import brokers_config
from ..models import BrokerRun, RunState
from .cancelling import cancel_step, is_own_closing_order
from .closing import CloseReport, close_step, settle_before_end
from .following import Allowed, allowed_for
from .lease import LeaseKeeper, claim, note, release, touch, worker_token
from .planning import broker_scope

logger = logging.getLogger("brokers")

SYSTEM_ACTOR = "system:brokers"


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


class _Superseded(Exception):
    """The switch was lifted under the run: it has been ended `superseded`."""


def execute_run(*, run_id: int) -> StepResult:
    """Do (or resume) run `run_id` until it is verified, superseded, or decide to retry
    or fail.

    Never raises for broker trouble: a retryable failure returns `retry_in` (backoff
    grows with the run's attempts, up to brokers.runs.max_attempts); anything else,
    or the last attempt, ends the run failed with an alert event, after its open
    closing orders were re-read at the broker.
    """
    token = worker_token()
    claimed, run = claim(run_id, token)
    if run is None or run.finished:
        return StepResult(run)
    if not claimed:
        # Another worker holds it (or held it and died): look again when its lease ends.
        remaining = (run.lease_until - timezone.now()).total_seconds() if run.lease_until else 1.0
        return StepResult(run, retry_in=max(0.5, remaining + 0.1))
    allowed = allowed_for(run)
    if allowed.superseded:  # lifted before this attempt began: nothing is sent at all
        supersede(run, allowed, adapter=None)
        return StepResult(run)
    policy = brokers_config().runs
    run.attempts += 1
    touch(run, attempts=run.attempts, started_at=run.started_at or timezone.now(), error="")
    adapter: BrokerAdapter | None = None
    try:
        try:
            adapter = adapter_for(run.account)
            with LeaseKeeper(run):
                _perform(run, adapter)
        except _Superseded:
            return StepResult(run)
        except (BrokerError, _Unverified) as exc:
            retryable = exc.retryable
            message = exc.message if isinstance(exc, BrokerError) else str(exc)
        except Exception as exc:  # a bug or the database: recorded, retried, then failed loudly
            logger.exception("broker run %s crashed", run.pk)
            retryable, message = True, f"{type(exc).__name__}: {exc}"
        else:
            return StepResult(run)
        if retryable and run.attempts < policy.max_attempts:
            delay = min(policy.retry_backoff_max_seconds, policy.retry_backoff_seconds * 2 ** (run.attempts - 1))
            touch(run, error=f"attempt {run.attempts}: {message}",
                  due_at=timezone.now() + timedelta(seconds=delay))
            release(run)
            logger.warning("broker run %s attempt %s failed, retrying in %.1fs: %s", run.pk, run.attempts,
                           delay, message)
            return StepResult(run, retry_in=delay)
        fail_run(run=run, error=message, adapter=adapter)
        return StepResult(run)
    finally:
        if adapter is not None:
            adapter.close()


def _follow(run: BrokerRun, adapter: BrokerAdapter) -> Allowed:
    """Re-read the switch before a step; ends the run superseded (raising _Superseded)
    when its scope is no longer at halt or kill."""
    allowed = allowed_for(run)
    if allowed.superseded:
        supersede(run, allowed, adapter=adapter)
        raise _Superseded()
    return allowed


def _perform(run: BrokerRun, adapter: BrokerAdapter) -> None:
    scope = broker_scope(run)
    kill = run.level == L.KILL
    closable = kill and run.scope_kind != L.STRATEGY
    if kill and not closable:
        note(run, "Positions left for manual management: brokers keep one net position per account "
                   "and instrument, not per strategy, so closing 'strategy' positions at market would "
                   "also close other strategies' exposure.")
    rounds = brokers_config().runs.verify_rounds
    problems: list[str] = []
    closing = CloseReport()
    for _ in range(rounds):
        _follow(run, adapter)
        touch(run, state=RunState.CANCELLING)
        cancel_step(run, adapter, scope)
        if closable:
            closable = _follow(run, adapter).may_close
            if not closable:
                note(run, f"Kill lowered to halt at {timezone.now():%Y-%m-%d %H:%M:%S} UTC: closing stopped, "
                           "the positions left are kept.")
        if closable:
            touch(run, state=RunState.CLOSING)
            closing = close_step(run, adapter, scope)
        closable = closable and _follow(run, adapter).may_close
        touch(run, state=RunState.VERIFYING)
        problems = _verify(adapter, scope, closable, closing)
        if not problems:
            touch(run, state=RunState.COMPLETED, finished_at=timezone.now(), error="")
            release(run)
            logger.info("broker run %s completed", run.pk, extra={"run": run.pk, "account": run.account})
            return
        if closing.unclosable and len(problems) == 1 and problems[0].startswith("unclosable"):
            break  # nothing else is left, and waiting will not make these closable
    # Rejected closing orders and unclosable positions do not heal by waiting; anything
    # else (an order still working, a late position report) may, so the task retries later.
    raise _Unverified([f"not verified after {rounds} rounds"] + problems,
                      retryable=not closing.rejected and not closing.unclosable)


def _verify(adapter: BrokerAdapter, scope: BrokerScope, closable: bool, closing: CloseReport) -> list[str]:
    problems = []
    left = [o for o in adapter.working_orders(scope) if not is_own_closing_order(o)]
    if left:
        problems.append(f"{len(left)} working order(s) still in {scope}: "
                        + ", ".join(f"{o.order_id} {o.side} {o.remaining} {o.instrument.label}" for o in left[:10]))
    if closable:
        positions = adapter.positions(scope)
        stuck = [p for p in positions if p.key in closing.unclosable]
        others = [p for p in positions if p.key not in closing.unclosable]
        if others:
            problems.append(f"not flat in {scope}: "
                            + ", ".join(f"{p.instrument.label} {p.quantity}" for p in others[:10]))
        if stuck:
            problems.append("unclosable, left open: " + "; ".join(
                f"{p.instrument.label} {p.quantity}: {closing.unclosable[p.key]}" for p in stuck[:10]))
    return problems


def supersede(run: BrokerRun, allowed: Allowed, *, adapter: BrokerAdapter | None) -> BrokerRun:
    """End `run` superseded: its scope is at `allowed.in_force` now, below halt. Its open
    closing orders are re-read at the broker (reading sends nothing) for the record."""
    text = (f"Superseded at {timezone.now():%Y-%m-%d %H:%M:%S} UTC: the scope {run.scope_label} is at "
            f"{allowed.in_force} now; nothing more was sent.")
    ending = settle_before_end(run, adapter)
    notes = "\n".join(filter(None, [run.notes, text, ending])).strip()
    now = timezone.now()
    BrokerRun.objects.filter(pk=run.pk).exclude(state__in=(RunState.COMPLETED, RunState.FAILED)).update(
        state=RunState.SUPERSEDED, notes=notes, finished_at=now, updated_at=now, lease_owner="",
        lease_until=None)
    run.refresh_from_db()
    logger.warning("broker run %s superseded: %s is at %s", run.pk, run.scope_label, allowed.in_force,
                   extra={"run": run.pk, "account": run.account})
    return run


def fail_run(*, run: BrokerRun, error: str, adapter: BrokerAdapter | None = None) -> BrokerRun:
    """End `run` failed and raise an alert event (audited, pushed like any event). Its open
    closing orders are re-read at the broker first (with `adapter`, or a new one), so no
    later run waits on rows nobody will settle."""
    from killswitch.services import record_alert

    own = None
    if adapter is None:
        try:
            adapter = own = adapter_for(run.account)
        except Exception:  # noqa: BLE001 - an unknown account, PAPER_ONLY, a bad config: fail all the same
            adapter = None
    try:
        ending = settle_before_end(run, adapter)
    finally:
        if own is not None:
            own.close()
    if ending:
        error = f"{error}. {ending}"
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
