"""Rules of the runs without a worker: idempotency after a crash, the receiver, the
sweep, PAPER_ONLY, configuration errors, the API and the paper broker's commands."""

from __future__ import annotations

import json
import threading
from decimal import Decimal
from io import StringIO

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from brokers import demo as demo_data
from brokers import runs as broker_runs
from brokers.adapters import BrokerError, adapter_for, paper
from brokers.cli import sweep as sweep_cli
from brokers.config import parse_brokers_config
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
from tests.conftest import wait_for
from tests.events import event_of

from ..conftest import FAST_RUNS, use_config

pytestmark = pytest.mark.django_db(transaction=True)

BROKERS = {"paper": {"accounts": ["DU111111", "DU222222"]}, "runs": FAST_RUNS}


@pytest.fixture(autouse=True)
def demo(monkeypatch):
    use_config(monkeypatch, BROKERS)
    # No worker in this module: runs are executed in-process by calling the service.
    monkeypatch.setattr(planning, "enqueue_run", lambda **kw: True)
    monkeypatch.setattr(planning, "publish_run", lambda run_id, countdown=0: True)
    demo_data.seed_demo_data()


def activate(scope: str, level: str):
    return ks.activate(scope=scope, level=level, reason="test", actor="cli:tester", source="cli")


def test_a_restarted_run_finds_its_closing_order_by_reference_and_never_sends_a_second():
    result = activate("account:DU111111", "kill")
    [run] = BrokerRun.objects.all()
    # A previous worker recorded the closing order, sent it, and died before noting the answer.
    ref = f"ks-close-{run.pk}-AAPL-1"
    BrokerAction.objects.create(run=run, key=ref, action="close", account="DU111111", client_ref=ref,
                                symbol="AAPL", side="SELL", quantity=100, outcome=ActionOutcome.SENDING)
    paper.place_order(account="DU111111", symbol="AAPL", side="SELL", quantity=100, order_type="MKT",
                      client_order_id=ref, strategy="killswitch")
    assert result.changed
    broker_runs.execute_run(run_id=run.pk)
    run.refresh_from_db()
    assert run.state == "completed"
    assert PaperOrder.objects.filter(symbol="AAPL", side="SELL", order_type="MKT").count() == 1
    action = BrokerAction.objects.get(key=ref)
    assert (action.outcome, action.attempts) == ("filled", 1)
    assert not PaperPosition.objects.filter(account__code="DU111111").exclude(quantity=0).exists()


def test_a_closing_order_recorded_but_never_sent_is_sent_once():
    activate("account:DU111111", "kill")
    [run] = BrokerRun.objects.all()
    ref = f"ks-close-{run.pk}-AAPL-1"
    BrokerAction.objects.create(run=run, key=ref, action="close", account="DU111111", client_ref=ref,
                                symbol="AAPL", side="SELL", quantity=100, outcome=ActionOutcome.SENDING)
    broker_runs.execute_run(run_id=run.pk)
    closes = list(BrokerAction.objects.filter(run=run, symbol="AAPL", action="close").order_by("id"))
    assert [a.outcome for a in closes] == ["error", "filled"]
    assert "never sent" in closes[0].detail
    assert PaperOrder.objects.filter(symbol="AAPL", order_type="MKT").count() == 1


def test_running_a_finished_run_again_does_nothing():
    activate("account:DU111111", "kill")
    [run] = BrokerRun.objects.all()
    broker_runs.execute_run(run_id=run.pk)
    orders = PaperOrder.objects.count()
    actions = BrokerAction.objects.count()
    broker_runs.execute_run(run_id=run.pk)
    assert (PaperOrder.objects.count(), BrokerAction.objects.count()) == (orders, actions)


def test_a_run_held_by_another_worker_is_not_touched_and_retried_after_its_lease():
    activate("account:DU111111", "halt")
    [run] = BrokerRun.objects.all()
    from datetime import timedelta

    from django.utils import timezone

    BrokerRun.objects.filter(pk=run.pk).update(lease_owner="other", lease_until=timezone.now() + timedelta(seconds=3))
    step = broker_runs.execute_run(run_id=run.pk)
    assert step.retry_in is not None and 2 < step.retry_in <= 3.2
    assert PaperOrder.objects.filter(account__code="DU111111", status="working").count() == 3


def test_receiver_creates_one_run_per_account_and_is_idempotent():
    result = activate("global", "halt")
    runs = broker_runs.create_runs_for_event(event=event_of(result))
    again = broker_runs.create_runs_for_event(event=event_of(result))
    assert sorted(r.account for r in runs) == ["DU111111", "DU222222"]
    assert [r.pk for r in runs] == [r.pk for r in again]
    assert BrokerRun.objects.count() == 2


def test_an_unconfigured_account_gets_a_run_that_fails_with_an_alert():
    activate("account:U999", "halt")
    [run] = BrokerRun.objects.all()
    broker_runs.execute_run(run_id=run.pk)
    run.refresh_from_db()
    assert (run.state, run.broker) == ("failed", "unknown")
    assert "not configured" in run.error
    assert Event.objects.filter(action="alert", seq=run.alert_event_seq).exists()


def test_paper_only_refuses_any_other_broker(monkeypatch, settings):
    use_config(monkeypatch, {"paper": {"accounts": ["DU111111"]},
                             "ib": {"connections": [{"name": "live", "port": 4001, "accounts": ["U123"]}]}})
    settings.PAPER_ONLY = True
    with pytest.raises(BrokerError, match="PAPER_ONLY") as info:
        adapter_for("U123")
    assert info.value.retryable is False
    assert adapter_for("DU111111").kind == "paper"


@pytest.mark.parametrize(("raw", "message"), [
    ({"paper": {"accounts": "DU1"}}, "brokers.paper.accounts='DU1' is invalid; expected a list of account ids"),
    ({"runs": {"max_attempts": 0}}, "brokers.runs.max_attempts=0 is invalid; expected a whole number between 1"),
    ({"ib": {"connections": [{"port": 99999, "accounts": ["U1"]}]}},
     "brokers.ib.connections[0].port=99999 is invalid; expected a whole number between 1 and 65535"),
    ({"ib": {"connections": [{"accounts": ["DU111111"]}]}},
     "brokers.ib.connections[0].accounts='DU111111' is invalid; expected an account not already configured"),
    ({"ib": {"connections": [{"accounts": ["U1"], "client_id": 5, "sweep_client_id": 5}]}},
     "sweep_client_id=5 is invalid; expected a client id other than client_id (5)"),
    ({"colour": "red"}, "brokers.colour='red' is invalid; expected one of the known keys"),
])
def test_bad_configuration_names_key_value_and_expectation(raw, message):
    with pytest.raises(ImproperlyConfigured, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        parse_brokers_config(raw)


def test_sweep_cancels_an_order_placed_in_a_halted_scope_and_records_it():
    activate("account:DU111111", "halt")
    [run] = BrokerRun.objects.all()
    broker_runs.execute_run(run_id=run.pk)
    stop = threading.Event()
    out = StringIO()
    loop = threading.Thread(target=sweep_cli.run, args=({"interval": 0.1}, out, StringIO(), stop), daemon=True)
    loop.start()
    try:
        # A process ignoring the switch places an order; another account is not halted.
        rogue = paper.place_order(account="DU111111", symbol="AAPL", side="BUY", quantity=5, limit_price=150,
                                  strategy="rogue")
        fine = paper.place_order(account="DU222222", symbol="AAPL", side="BUY", quantity=5, limit_price=150)
        wait_for(lambda: PaperOrder.objects.get(pk=rogue.pk).status == "cancelled", timeout=10)
    finally:
        stop.set()
        loop.join(timeout=10)
    sweep = BrokerRun.objects.get(kind=RunKind.SWEEP)
    assert (sweep.scope_label, sweep.level, sweep.account, sweep.state) == ("account:DU111111", "halt",
                                                                              "DU111111", "completed")
    assert [(a.broker_order_id, a.outcome) for a in sweep.actions.all()] == [(str(rogue.pk), "cancelled")]
    assert PaperOrder.objects.get(pk=fine.pk).status == "working"
    assert f"sweep run {sweep.pk}" in out.getvalue()


def test_a_sweep_that_lost_its_lease_cancels_nothing():
    # A sweep frozen mid-pass (SIGSTOP) and woken after another one took over: its pass
    # checks the lease right before it cancels, and leaves the orders to the leader.
    activate("account:DU111111", "halt")
    [run] = BrokerRun.objects.all()
    broker_runs.execute_run(run_id=run.pk)
    rogue = paper.place_order(account="DU111111", symbol="AAPL", side="BUY", quantity=5, limit_price=150,
                              strategy="rogue")
    checks = []
    report = broker_runs.sweep_once(still_leading=lambda: checks.append(1) or False)
    assert checks and report.runs == [] and PaperOrder.objects.get(pk=rogue.pk).status == "working"
    assert any("no longer leading" in e for e in report.errors)
    assert not BrokerRun.objects.filter(kind=RunKind.SWEEP).exists()
    report = broker_runs.sweep_once(still_leading=lambda: True)
    assert [r.state for r in report.runs] == ["completed"]
    assert PaperOrder.objects.get(pk=rogue.pk).status == "cancelled"


def test_sweep_resumes_a_run_whose_message_was_lost(monkeypatch):
    enqueued: list[int] = []
    monkeypatch.setattr(planning, "enqueue_run", lambda *, run_id, countdown=0: enqueued.append(run_id))
    activate("account:DU111111", "halt")
    [run] = BrokerRun.objects.all()
    from datetime import timedelta

    from django.utils import timezone

    BrokerRun.objects.filter(pk=run.pk).update(due_at=timezone.now() - timedelta(seconds=10))
    enqueued.clear()
    report = broker_runs.sweep_once()
    assert report.resumed == [run.pk] and enqueued == [run.pk]


def test_api_lists_runs_newest_first_with_actions_for_a_viewer(client, viewer, nobody):
    activate("account:DU111111", "halt")
    activate("account:DU222222", "halt")
    for run in BrokerRun.objects.all():
        broker_runs.execute_run(run_id=run.pk)
    client.force_login(viewer)
    body = client.get("/api/risk/runs").json()
    assert [r["account"] for r in body["runs"]] == ["DU222222", "DU111111"]
    first = body["runs"][1]
    assert first["state"] == "completed" and first["scope"] == "account:DU111111"
    assert {a["outcome"] for a in first["actions"]} == {"cancelled"} and len(first["actions"]) == 3
    detail = client.get(f"/api/risk/runs/{first['id']}").json()
    assert detail["actions"] == first["actions"]
    assert client.get("/api/risk/runs/999999").status_code == 404
    client.force_login(nobody)
    assert client.get("/api/risk/runs").status_code == 403
    client.logout()
    assert client.get("/api/risk/runs").status_code in (401, 403)


def test_paper_command_places_fills_and_lists():
    out = StringIO()
    call_command("paper", "price", "IBM", "100", stdout=out)
    call_command("paper", "place", "DU222222", "BUY", "10", "IBM", "--limit", "99", "--strategy", "s1", stdout=out)
    order = json.loads(out.getvalue().splitlines()[-1])
    assert (order["status"], order["strategy"]) == ("working", "s1")
    call_command("paper", "fill", str(order["id"]), "--qty", "4", stdout=out)
    call_command("paper", "price", "IBM", "98", stdout=out)  # crosses the limit: the rest fills
    assert PaperOrder.objects.get(pk=order["id"]).status == "filled"
    out = StringIO()
    call_command("paper", "positions", "--account", "DU222222", "--json", stdout=out)
    assert {"account": "DU222222", "symbol": "IBM", "asset_class": "stock", "quantity": "10",
            "avg_cost": "99"} in json.loads(out.getvalue())
    call_command("paper", "place", "DU222222", "SELL", "1", "ZZZ", "--market", stdout=out)
    assert PaperOrder.objects.get(symbol="ZZZ").reject_reason == "no price for ZZZ"


def test_seed_is_idempotent():
    counts = (PaperOrder.objects.count(), PaperPosition.objects.count())
    demo_data.seed_demo_data()
    call_command("paper", "seed", stdout=StringIO())
    assert (PaperOrder.objects.count(), PaperPosition.objects.count()) == counts == (5, 4)
    assert PaperPosition.objects.get(account__code="DU111111", symbol="TSLA").quantity == Decimal(-50)


def test_seed_opens_every_configured_paper_account_so_a_global_halt_fails_nowhere():
    from brokers.config import brokers_config
    from brokers.models import PaperAccount

    demo_data.seed_demo_data()
    assert set(brokers_config().paper_accounts) <= set(PaperAccount.objects.values_list("code", flat=True))


@pytest.fixture
def lost_hook():
    """No broker receiver runs: as when the in-transaction receiver failed (its savepoint
    rolled back) and the process died between commit and the after-commit hook."""
    from brokers import receivers
    from killswitch.runtime.hooks import event_committed, event_recorded

    event_recorded.disconnect(dispatch_uid="brokers.create_runs")
    event_committed.disconnect(dispatch_uid="brokers.start_runs")
    yield
    event_committed.connect(receivers.start_runs, dispatch_uid="brokers.start_runs")
    event_recorded.connect(receivers.create_runs, dispatch_uid="brokers.create_runs")


def test_the_sweep_starts_runs_a_lost_after_commit_hook_never_created(lost_hook, trader):
    from brokers.models import BrokerRun

    result = ks.activate(scope="account:DU111111", level="kill", reason="r", actor=trader, source="api")
    assert not BrokerRun.objects.exists()
    started = broker_runs.ensure_runs_for_missed_events()
    assert [(r.account, r.event_seq, r.level) for r in started] == [("DU111111", result.seq, "kill")]
    assert broker_runs.ensure_runs_for_missed_events() == []  # idempotent


def test_runs_commit_with_their_event_and_a_lost_hook_only_delays_them(monkeypatch, trader):
    """The runs are written in the event's transaction; when the after-commit hook that
    hands them to the workers never runs, the sweep does once they are overdue."""
    from datetime import timedelta

    from django.utils import timezone

    from killswitch.runtime.hooks import event_committed

    enqueued: list[int] = []
    monkeypatch.setattr(planning, "enqueue_run", lambda *, run_id, countdown=0: enqueued.append(run_id))
    event_committed.disconnect(dispatch_uid="brokers.start_runs")
    try:
        result = ks.activate(scope="global", level="halt", reason="r", actor=trader, source="api")
    finally:
        from brokers import receivers

        event_committed.connect(receivers.start_runs, dispatch_uid="brokers.start_runs")
    runs = list(BrokerRun.objects.order_by("account"))
    assert [(r.account, r.event_seq, r.state) for r in runs] == [
        ("DU111111", result.seq, "pending"), ("DU222222", result.seq, "pending")]
    assert all(r.due_at is not None for r in runs)
    assert broker_runs.resume_stale_runs() == []  # not overdue yet: a worker may be about to take them
    BrokerRun.objects.update(due_at=timezone.now() - timedelta(seconds=10))
    assert sorted(broker_runs.resume_stale_runs()) == sorted(r.pk for r in runs) == sorted(enqueued)


def test_a_failing_in_transaction_receiver_never_undoes_the_event(trader):
    """A receiver whose SQL fails is rolled back alone (on PostgreSQL the failed statement
    would otherwise abort the transaction); the halt commits and gets its runs after commit."""
    from django.db import connection

    from killswitch.runtime.hooks import event_recorded

    def broken(*, event, changed):
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO no_such_table VALUES (1)")

    event_recorded.disconnect(dispatch_uid="brokers.create_runs")
    event_recorded.connect(broken, dispatch_uid="tests.broken")
    try:
        result = ks.activate(scope="account:DU222222", level="halt", reason="r", actor=trader, source="api")
    finally:
        event_recorded.disconnect(dispatch_uid="tests.broken")
        from brokers import receivers

        event_recorded.connect(receivers.create_runs, dispatch_uid="brokers.create_runs")
    assert result.changed and Event.objects.filter(seq=result.seq, outcome="applied").exists()
    assert ks.verify_audit_chain().ok
    # The after-commit hook found no runs and created them.
    assert [(r.account, r.event_seq) for r in BrokerRun.objects.all()] == [("DU222222", result.seq)]


def test_a_lifted_halt_gets_no_late_runs(lost_hook, trader, risk_officer, set_policy):
    from brokers.models import BrokerRun

    set_policy(cooldown_minutes=0)
    ks.activate(scope="account:DU111111", level="halt", reason="r", actor=trader, source="api")
    ks.deactivate(scope="account:DU111111", actor=risk_officer, source="api")
    assert broker_runs.ensure_runs_for_missed_events() == []
    assert not BrokerRun.objects.exists()
