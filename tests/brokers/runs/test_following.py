"""Runs that follow the switch, instruments closed as themselves, closing counted from
the broker's fills, and the sweep as the backstop: the paper broker, the run executed
in this process by calling the service (the Celery path is in test_paper_runs.py)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from brokers import demo as demo_data
from brokers import runs as broker_runs
from brokers.adapters import paper
from brokers.models import (
    ActionOutcome,
    BrokerAction,
    BrokerRun,
    PaperOrder,
    PaperPosition,
    RunKind,
)
from brokers.runs import planning
from killswitch import services as ks
from killswitch.models import Event

from ..conftest import FAST_RUNS, use_config

pytestmark = pytest.mark.django_db(transaction=True)

BROKERS = {"paper": {"accounts": ["DU111111", "DU222222"]}, "runs": FAST_RUNS}


@pytest.fixture(autouse=True)
def demo(monkeypatch, set_policy):
    use_config(monkeypatch, BROKERS)
    set_policy(cooldown_minutes=0)
    # No worker in this module: runs are executed here by calling the service.
    monkeypatch.setattr(planning, "enqueue_run", lambda **kw: True)
    monkeypatch.setattr(planning, "publish_run", lambda run_id, countdown=0: True)
    demo_data.seed_demo_data()


def activate(scope: str, level: str):
    return ks.activate(scope=scope, level=level, reason="test", actor="cli:tester", source="cli")


def resume(scope: str) -> None:
    ks.deactivate(scope=scope, actor="cli:tester", source="cli", reason="test")


def book(account: str = "DU111111") -> dict[tuple[str, str], Decimal]:
    return {(p.symbol, p.asset_class): p.quantity
            for p in PaperPosition.objects.filter(account__code=account).exclude(quantity=0)}


def run_of(result) -> BrokerRun:
    return BrokerRun.objects.get(event_seq=result.seq, account="DU111111")


def execute(run: BrokerRun) -> BrokerRun:
    broker_runs.execute_run(run_id=run.pk)
    run.refresh_from_db()
    return run


def test_a_kill_lifted_before_a_worker_took_it_is_superseded_and_touches_nothing():
    """The issue's reproduction: kill, resume, a new position, then the worker arrives."""
    run = run_of(activate("account:DU111111", "kill"))
    resume("account:DU111111")
    paper.set_price("IBM", 150)
    paper.place_order(account="DU111111", symbol="IBM", side="BUY", quantity=7, order_type="MKT")
    before = book()
    working = PaperOrder.objects.filter(account__code="DU111111", status="working").count()
    run = execute(run)
    assert run.state == "superseded"
    assert "is at running now; nothing more was sent" in run.notes
    assert book() == before and before[("IBM", "stock")] == Decimal(7)
    assert PaperOrder.objects.filter(account__code="DU111111", status="working").count() == working == 3
    assert not run.actions.exists()


def test_a_run_lifted_between_steps_sends_nothing_more(monkeypatch):
    """Lifted after the cancel round: the close round never happens."""
    from brokers.runs import execution

    run = run_of(activate("account:DU111111", "kill"))
    real = execution.cancel_step

    def cancel_then_resume(*args, **kwargs):
        real(*args, **kwargs)
        resume("account:DU111111")

    monkeypatch.setattr(execution, "cancel_step", cancel_then_resume)
    run = execute(run)
    assert run.state == "superseded"
    assert {a.action for a in run.actions.all()} == {"cancel"}
    assert book()[("AAPL", "stock")] == Decimal(100)  # not closed


def test_kill_lowered_to_halt_stops_closing_and_keeps_cancelling(monkeypatch):
    from brokers.runs import execution

    run = run_of(activate("account:DU111111", "kill"))
    real = execution.cancel_step

    def cancel_then_lower(*args, **kwargs):
        real(*args, **kwargs)
        activate("account:DU111111", "halt")

    monkeypatch.setattr(execution, "cancel_step", cancel_then_lower)
    run = execute(run)
    assert run.state == "completed"
    assert "Kill lowered to halt" in run.notes and "closing stopped" in run.notes
    assert not run.actions.filter(action="close").exists()
    assert book() == {("AAPL", "stock"): Decimal(100), ("TSLA", "stock"): Decimal(-50)}
    assert not PaperOrder.objects.filter(account__code="DU111111", status="working").exists()


def test_a_stale_run_is_superseded_by_the_sweep_instead_of_being_enqueued(monkeypatch):
    enqueued: list[int] = []
    monkeypatch.setattr(planning, "enqueue_run", lambda *, run_id, countdown=0: enqueued.append(run_id))
    run = run_of(activate("account:DU111111", "kill"))
    resume("account:DU111111")
    BrokerRun.objects.filter(pk=run.pk).update(due_at=timezone.now() - timedelta(seconds=60))
    enqueued.clear()
    assert broker_runs.resume_stale_runs() == []
    assert enqueued == []
    run.refresh_from_db()
    assert run.state == "superseded"


def test_an_aapl_stock_and_an_aapl_option_are_each_closed_as_themselves():
    paper.set_price("AAPL", 190, "option")
    paper.set_position(account="DU111111", symbol="AAPL", quantity=-3, avg_cost=9, asset_class="option")
    run = execute(run_of(activate("symbol:AAPL", "kill")))
    assert run.state == "completed"
    closes = {(a.position_key, a.side, a.quantity, a.outcome) for a in run.actions.filter(action="close")}
    assert closes == {("stock:AAPL", "SELL", Decimal(100), "filled"), ("option:AAPL", "BUY", Decimal(3), "filled")}
    orders = PaperOrder.objects.filter(client_order_id__startswith="ks-close-")
    assert {(o.asset_class, o.side, o.quantity) for o in orders} == {("stock", "SELL", 100), ("option", "BUY", 3)}
    assert book() == {("TSLA", "stock"): Decimal(-50)}


def test_a_position_that_cannot_be_closed_is_recorded_unclosable_with_an_alert_and_nothing_is_traded():
    paper.set_position(account="DU111111", symbol="VFIAX", quantity=40, avg_cost=500, asset_class="fund")
    run = execute(run_of(activate("account:DU111111", "kill")))
    assert run.state == "failed"
    [stuck] = run.actions.filter(outcome=ActionOutcome.UNCLOSABLE)
    assert (stuck.position_key, stuck.quantity) == ("fund:VFIAX", Decimal(40))
    assert "end-of-day NAV" in stuck.detail
    assert not PaperOrder.objects.filter(symbol="VFIAX").exists()  # nothing sent, nothing else traded
    alerts = [e.detail for e in Event.objects.filter(action="alert")]
    assert any("cannot close VFIAX fund 40" in a and "close it by hand" in a for a in alerts)
    assert "unclosable, left open" in run.error and run.attempts == 1  # waiting would not help
    assert book() == {("VFIAX", "fund"): Decimal(40)}  # the rest was closed


def test_a_late_position_report_never_sends_a_second_close():
    """The position report trails the closing fill: the run waits for it instead of
    selling again (today: a retry more than 3 s later sent a second full close)."""
    run = run_of(activate("account:DU111111", "kill"))
    paper.hold_position_reports("DU111111")
    run = execute(run)
    assert run.state == "closing" or run.state == "verifying"
    assert "not flat" in run.error
    # Much later than any fixed window: still only one closing order per position.
    BrokerAction.objects.filter(run=run).update(finished_at=timezone.now() - timedelta(seconds=10))
    run = execute(run)
    assert "Not closed again" in run.notes
    closing = PaperOrder.objects.filter(client_order_id__startswith="ks-close-")
    assert sorted((o.symbol, o.side, o.quantity) for o in closing) == [("AAPL", "SELL", 100), ("TSLA", "BUY", 50)]
    paper.release_position_reports("DU111111")
    run = execute(run)
    assert run.state == "completed"
    assert book() == {}
    assert PaperOrder.objects.filter(client_order_id__startswith="ks-close-").count() == 2


def test_a_fill_by_another_order_after_the_close_is_closed_from_the_executions():
    """A strategy order fills after the closing order did, while the report still trails:
    the executions show the new exposure, and only that is closed."""
    run = run_of(activate("account:DU111111", "kill"))
    paper.hold_position_reports("DU111111")
    run = execute(run)
    rogue = paper.place_order(account="DU111111", symbol="AAPL", side="BUY", quantity=30, order_type="MKT")
    assert rogue.status == "filled"
    run = execute(run)
    closing = PaperOrder.objects.filter(client_order_id__startswith="ks-close-", symbol="AAPL").order_by("id")
    assert [(o.side, o.quantity) for o in closing] == [("SELL", 100), ("SELL", 30)]
    paper.release_position_reports("DU111111")
    run = execute(run)
    assert run.state == "completed" and book() == {}


def test_a_failed_run_settles_its_closing_orders_and_blocks_no_later_run():
    first = run_of(activate("account:DU111111", "kill"))
    # A worker recorded a closing order and died before sending it; the run then failed.
    ref = f"ks-close-{first.pk}-1"
    BrokerAction.objects.create(run=first, key=ref, action="close", account="DU111111", client_ref=ref,
                                symbol="AAPL", position_key="stock:AAPL", leg=ref, basis=100, side="SELL",
                                quantity=100, outcome=ActionOutcome.SENDING)
    broker_runs.fail_run(run=first, error="gave up")
    action = BrokerAction.objects.get(key=ref)
    assert (action.outcome, action.detail) == ("error", "not found at the broker by its reference: never sent")
    resume("account:DU111111")
    second = execute(run_of(activate("account:DU111111", "kill")))
    assert second.state == "completed" and book() == {}


def test_a_dead_workers_open_closing_rows_are_re_read_not_waited_on():
    """A run whose worker died mid-close (lease expired, never failed): a later kill on
    the account re-reads its rows at the broker instead of waiting on them."""
    first = run_of(activate("account:DU111111", "kill"))
    ref = f"ks-close-{first.pk}-1"
    BrokerAction.objects.create(run=first, key=ref, action="close", account="DU111111", client_ref=ref,
                                symbol="AAPL", position_key="stock:AAPL", leg=ref, basis=100, side="SELL",
                                quantity=100, outcome=ActionOutcome.SENDING)
    paper.place_order(account="DU111111", symbol="AAPL", side="SELL", quantity=100, order_type="MKT",
                      client_order_id=ref)  # it was sent, and filled
    BrokerRun.objects.filter(pk=first.pk).update(state="closing", lease_owner="dead",
                                                 lease_until=timezone.now() - timedelta(seconds=5))
    second = execute(BrokerRun.objects.get(event_seq=activate("global", "kill").seq, account="DU111111"))
    assert second.state == "completed" and book() == {}
    assert BrokerAction.objects.get(key=ref).outcome == "filled"
    # AAPL was closed once (by the dead run's order), TSLA once (by the global run).
    assert sorted((o.symbol, o.side, o.quantity) for o in PaperOrder.objects.filter(order_type="MKT")) == [
        ("AAPL", "SELL", 100), ("TSLA", "BUY", 50)]


def test_the_sweep_cancels_beside_a_run_nobody_took_but_not_beside_a_live_worker():
    run = run_of(activate("account:DU111111", "halt"))
    # A live worker holds it: the sweep leaves the account to that run.
    BrokerRun.objects.filter(pk=run.pk).update(lease_owner="worker-1", lease_until=timezone.now() + timedelta(60))
    assert broker_runs.sweep_once().runs == []
    assert PaperOrder.objects.filter(account__code="DU111111", status="working").count() == 3
    # Nobody took it (a stopped worker; the message sits with it): overdue and unheld.
    ago = timezone.now() - timedelta(seconds=10)
    BrokerRun.objects.filter(pk=run.pk).update(lease_owner="", lease_until=None, due_at=ago, created_at=ago)
    report = broker_runs.sweep_once()
    [sweep] = report.runs
    assert (sweep.kind, sweep.account, sweep.state, sweep.actions.count()) == (RunKind.SWEEP, "DU111111",
                                                                               "completed", 3)
    assert not PaperOrder.objects.filter(account__code="DU111111", status="working").exists()
    run.refresh_from_db()
    assert (run.lease_owner, run.state) == ("", "pending")  # handed back for its worker
    assert execute(run).state == "completed"


def test_a_run_nobody_works_raises_one_stall_alert(monkeypatch):
    monkeypatch.setattr(planning, "enqueue_run", lambda *, run_id, countdown=0: True)
    run = run_of(activate("account:DU111111", "kill"))
    # Nobody has touched it for two minutes; the sweep re-enqueues it every pass.
    ago = timezone.now() - timedelta(seconds=120)
    BrokerRun.objects.filter(pk=run.pk).update(due_at=ago, created_at=ago, updated_at=ago)
    assert broker_runs.resume_stale_runs() == [run.pk]
    BrokerRun.objects.filter(pk=run.pk).update(due_at=ago)
    assert broker_runs.resume_stale_runs() == [run.pk]
    alerts = Event.objects.filter(action="alert")
    assert alerts.count() == 1
    assert f"broker run {run.pk} (kill, account DU111111) has not been worked" in alerts.get().detail
