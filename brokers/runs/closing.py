"""Closing positions in scope at market, each on its own instrument, never twice.

What is left to close comes from the broker's own order and fill reports, not from
position reads alone (a position report may trail the fills by seconds):

- The closing orders sent for one position (`position_key`: the instrument, and the
  ticket where a broker keeps several) against one reading of it form a leg; the leg
  records that reading (`basis`, signed). Left to close = |basis| minus the
  cumulative fills of the leg's orders, re-read at the broker by their references.
- No order is sent for a position while any closing order for it is working or its
  state is unknown, whichever run sent it. Rows of a run nobody works any more (it
  ended, or its worker died) are re-read at the broker, never waited on.
- Once a leg is filled, a position the report still shows is not closed again from
  the report: only fills by other orders, in the broker's executions since the leg
  began, can start a new leg (never larger than the report or those fills). A leg
  quiet for longer than `brokers.runs.position_report_lag_seconds` is history: the
  report is then trusted for a new leg.
- A position the adapter cannot close as itself is recorded `unclosable` with the
  reason (and an alert); nothing is sent for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.db.models import Q
from django.utils import timezone

from ..adapters.base import (
    CLOSE_REF_PREFIX,
    DONE_CANCELLED,
    DONE_REJECTED,
    FILLED,
    BrokerAdapter,
    BrokerError,
    BrokerScope,
    Execution,
    OrderState,
    Position,
    Unclosable,
)
from ..config import brokers_config
from ..models import OPEN_OUTCOMES, ActionKind, ActionOutcome, BrokerAction, BrokerRun
from .lease import note, touch

logger = logging.getLogger("brokers")


@dataclass
class CloseReport:
    rejected: bool = False
    unclosable: dict[str, str] = field(default_factory=dict)  # position key -> reason
    held_back: list[str] = field(default_factory=list)  # positions the report shows but the fills closed


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


def settle_closes(actions: list[BrokerAction], adapter: BrokerAdapter) -> None:
    """Re-read each closing order at the broker by its reference and store what it
    says (cumulative fills, done or working). Raises BrokerError when unknown."""
    for action in actions:
        action.attempts += 1
        _apply_state(action, adapter.find_order(account=action.account, client_ref=action.client_ref))


def _worked_by_nobody(run: BrokerRun, now) -> bool:
    return run.finished or run.lease_until is None or run.lease_until < now


def _sign(value: Decimal) -> int:
    return (value > 0) - (value < 0)


def close_step(run: BrokerRun, adapter: BrokerAdapter, scope: BrokerScope) -> CloseReport:
    """Close every position in scope at market on its own instrument (see the module
    docstring for how much, and when not). Raises BrokerError on broker trouble."""
    report = CloseReport()
    now = timezone.now()
    lag = timedelta(seconds=brokers_config().runs.position_report_lag_seconds)
    settle_closes(list(run.actions.filter(action=ActionKind.CLOSE, outcome__in=OPEN_OUTCOMES)), adapter)
    ledger = list(BrokerAction.objects.filter(account=run.account, action=ActionKind.CLOSE)
                  .exclude(position_key="").select_related("run").order_by("id"))
    # Another run's open rows: wait for a run being worked; re-read a dead one's.
    abandoned = [a for a in ledger if a.outcome in OPEN_OUTCOMES and a.run_id != run.pk
                 and _worked_by_nobody(a.run, now)]
    settle_closes(abandoned, adapter)
    busy = {a.position_key for a in ledger if a.outcome in OPEN_OUTCOMES}
    unclosable = {a.position_key: a.detail for a in ledger
                  if a.run_id == run.pk and a.outcome == ActionOutcome.UNCLOSABLE}
    legs: dict[str, list[BrokerAction]] = {}
    for action in ledger:
        if action.leg and action.outcome != ActionOutcome.UNCLOSABLE:
            newest = legs.get(action.position_key)
            if newest is None or newest[0].leg != action.leg:
                legs[action.position_key] = [action]  # a newer leg replaces the older one
            else:
                newest.append(action)
    sent = run.actions.filter(action=ActionKind.CLOSE).count()  # refs are unique per run
    # The broker's executions since the oldest leg began: read at most once per step, if needed.
    oldest = min((leg[0].created_at for leg in legs.values()), default=now)
    executions = _Executions(adapter, run.account, oldest)
    for position in adapter.positions(scope):
        key = position.key
        if key in unclosable:
            report.unclosable[key] = unclosable[key]
            continue
        if key in busy:
            continue  # a closing order is working (or unknown): never send a second one
        plan = _plan(position, legs.get(key), now=now, lag=lag, executions=executions)
        if plan is None:
            report.held_back.append(f"{position.instrument.label} {position.quantity}")
            continue
        quantity, basis, leg = plan
        sent += 1
        ref = f"{CLOSE_REF_PREFIX}{run.pk}-{sent}"
        action = BrokerAction.objects.create(
            run=run, key=ref, action=ActionKind.CLOSE, account=run.account, client_ref=ref,
            symbol=position.symbol[:32], instrument=position.instrument.as_dict(), position_key=key,
            leg=leg or ref, basis=basis, side="SELL" if position.quantity > 0 else "BUY",
            quantity=quantity, outcome=ActionOutcome.SENDING, attempts=1,
        )  # committed before the order exists: a crash from here on is resolved by `ref`
        try:
            state = adapter.close_position(position, quantity=quantity, client_ref=ref)
        except Unclosable as exc:
            _unclosable(run, action, position, exc.message)
            report.unclosable[key] = exc.message
            continue
        _apply_state(action, state)
        report.rejected = report.rejected or action.outcome == ActionOutcome.REJECTED
        touch(run)
    if report.held_back:
        note(run, "Not closed again: the position report still shows "
                  + ", ".join(report.held_back[:10])
                  + " after the closing orders for it filled (position reports trail fills).")
    return report


class _Executions:
    """The account's executions since `since`, read from the broker on first use."""

    def __init__(self, adapter: BrokerAdapter, account: str, since) -> None:
        self.adapter, self.account, self.since = adapter, account, since
        self._found: list[Execution] | None = None

    def get(self) -> list[Execution]:
        if self._found is None:
            self._found = self.adapter.executions(account=self.account, since=self.since)
        return self._found


def _plan(position: Position, leg: list[BrokerAction] | None, *,
          now, lag: timedelta, executions: _Executions) -> tuple[Decimal, Decimal, str] | None:
    """(quantity to send, basis of its leg, leg id or '' for a new leg), or None when
    the report shows a position that the broker's fills say is already closed."""
    reported = position.quantity
    if not leg:
        return abs(reported), reported, ""
    basis = leg[0].basis or Decimal(0)
    last = max((a.finished_at or a.updated_at) for a in leg)
    if last < now - lag:
        return abs(reported), reported, ""  # history: the report has long caught up
    closed = sum((a.filled_quantity for a in leg), Decimal(0))
    remaining = abs(basis) - closed
    if remaining > 0 and _sign(reported) == _sign(basis):
        return min(remaining, abs(reported)), basis, leg[0].leg
    # The leg is closed: what the report shows is a late report, unless other orders
    # traded this instrument since the leg began (the broker's executions say so).
    since = leg[0].created_at
    others = sum((e.signed for e in executions.get()
                  if e.instrument_key == position.instrument.key and not e.client_ref.startswith(CLOSE_REF_PREFIX)
                  and (e.time is None or e.time >= since)), Decimal(0))
    if others and _sign(others) == _sign(reported):
        amount = min(abs(others), abs(reported))
        return amount, amount * _sign(reported), ""
    return None


def _unclosable(run: BrokerRun, action: BrokerAction, position: Position, reason: str) -> None:
    from killswitch import domain as L
    from killswitch.services import record_alert

    action.outcome, action.detail = ActionOutcome.UNCLOSABLE, reason[:2000]
    action.finished_at = action.updated_at = timezone.now()
    action.save(update_fields=["outcome", "detail", "finished_at", "updated_at"])
    try:
        record_alert(scope=L.ScopeRef(run.scope_kind, run.scope_key), actor="system:brokers",
                     detail=f"broker run {run.pk} (kill, account {run.account}) cannot close "
                            f"{position.instrument.label} {position.quantity}: {reason}. "
                            "Nothing was sent for it; close it by hand."[:5000])
    except Exception:  # the row says it all the same; the log says why no alert
        logger.exception("could not record the unclosable alert for run %s", run.pk)


def open_closes(run: BrokerRun) -> list[BrokerAction]:
    return list(run.actions.filter(Q(action=ActionKind.CLOSE) & Q(outcome__in=OPEN_OUTCOMES)))


def settle_before_end(run: BrokerRun, adapter: BrokerAdapter | None) -> str:
    """Before a run ends (failed, superseded): re-read its open closing orders at the
    broker. Returns a sentence for the run's notes about what is still working or
    unknown (empty when nothing is)."""
    actions = open_closes(run)
    if not actions:
        return ""
    if adapter is not None:
        try:
            settle_closes(actions, adapter)
        except BrokerError as exc:
            return (f"{len(actions)} closing order(s) could not be re-read at the broker ({exc.message}); "
                    "the next run on this account re-reads them by reference.")
    still = [a for a in actions if a.outcome in OPEN_OUTCOMES]
    if not still:
        return ""
    return ("Closing order(s) still working at the broker when the run ended: "
            + ", ".join(f"{a.client_ref} {a.side} {a.quantity} {a.symbol}" for a in still[:10]) + ".")
