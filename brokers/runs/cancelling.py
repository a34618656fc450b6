"""Cancelling working orders in scope, with every outcome recorded per order.

Cancels are recorded as pending before they go out (an attempt cut short leaves rows
the next attempt settles at the broker), and stored in one INSERT ... ON CONFLICT per
order through executemany: 10,000 cancels must not mean 10,000 ORM round trips.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from killswitch import domain as L

from ..adapters.base import CLOSE_REF_PREFIX, BrokerAdapter, BrokerScope, Instrument, WorkingOrder
from ..models import ActionKind, ActionOutcome, BrokerAction, BrokerRun, RunKind
from .lease import note, touch

__all__ = ["CLOSE_REF_PREFIX", "apply_cancel_results", "cancel_step", "is_own_closing_order", "record_pending"]


def is_own_closing_order(order: WorkingOrder) -> bool:
    return order.is_own_close


def cancel_step(run: BrokerRun, adapter: BrokerAdapter, scope: BrokerScope) -> None:
    orders = [o for o in adapter.working_orders(scope) if not is_own_closing_order(o)]
    global_scope = run.scope_kind == L.GLOBAL and run.kind == RunKind.SWITCH
    _settle_interrupted_cancels(run, adapter, {o.order_id for o in orders})
    if not orders:
        return
    # Recorded as pending before the cancel goes out: an attempt cut short (connection
    # lost, worker killed) leaves rows that the next attempt settles. An all-or-nothing
    # broker (the paper broker's one transaction) needs no such trail.
    if not adapter.atomic_cancels:
        record_pending(run, orders)
    result = adapter.cancel_all(scope, orders, global_scope=global_scope)
    if result.note:
        note(run, result.note)
    if result.global_cancel:
        key = f"global-cancel-{run.attempts}"
        BrokerAction.objects.get_or_create(
            run=run, key=key,
            defaults={"action": ActionKind.GLOBAL_CANCEL, "account": run.account, "attempts": 1,
                      "outcome": ActionOutcome.CANCELLED, "finished_at": timezone.now(),
                      "detail": f"one broker-wide cancel for {len(orders)} listed order(s)"},
        )
    apply_cancel_results(run, result.results)
    touch(run)


_COLUMNS = """
INSERT INTO brokers_brokeraction
    (run_id, key, action, account, broker_order_id, client_ref, symbol, instrument, position_key, leg,
     basis, strategy, side, quantity, filled_quantity, outcome, detail, attempts, created_at, updated_at,
     finished_at)
"""

_INSERT_PENDING = _COLUMNS + """
VALUES (%s, %s, 'cancel', %s, %s, '', %s, %s, '', '', NULL, %s, %s, %s, %s, %s, %s, 0, %s, %s, %s)
ON CONFLICT (run_id, key) DO NOTHING
"""

_UPSERT_ACTIONS = _COLUMNS + """
VALUES (%s, %s, 'cancel', %s, %s, '', %s, %s, '', '', NULL, %s, %s, %s, %s, %s, %s, 1, %s, %s, %s)
ON CONFLICT (run_id, key) DO UPDATE SET
    outcome = excluded.outcome, filled_quantity = excluded.filled_quantity, detail = excluded.detail,
    attempts = brokers_brokeraction.attempts + 1, updated_at = excluded.updated_at,
    finished_at = excluded.finished_at
"""


def _instrument_param(instrument: Instrument, connection) -> object:
    """The JSON column's value as this database wants it (text on SQLite, jsonb on PostgreSQL).
    Kept per instrument and database vendor: the orders of a run share a few instruments,
    and preparing the value anew for each of 10,000 orders was a third of the run."""
    key = (instrument, connection.vendor)
    value = _PARAMS.get(key)
    if value is None:
        if len(_PARAMS) >= 4096:
            _PARAMS.clear()
        value = _PARAMS[key] = BrokerAction._meta.get_field("instrument").get_db_prep_save(
            instrument.as_dict(), connection)
    return value


_PARAMS: dict[tuple[Instrument, str], object] = {}


def record_pending(run: BrokerRun, orders: list[WorkingOrder]) -> None:
    from django.db import connection

    ops = connection.ops
    now = ops.adapt_datetimefield_value(timezone.now())
    rows = [(run.pk, f"order:{o.order_id}", o.account, o.order_id, o.symbol[:32],
             _instrument_param(o.instrument, connection), o.strategy[:64], o.side,
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
    orders = [WorkingOrder(account=a.account, order_id=a.broker_order_id,
                           instrument=Instrument.from_dict(a.instrument, symbol=a.symbol), side=a.side,
                           quantity=a.quantity, filled=a.filled_quantity, strategy=a.strategy) for a in stale]
    apply_cancel_results(run, adapter.settle(orders))


def apply_cancel_results(run: BrokerRun, results: list) -> None:
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
            targets[account], f"order:{o.order_id}", account, o.order_id, o.symbol[:32],
            _instrument_param(o.instrument, connection), o.strategy[:64], o.side,
            ops.adapt_decimalfield_value(o.quantity, 20, 4), ops.adapt_decimalfield_value(r.filled, 20, 4),
            r.outcome, r.detail[:2000], now, now, None if r.outcome == ActionOutcome.ERROR else now,
        ))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(_UPSERT_ACTIONS, rows)
