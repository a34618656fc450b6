"""HALT and KILL at the paper broker, end to end: a transition commits, the receiver
creates runs, a real Celery worker (through the real Redis) cancels, closes and
verifies, and every action is on record."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.management import call_command

from brokers import demo as demo_data
from brokers.adapters import paper
from brokers.models import BrokerAction, BrokerRun, PaperOrder, PaperPosition
from killswitch import services as ks
from killswitch.models import Event

from ..conftest import FAST_RUNS, use_config, wait_runs_finished, write_policy

pytestmark = pytest.mark.django_db(transaction=True)

BROKERS = {"paper": {"accounts": ["DU111111", "DU222222"]}, "runs": FAST_RUNS}


@pytest.fixture(scope="module")
def worker(start_worker, module_tmp):
    return start_worker(write_policy(module_tmp / "paper.yaml", BROKERS), paper_only=True)


@pytest.fixture(autouse=True)
def demo(monkeypatch, worker):
    use_config(monkeypatch, BROKERS)
    demo_data.seed_demo_data()
    yield
    # Never leave a run half-done for the next test's flush.
    if BrokerRun.objects.exists():
        wait_runs_finished()


def positions() -> dict[tuple[str, str], Decimal]:
    return {(p.account.code, p.symbol): p.quantity for p in PaperPosition.objects.exclude(quantity=0)}


def working(**filters) -> list[PaperOrder]:
    return list(PaperOrder.objects.filter(status__in=["working", "partially_filled"], **filters))


def activate(scope: str, level: str) -> None:
    ks.activate(scope=scope, level=level, reason="test", actor="cli:tester", source="cli")


def test_halt_on_an_account_cancels_its_orders_only_and_keeps_positions():
    before = positions()
    activate("account:DU111111", "halt")
    [run] = wait_runs_finished()
    assert (run.account, run.level, run.state) == ("DU111111", "halt", "completed")
    assert working(account__code="DU111111") == []
    assert {o.client_order_id for o in working()} == {"demo-4", "demo-5"}  # DU222222 untouched
    assert positions() == before
    actions = list(run.actions.all())
    assert {(a.symbol, a.action, a.outcome) for a in actions} == {
        ("AAPL", "cancel", "cancelled"), ("TSLA", "cancel", "cancelled"), ("NVDA", "cancel", "cancelled")}
    assert all(a.attempts == 1 and a.finished_at for a in actions)


def test_global_kill_leaves_every_account_flat_with_market_closes_of_exact_size():
    activate("global", "kill")
    runs = wait_runs_finished()
    assert sorted((r.account, r.state) for r in runs) == [("DU111111", "completed"), ("DU222222", "completed")]
    assert positions() == {}
    assert working() == []
    closes = {(a.account, a.symbol): a for a in BrokerAction.objects.filter(action="close")}
    assert {k: (a.side, a.quantity, a.outcome) for k, a in closes.items()} == {
        ("DU111111", "AAPL"): ("SELL", Decimal(100), "filled"),
        ("DU111111", "TSLA"): ("BUY", Decimal(50), "filled"),
        ("DU222222", "MSFT"): ("SELL", Decimal(30), "filled"),
        ("DU222222", "SPY"): ("BUY", Decimal(20), "filled"),
    }
    # The closing orders exist at the broker under the reference recorded on the action.
    for action in closes.values():
        order = PaperOrder.objects.get(client_order_id=action.client_ref)
        assert (order.order_type, order.status, str(order.pk)) == ("MKT", "filled", action.broker_order_id)


def test_strategy_halt_cancels_that_strategy_in_every_account_and_nothing_else():
    activate("strategy:momentum", "halt")
    runs = wait_runs_finished()
    assert {r.state for r in runs} == {"completed"}
    assert {o.client_order_id for o in working()} == {"demo-2", "demo-5"}
    cancelled = BrokerAction.objects.filter(outcome="cancelled").values_list("strategy", flat=True)
    assert sorted(cancelled) == ["momentum"] * 3


def test_strategy_kill_cancels_but_leaves_positions_for_manual_management_and_says_why():
    before = positions()
    activate("strategy:momentum", "kill")
    runs = wait_runs_finished()
    assert {r.state for r in runs} == {"completed"}
    assert positions() == before
    assert all("manual management" in r.notes for r in runs)
    assert not BrokerAction.objects.filter(action="close").exists()


def test_symbol_kill_closes_only_that_symbol():
    activate("symbol:AAPL", "kill")
    wait_runs_finished()
    assert ("DU111111", "AAPL") not in positions()
    assert positions()[("DU111111", "TSLA")] == Decimal(-50)
    assert {o.client_order_id for o in working()} == {"demo-2", "demo-3", "demo-4", "demo-5"}


def test_a_partly_filled_order_is_cancelled_and_recorded_as_filled_before_cancel():
    order = PaperOrder.objects.get(client_order_id="demo-1")
    paper.fill(order.pk, quantity=20)
    activate("account:DU111111", "halt")
    wait_runs_finished()
    action = BrokerAction.objects.get(broker_order_id=str(order.pk))
    assert (action.outcome, action.filled_quantity) == ("filled_before_cancel", Decimal(20))
    order.refresh_from_db()
    assert (order.status, order.filled_quantity) == ("cancelled", Decimal(20))
    assert positions()[("DU111111", "AAPL")] == Decimal(120)  # halt keeps positions, fills included


def test_a_closing_order_the_broker_rejects_fails_the_run_and_raises_an_alert():
    paper.set_position(account="DU222222", symbol="NOPRICE", quantity=10, avg_cost=5)
    activate("account:DU222222", "kill")
    [run] = wait_runs_finished()
    assert run.state == "failed"
    assert "not flat" in run.error and "NOPRICE" in run.error
    rejected = BrokerAction.objects.filter(symbol="NOPRICE", action="close")
    assert {a.outcome for a in rejected} == {"rejected"}
    assert all("no price for NOPRICE" in a.detail for a in rejected)
    alert = Event.objects.get(action="alert")
    assert (alert.seq, alert.actor, alert.scope_key) == (run.alert_event_seq, "system:brokers", "DU222222")
    assert f"broker run {run.pk}" in alert.detail
    # Everything that could be closed was closed.
    assert ("DU222222", "MSFT") not in positions()


def test_runs_and_actions_are_visible_in_the_cli():
    activate("account:DU111111", "halt")
    [run] = wait_runs_finished()
    from io import StringIO

    out = StringIO()
    call_command("killswitch", "runs", "--id", str(run.pk), stdout=out)
    text = out.getvalue()
    lines = text.splitlines()
    assert lines[0].split()[:2] == ["RUN", "KIND"]  # a table with its header row
    assert lines[1].split()[:2] == [str(run.pk), "switch"] and "completed" in lines[1]
    assert sum(1 for line in lines if line.startswith("cancel ")) == 3


@pytest.mark.parametrize("level", ["pause", "running"])
def test_levels_below_halt_start_no_run(level, set_policy):
    if level == "running":
        set_policy(cooldown_minutes=0)
        activate("global", "pause")
        ks.deactivate(scope="global", actor="cli:tester", source="cli")
    else:
        activate("global", level)
    assert not BrokerRun.objects.exists()
    assert len(working()) == 5


def test_escalation_from_halt_to_kill_starts_a_closing_run():
    activate("account:DU111111", "halt")
    wait_runs_finished()
    assert positions()[("DU111111", "AAPL")] == Decimal(100)
    activate("account:DU111111", "kill")
    runs = wait_runs_finished()
    assert [r.level for r in runs] == ["halt", "kill"]
    assert ("DU111111", "AAPL") not in positions()
    assert runs[1].state == "completed"


def test_an_out_of_band_redis_kill_starts_runs_too(reconciler, redis_client):
    redis_client.set("trading_switch", "kill")
    runs = wait_runs_finished()
    assert {(r.scope_kind, r.level, r.state) for r in runs} == {("global", "kill", "completed")}
    assert Event.objects.get(seq=runs[0].event_seq).source == "redis"
    assert positions() == {}


def _sweep_loop():
    import threading
    from io import StringIO

    from brokers.cli import sweep as sweep_cli

    stop = threading.Event()
    out = StringIO()
    loop = threading.Thread(target=sweep_cli.run, args=({"interval": 0.2}, out, StringIO(), stop), daemon=True)
    loop.start()
    return stop, loop, out


def test_with_the_worker_stopped_the_sweep_cancels_and_the_run_finishes_when_it_is_back(worker):
    from tests.conftest import wait_for

    worker.pause()  # SIGSTOP: alive, holding whatever it took, doing nothing
    stop, loop, out = _sweep_loop()
    try:
        activate("account:DU111111", "halt")
        wait_for(lambda: not working(account__code="DU111111"), timeout=30)
    finally:
        stop.set()
        loop.join(timeout=10)
        worker.resume()
    sweep = BrokerRun.objects.get(kind="sweep")
    assert (sweep.account, sweep.scope_label, sweep.state) == ("DU111111", "account:DU111111", "completed")
    assert sorted(a.symbol for a in sweep.actions.all()) == ["AAPL", "NVDA", "TSLA"]
    [run] = [r for r in wait_runs_finished() if r.kind == "switch"]
    assert run.state == "completed"
    assert not run.actions.filter(action="cancel").exists()  # nothing was left, nothing cancelled twice
    assert {o.client_order_id for o in working()} == {"demo-4", "demo-5"}


def test_kill_resume_new_position_worker_back_leaves_the_new_position_and_says_superseded(worker, set_policy):
    set_policy(cooldown_minutes=0)
    worker.pause()
    try:
        activate("account:DU111111", "kill")
        ks.deactivate(scope="account:DU111111", actor="cli:tester", source="cli", reason="false alarm")
        paper.set_price("IBM", 150)
        paper.place_order(account="DU111111", symbol="IBM", side="BUY", quantity=25, order_type="MKT")
        before = positions()
    finally:
        worker.resume()
    [run] = wait_runs_finished()
    assert run.state == "superseded"
    assert "nothing more was sent" in run.notes
    assert positions() == before and before[("DU111111", "IBM")] == Decimal(25)
    assert not run.actions.exists()
    assert len(working(account__code="DU111111")) == 3
