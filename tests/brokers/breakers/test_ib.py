"""Loss and disconnect breakers at Interactive Brokers: the breaker loop holds its own
session (breaker_client_id) with the real ib_async client against the fake gateway
(reqPnL / reqPnLSingle over the TWS wire protocol), and a real Celery worker does the
run the trip starts, on the runs' own client id."""

from __future__ import annotations

import re

import pytest

from brokers.models import BrokerRun
from tests.conftest import wait_for
from tests.fake_ib.gateway import FakeGateway

from ..conftest import FAST_RUNS, use_config, wait_runs_finished, write_policy
from .conftest import wait_state, wait_trip

pytestmark = pytest.mark.django_db(transaction=True)

ACC1, ACC2 = "DU111111", "DU222222"
BREAKER_CLIENT = 92


def brokers_section(port: int) -> dict:
    return {
        "paper": {"accounts": []},
        "ib": {"connections": [{
            "name": "fake", "host": "127.0.0.1", "port": port, "client_id": 90, "sweep_client_id": 91,
            "breaker_client_id": BREAKER_CLIENT, "accounts": [ACC1, ACC2], "confirm_timeout_seconds": 3,
            "connect_timeout_seconds": 2,
        }]},
        "runs": FAST_RUNS,
    }


@pytest.fixture(scope="module")
def port() -> int:
    from riskcontrol.embedded_redis import free_port

    return free_port()


@pytest.fixture(scope="module")
def worker(start_worker, module_tmp, port):
    return start_worker(write_policy(module_tmp / "ib.yaml", brokers_section(port)), paper_only=False)


@pytest.fixture
def gateway(worker, port, monkeypatch, settings):
    use_config(monkeypatch, brokers_section(port))
    settings.PAPER_ONLY = False
    gw = FakeGateway(port=port, accounts=(ACC1, ACC2), master_client_id=BREAKER_CLIENT).start()
    yield gw
    try:
        if BrokerRun.objects.exists():
            wait_runs_finished(timeout=60)
    finally:
        errors = gw.internal_errors
        gw.stop()
    assert errors == []


def working(gw: FakeGateway) -> list[dict]:
    return [o for o in gw.orders() if o["status"] in ("PreSubmitted", "Submitted", "PendingSubmit")]


def test_an_ib_price_drop_past_the_loss_limit_halts_the_account(gateway, run_breakers):
    gateway.set_price("AAPL", 190.0)
    gateway.set_position(ACC1, "AAPL", 100, 190.0)
    gateway.set_position(ACC2, "AAPL", -100, 190.0)  # another account: its gain is not ACC1's
    order = gateway.add_working_order(ACC1, "MSFT", "BUY", 5, 300.0, order_ref="momo", client_id=7)
    run_breakers({"name": "ib-loss", "kind": "max_loss", "scope": f"account:{ACC1}", "level": "halt", "limit": 500},
                 interval=0.1)
    armed = wait_state("ib-loss", "armed", timeout=20)
    assert armed["figure"].startswith("P&L 0.00 USD since 00:00 UTC") and "IB daily P&L" in armed["figure"]
    gateway.set_price("AAPL", 184.0)  # ACC1: 100 x -6
    event = wait_trip("ib-loss")
    assert (event.source, event.scope_label, event.new_level) == ("automatic", f"account:{ACC1}", "halt")
    assert re.match(r"Breaker ib-loss \(max_loss\) tripped: P&L -600\.00 USD since 00:00 UTC \(\d{4}-\d\d-\d\d\) "
                    r"\[IB daily P&L \(reqPnL; reset on IB's schedule\)\], beyond its limit -500\.00 USD$", event.reason)
    [run] = wait_runs_finished(timeout=60)
    assert (run.broker, run.account, run.state) == ("ib", ACC1, "completed")
    assert working(gateway) == []
    assert order in {c["order_id"] for c in gateway.cancel_requests}
    assert BREAKER_CLIENT in gateway.connected_client_ids  # the breakers kept their own session


def test_an_ib_connection_lost_past_its_grace_halts_and_the_run_completes_when_it_is_back(gateway, run_breakers):
    gateway.add_working_order(ACC1, "MSFT", "BUY", 5, 300.0, order_ref="momo", client_id=7)
    run_breakers({"name": "ib-link", "kind": "broker_disconnect", "scope": f"account:{ACC1}", "level": "halt",
                  "grace_seconds": 1}, interval=0.1)
    assert wait_state("ib-link", "armed", timeout=20)["figure"] == "every broker connection in scope is up"
    gateway.pause_accepting(2.5)
    gateway.drop_connections()
    event = wait_trip("ib-link")
    assert re.search(r"tripped: DU111111 \(ib\) disconnected for 1\.\d s: .*cannot connect to IB fake at "
                     r"127\.0\.0\.1:\d+ as client 92.*, beyond its limit 1 s grace$", event.reason), event.reason
    [run] = wait_runs_finished(timeout=60)
    assert run.state == "completed" and working(gateway) == []
    wait_for(lambda: wait_state("ib-link", "tripped")["figure"] == "every broker connection in scope is up",
             timeout=15)  # reconnected by itself; the trip stays until a person resumes


def test_orders_any_ib_client_submits_count_towards_the_order_rate(gateway, run_breakers):
    from ib_async import IB, LimitOrder, Stock

    gateway.add_working_order(ACC1, "MSFT", "BUY", 5, 300.0, order_ref="old", client_id=7)  # before: not new
    run_breakers({"name": "ib-orders", "kind": "order_rate", "scope": "strategy:momo", "level": "halt",
                  "max_orders": 2, "window_seconds": 30}, interval=0.1)
    assert wait_state("ib-orders", "armed", timeout=20)["figure"] == "0 orders in the last 30 s"
    trader = IB()
    trader.connect("127.0.0.1", gateway.port, clientId=7, timeout=5)
    try:
        for _ in range(3):  # another API client's orders: the breakers see them as the master client
            trader.placeOrder(Stock("AAPL", "SMART", "USD"), LimitOrder("BUY", 1, 100.0, account=ACC1, orderRef="momo"))
        trader.placeOrder(Stock("AAPL", "SMART", "USD"), LimitOrder("BUY", 1, 100.0, account=ACC1, orderRef="arb"))
        trader.sleep(0.2)
        event = wait_trip("ib-orders")
    finally:
        trader.disconnect()
    assert event.reason.endswith("tripped: 3 orders in the last 30 s, beyond its limit 2 orders")
    runs = wait_runs_finished(timeout=60)
    assert {r.state for r in runs} == {"completed"}
    assert {o["order_ref"] for o in working(gateway)} == {"old", "arb"}
