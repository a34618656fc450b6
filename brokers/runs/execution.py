"""Executing a run: cancel, [close,] verify, in rounds, until the broker shows the scope
done; retries with backoff; a run that cannot finish ends failed with an alert."""

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
from .closing import close_step
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


def execute_run(*, run_id: int) -> StepResult:
    """Do (or resume) run `run_id` until it is verified, or decide to retry or fail.

    Never raises for broker trouble: a retryable failure returns `retry_in` (backoff
    grows with the run's attempts, up to brokers.runs.max_attempts); anything else,
    or the last attempt, ends the run failed with an alert event.
    """
    token = worker_token()
    claimed, run = claim(run_id, token)
    if run is None or run.finished:
        return StepResult(run)
    if not claimed:
        # Another worker holds it (or held it and died): look again when its lease ends.
        remaining = (run.lease_until - timezone.now()).total_seconds() if run.lease_until else 1.0
        return StepResult(run, retry_in=max(0.5, remaining + 0.1))
    policy = brokers_config().runs
    run.attempts += 1
    touch(run, attempts=run.attempts, started_at=run.started_at or timezone.now(), error="")
    adapter: BrokerAdapter | None = None
    try:
        adapter = adapter_for(run.account)
        with LeaseKeeper(run):
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
        touch(run, error=f"attempt {run.attempts}: {message}",
               due_at=timezone.now() + timedelta(seconds=delay))
        release(run)
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
        note(run, "Positions left for manual management: brokers keep one net position per account "
                   "and symbol, not per strategy, so closing 'strategy' positions at market would "
                   "also close other strategies' exposure.")
    rounds = brokers_config().runs.verify_rounds
    problems: list[str] = []
    rejected = False
    for _ in range(rounds):
        touch(run, state=RunState.CANCELLING)
        cancel_step(run, adapter, scope)
        if closable:
            touch(run, state=RunState.CLOSING)
            rejected = close_step(run, adapter, scope) or rejected
        touch(run, state=RunState.VERIFYING)
        problems = _verify(adapter, scope, closable)
        if not problems:
            now = timezone.now()
            touch(run, state=RunState.COMPLETED, finished_at=now, error="")
            release(run)
            logger.info("broker run %s completed", run.pk, extra={"run": run.pk, "account": run.account})
            return
    # Rejected closing orders do not heal by waiting; anything else (an order still
    # working, a closing order not yet filled) may, so the task retries later.
    raise _Unverified([f"not verified after {rounds} rounds"] + problems, retryable=not rejected)


def _verify(adapter: BrokerAdapter, scope: BrokerScope, closable: bool) -> list[str]:
    problems = []
    left = [o for o in adapter.working_orders(scope) if not is_own_closing_order(o)]
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
