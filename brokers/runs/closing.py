"""Closing positions in scope at market, never twice (see brokers/runs/__init__.py)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from ..adapters.base import (
    DONE_CANCELLED,
    DONE_REJECTED,
    FILLED,
    BrokerAdapter,
    BrokerScope,
    OrderState,
)
from ..models import OPEN_OUTCOMES, ActionKind, ActionOutcome, BrokerAction, BrokerRun
from .cancelling import CLOSE_REF_PREFIX
from .lease import touch


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


def close_step(run: BrokerRun, adapter: BrokerAdapter, scope: BrokerScope) -> bool:
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
        touch(run)
    return rejected
