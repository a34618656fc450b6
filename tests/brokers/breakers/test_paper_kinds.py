"""Every kind of breaker against the paper broker: the breaker loop reads the broker and
the trading processes itself, trips the scope through the services, and a real Celery
worker does the broker run that any activation gets (cancels, for kill the closes)."""

from __future__ import annotations

import re
import time
from decimal import Decimal

import pytest
from django.conf import settings
from killswitch_client import KillSwitch

from brokers import demo as demo_data
from brokers.adapters import paper
from brokers.adapters.paper_figures import set_offline
from brokers.models import BrokerRun, PaperOrder, PaperPosition
from killswitch.models import Notification, Scope
from tests.conftest import wait_for

from ..conftest import FAST_RUNS, use_config, wait_runs_finished, write_policy
from .conftest import trips, wait_state, wait_trip

pytestmark = pytest.mark.django_db(transaction=True)

BROKERS = {"paper": {"accounts": ["DU111111", "DU222222"]}, "runs": FAST_RUNS}
WORKING = ("working", "partially_filled")


@pytest.fixture(scope="module")
def worker(start_worker, module_tmp):
    return start_worker(write_policy(module_tmp / "paper.yaml", BROKERS), paper_only=True)


@pytest.fixture(autouse=True)
def demo(monkeypatch, worker, reconciler):
    use_config(monkeypatch, BROKERS)
    # A channel, so that a trip's notification is queued as any activation's is.
    monkeypatch.setenv("NOTIFY_URLS", "json://127.0.0.1:9/breakers-test")
    demo_data.seed_demo_data()
    yield
    if BrokerRun.objects.exists():
        wait_runs_finished()


def level(scope: str) -> str:
    kind, _, key = scope.partition(":")
    row = Scope.objects.filter(kind=kind, key=key).first()
    return row.level if row else "running"


def working(**filters) -> set[str]:
    return {o.client_order_id or str(o.pk) for o in PaperOrder.objects.filter(status__in=WORKING, **filters)}


def client(**identity) -> KillSwitch:
    switch = KillSwitch(settings.REDIS_URL, report_interval=0.2, exit_on_kill=False, **identity)
    switch.start()
    return switch


def test_a_price_drop_halts_the_account_by_itself_naming_the_breaker_the_figure_and_the_limit(run_breakers):
    run_breakers({"name": "desk-loss", "kind": "max_loss", "scope": "account:DU111111", "level": "halt",
                  "limit": 500, "warn_at": 0.9})
    armed = wait_state("desk-loss", "armed")
    assert armed["figure"].startswith("P&L 0.00 USD since 00:00 UTC")
    paper.set_price("AAPL", "184")  # 100 AAPL held: -600 USD since the day's first mark (190)
    event = wait_trip("desk-loss")
    assert (event.outcome, event.source, event.scope_label, event.previous_level, event.new_level) == (
        "applied", "automatic", "account:DU111111", "running", "halt")
    assert event.reason.startswith("Breaker desk-loss (max_loss) tripped: P&L -600.00 USD since 00:00 UTC (")
    assert event.reason.endswith("beyond its limit -500.00 USD")
    assert level("account:DU111111") == "halt"
    [run] = wait_runs_finished()
    assert (run.account, run.level, run.state, run.event_seq) == ("DU111111", "halt", "completed", event.seq)
    assert working(account__code="DU111111") == set()
    assert working(account__code="DU222222") == {"demo-4", "demo-5"}  # another account: untouched
    notice = wait_for(lambda: Notification.objects.filter(event=event).first())
    assert "Breaker desk-loss (max_loss) tripped: P&L -600.00 USD" in notice.body
    row = wait_state("desk-loss", "tripped")
    assert (row["latch"]["seq"], row["last_trip"]["seq"]) == (event.seq, event.seq)
    # Never resumes, never trips twice: the breach lasts, the loop keeps evaluating.
    time.sleep(0.5)
    assert len(trips("desk-loss")) == 1 and level("account:DU111111") == "halt"


def test_a_drawdown_from_the_days_peak_halts(run_breakers):
    run_breakers({"name": "giveback", "kind": "max_drawdown", "scope": "account:DU222222", "level": "halt",
                  "limit": 300})
    wait_state("giveback", "armed")
    paper.set_price("MSFT", "419")  # 30 MSFT: +270, the day's peak
    wait_for(lambda: "peak P&L 270.00 USD" in wait_state("giveback", "armed")["figure"])
    paper.set_price("MSFT", "405")  # -150: 420 given back
    event = wait_trip("giveback")
    assert "drawdown 420.00 USD from the day's peak P&L 270.00 USD (P&L -150.00 USD)" in event.reason
    assert event.reason.endswith("beyond its limit 300.00 USD")
    [run] = wait_runs_finished()
    assert (run.account, run.state) == ("DU222222", "completed")
    assert working(account__code="DU222222") == set() and working(account__code="DU111111")


def test_too_many_orders_from_one_strategy_halt_that_strategy_only(run_breakers):
    run_breakers({"name": "fat-finger", "kind": "order_rate", "scope": "strategy:scalper", "level": "halt",
                  "max_orders": 3, "window_seconds": 5})
    wait_state("fat-finger", "armed")
    for i in range(5):
        paper.place_order(account="DU111111", symbol="AAPL", side="BUY", quantity=1, limit_price="100",
                          strategy="scalper", client_order_id=f"scalp-{i}")
    event = wait_trip("fat-finger")
    assert re.search(r"tripped: [45] orders in the last 5 s, beyond its limit 3 orders$", event.reason)
    assert (event.scope_label, event.new_level) == ("strategy:scalper", "halt")
    runs = wait_runs_finished()
    assert {r.state for r in runs} == {"completed"}
    assert working(strategy="scalper") == set()
    assert working(account__code="DU111111") == {"demo-1", "demo-2", "demo-3"}  # other strategies keep theirs


def test_rejected_orders_halt_the_account(run_breakers):
    run_breakers({"name": "rejects", "kind": "reject_rate", "scope": "account:DU111111", "level": "halt",
                  "max_rejects": 1, "window_seconds": 30})
    wait_state("rejects", "armed")
    for _ in range(2):  # market orders with no price: the broker rejects them
        assert paper.place_order(account="DU111111", symbol="NOPRICE", side="BUY", quantity=1,
                                 order_type="MKT").status == "rejected"
    event = wait_trip("rejects")
    assert event.reason.endswith("tripped: 2 rejects in the last 30 s, beyond its limit 1 rejects")
    [run] = wait_runs_finished()
    assert run.state == "completed" and working(account__code="DU111111") == set()


def test_a_position_past_its_limit_halts_the_account(run_breakers):
    run_breakers({"name": "aapl-size", "kind": "max_position", "scope": "account:DU111111", "level": "halt",
                  "limit": 150, "symbols": ["AAPL"]})
    assert wait_state("aapl-size", "armed")["figure"] == "AAPL position 100"
    paper.place_order(account="DU111111", symbol="AAPL", side="BUY", quantity=60, order_type="MKT")
    event = wait_trip("aapl-size")
    assert event.reason.endswith("tripped: AAPL position 160, beyond its limit 150 per symbol")
    [run] = wait_runs_finished()
    assert run.state == "completed"


def test_gross_notional_past_its_limit_kills_the_account_and_flattens_it(run_breakers):
    run_breakers({"name": "exposure", "kind": "max_notional", "scope": "account:DU222222", "level": "kill",
                  "limit": 40000})
    assert wait_state("exposure", "armed")["figure"] == "gross notional 22,700.00 USD in account:DU222222"
    paper.set_price("SPY", "1400")  # 30 x 410 + 20 x 1400
    event = wait_trip("exposure")
    assert event.reason.endswith("tripped: gross notional 40,300.00 USD in account:DU222222, beyond its limit "
                                 "40,000.00 USD")
    assert event.new_level == "kill"
    [run] = wait_runs_finished()
    assert (run.level, run.state) == ("kill", "completed")
    assert not PaperPosition.objects.filter(account__code="DU222222").exclude(quantity=0).exists()
    assert PaperPosition.objects.get(account__code="DU111111", symbol="AAPL").quantity == Decimal(100)


def test_a_broker_connection_lost_past_its_grace_halts_and_the_run_completes_once_it_is_back(run_breakers):
    run_breakers({"name": "link", "kind": "broker_disconnect", "scope": "account:DU111111", "level": "halt",
                  "grace_seconds": 1})
    assert wait_state("link", "armed")["figure"] == "every broker connection in scope is up"
    set_offline("DU111111")
    event = wait_trip("link")
    set_offline("DU111111", False)
    assert re.search(r"tripped: DU111111 \(paper\) disconnected for 1\.\d s: paper account DU111111 is offline "
                     r"since .*, beyond its limit 1 s grace$", event.reason)
    [run] = wait_runs_finished()
    assert run.state == "completed" and working(account__code="DU111111") == set()


def test_stale_market_data_from_a_trading_process_halts_its_account(run_breakers):
    run_breakers({"name": "feed", "kind": "stale_data", "scope": "account:DU111111", "level": "halt",
                  "max_age_seconds": 2})
    switch = client(account="DU111111", name="momo-1")
    try:
        switch.market_data("AAPL")
        assert wait_state("feed", "armed")["figure"].startswith("AAPL market data 0.")
        event = wait_trip("feed")  # nothing more arrives for AAPL
    finally:
        switch.close()
    assert re.search(r"tripped: AAPL market data 2\.\d s old \(at momo-1\), beyond its limit 2 s$", event.reason)
    [run] = wait_runs_finished()
    assert run.state == "completed"


def test_a_dead_mans_switch_not_renewed_in_time_halts_its_strategy(run_breakers):
    paper.place_order(account="DU111111", symbol="AAPL", side="BUY", quantity=1, limit_price="100",
                      strategy="momo", client_order_id="momo-order")
    run_breakers({"name": "momo-loop", "kind": "dead_man", "scope": "strategy:momo", "level": "halt",
                  "timeout_seconds": 2})
    assert wait_state("momo-loop", "idle")["figure"] == "not armed: waiting for its first heartbeat"
    switch = client(strategy="momo", name="momo-1")
    try:
        switch.heartbeat("momo-loop")
        assert wait_state("momo-loop", "armed")["figure"].startswith("no heartbeat for ")
        event = wait_trip("momo-loop")
    finally:
        switch.close()
    assert re.search(r"tripped: no heartbeat for 2\.\d s \(last from momo-1 \(.*\)\), beyond its limit 2 s$",
                     event.reason)
    wait_runs_finished()
    assert "momo-order" not in working() and working(account__code="DU111111") >= {"demo-1", "demo-2"}
