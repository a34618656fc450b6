"""A breaker whose figure cannot be computed shows `unknown` with why, and follows
on_unknown after its grace: `warn` is one alert per episode, `trip` is a trip that says
the figure was unknown. A warn_at crossing is one alert per window."""

from __future__ import annotations

import time

import pytest

from brokers import demo as demo_data
from brokers.adapters import paper
from brokers.adapters.paper_figures import set_offline
from brokers.models import BrokerRun
from killswitch.models import Event, Notification, Scope
from tests.conftest import wait_for

from ..conftest import FAST_RUNS, use_config, wait_runs_finished, write_policy
from .conftest import trips, wait_state, wait_trip

pytestmark = pytest.mark.django_db(transaction=True)

BROKERS = {"paper": {"accounts": ["DU111111", "DU222222"]}, "runs": FAST_RUNS}
LOSS = {"name": "desk-loss", "kind": "max_loss", "scope": "account:DU111111", "level": "halt", "limit": 1000,
        "unknown_grace_seconds": 0.5}


@pytest.fixture(scope="module")
def worker(start_worker, module_tmp):
    return start_worker(write_policy(module_tmp / "paper.yaml", BROKERS), paper_only=True)


@pytest.fixture(autouse=True)
def demo(monkeypatch, worker):
    use_config(monkeypatch, BROKERS)
    monkeypatch.setenv("NOTIFY_URLS", "json://127.0.0.1:9/breakers-test")
    demo_data.seed_demo_data()
    yield
    if BrokerRun.objects.exists():
        wait_runs_finished()


def alerts(name: str) -> list[Event]:
    return list(Event.objects.filter(actor=f"breaker:{name}", action="alert").order_by("seq"))


def test_an_unknown_figure_warns_once_per_episode_and_never_trips_by_default(run_breakers):
    paper.set_position(account="DU111111", symbol="NOPRICE", quantity=10, avg_cost=5)  # nobody quotes it
    run_breakers(LOSS)
    row = wait_state("desk-loss", "unknown")
    assert row["unknown"] == "DU111111 (paper): no last price for NOPRICE (stock): its P&L cannot be marked"
    assert row["figure"] == "unknown" and row["limit"] == "-1,000.00 USD"
    [alert] = wait_for(lambda: alerts("desk-loss"))
    assert alert.scope_label == "account:DU111111" and alert.source == "automatic"
    assert "cannot compute its figure" in alert.detail and "on_unknown is warn: it does not trip" in alert.detail
    wait_for(lambda: Notification.objects.filter(event=alert).exists())  # alerts go to the channels
    time.sleep(1.0)
    assert len(alerts("desk-loss")) == 1  # one per episode, not one per round
    assert trips("desk-loss") == [] and not Scope.objects.filter(key="DU111111").exclude(level="running").exists()
    paper.set_price("NOPRICE", "5")
    assert wait_state("desk-loss", "armed")["unknown"] == ""


def test_an_unknown_figure_trips_after_its_grace_when_on_unknown_is_trip(run_breakers):
    run_breakers({**LOSS, "on_unknown": "trip"})
    wait_state("desk-loss", "armed")
    set_offline("DU111111")
    event = wait_trip("desk-loss")
    set_offline("DU111111", False)
    assert event.reason.startswith("Breaker desk-loss (max_loss) tripped: its figure is unknown (DU111111 (paper): "
                                   "paper account DU111111 is offline since ")
    assert event.reason.endswith("and on_unknown is trip; limit -1,000.00 USD")
    [run] = wait_runs_finished()
    assert run.state == "completed"


def test_a_warn_at_crossing_notifies_once_per_window(run_breakers):
    run_breakers({**LOSS, "warn_at": 0.5, "warn_window_seconds": 3})
    wait_state("desk-loss", "armed")
    paper.set_price("AAPL", "184")  # -600: past 50% of the 1,000 limit
    assert wait_state("desk-loss", "warning")["figure"].startswith("P&L -600.00 USD")
    [alert] = wait_for(lambda: alerts("desk-loss"))
    assert "warning: P&L -600.00 USD since 00:00 UTC" in alert.detail
    assert "past 50% of its limit -1,000.00 USD (warns once per 3 s" in alert.detail
    paper.set_price("AAPL", "190")
    wait_state("desk-loss", "armed")
    paper.set_price("AAPL", "184")  # a second crossing inside the window: no second alert
    wait_state("desk-loss", "warning")
    time.sleep(0.5)
    assert len(alerts("desk-loss")) == 1
    paper.set_price("AAPL", "190")
    wait_state("desk-loss", "armed")
    time.sleep(max(0.0, 3.2 - (time.time() - alert.created_at.timestamp())))
    paper.set_price("AAPL", "184")  # the next window: it notifies again
    wait_for(lambda: len(alerts("desk-loss")) == 2)
    assert trips("desk-loss") == []
