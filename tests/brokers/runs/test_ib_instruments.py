"""KILL at Interactive Brokers for every security type, against the fake gateway (TWS
wire protocol) with the real ib_async client inside a real Celery worker: each
position closed as itself, by conId; what cannot be closed is reported, never traded
as something else; late position reports; the service's closing orders spared by the
global cancel; a stopped worker; a kill lifted before the worker is back."""

from __future__ import annotations

import math
import time
from decimal import Decimal

import pytest

from brokers.models import BrokerAction, BrokerRun
from killswitch import services as ks
from killswitch.models import Event
from tests.conftest import wait_for
from tests.fake_ib.gateway import FakeGateway
from tests.fake_ib.support import CONTRACTS, PRICES, QUANTITIES, con

from ..conftest import use_config, wait_runs_finished, write_policy

pytestmark = pytest.mark.django_db(transaction=True)

ACC1, ACC2 = "DU111111", "DU222222"
# More attempts than FAST_RUNS: a position report may trail a fill by several seconds here.
RUNS = {"max_attempts": 30, "retry_backoff_seconds": 0.3, "retry_backoff_max_seconds": 0.6,
        "verify_rounds": 2, "lease_seconds": 4}
SIGNED = {"STK": 10, "FUT": 2, "OPT": -3, "FOP": 1, "CASH": -25000, "CFD": 5, "CRYPTO": 0.5, "BOND": 10}


def brokers_section(port: int) -> dict:
    return {
        "paper": {"accounts": []},
        "ib": {"connections": [{
            "name": "fake", "host": "127.0.0.1", "port": port, "client_id": 90, "sweep_client_id": 91,
            "accounts": [ACC1, ACC2], "confirm_timeout_seconds": 3, "connect_timeout_seconds": 3,
        }]},
        "runs": RUNS,
    }


@pytest.fixture(scope="module")
def port() -> int:
    from riskcontrol.embedded_redis import free_port

    return free_port()


@pytest.fixture(scope="module")
def worker(start_worker, module_tmp, port):
    return start_worker(write_policy(module_tmp / "ib-instruments.yaml", brokers_section(port)), paper_only=False)


@pytest.fixture
def gateway(worker, port, monkeypatch, settings, set_policy):
    use_config(monkeypatch, brokers_section(port))
    settings.PAPER_ONLY = False
    set_policy(cooldown_minutes=0)
    gw = FakeGateway(port=port, accounts=(ACC1, ACC2)).start()
    for fields in CONTRACTS.values():
        gw.add_contract(**fields)
    for sec_type, price in PRICES.items():
        gw.set_price(con(sec_type), price)
    yield gw
    try:
        if BrokerRun.objects.exists():
            wait_runs_finished(timeout=60)
    finally:
        errors = gw.internal_errors
        gw.stop()
    assert errors == []


def activate(scope: str, level: str) -> None:
    ks.activate(scope=scope, level=level, reason="test", actor="cli:tester", source="cli")


def closing_orders(gw: FakeGateway) -> list[dict]:
    return [p for p in gw.placed_orders if p["order_ref"].startswith("ks-close-")]


def test_kill_closes_every_security_type_as_itself_by_con_id(gateway):
    for sec_type, qty in SIGNED.items():
        gateway.set_position(ACC1, con(sec_type), qty, 100.0)
    gateway.set_position(ACC2, con("FUT"), 4, 100.0)  # another account: untouched
    activate(f"account:{ACC1}", "kill")
    [run] = wait_runs_finished()
    assert run.state == "completed", run.error
    placed = {p["requested_con_id"]: (p["con_id"], p["sec_type"], p["action"], p["qty"], p["order_type"],
                                      p["exchange"], p["outcome"]) for p in closing_orders(gateway)}
    expected = {}
    for sec_type, qty in SIGNED.items():
        exchange = CONTRACTS[sec_type]["exchange"]
        expected[con(sec_type)] = (con(sec_type), sec_type, "SELL" if qty > 0 else "BUY", abs(qty), "MKT",
                                   exchange, "filled")
    assert placed == expected
    assert len(closing_orders(gateway)) == len(SIGNED)  # one each, none on a guessed stock
    assert [(p["account"], p["con_id"], p["qty"]) for p in gateway.positions()] == [(ACC2, con("FUT"), 4.0)]
    closes = {a.position_key: a for a in BrokerAction.objects.filter(action="close")}
    assert set(closes) == {f"{t}:{con(t)}" for t in SIGNED}
    future = closes[f"FUT:{con('FUT')}"].instrument
    assert (future["symbol"], future["broker_key"], future["local_symbol"], future["expiry"],
            future["multiplier"]) == ("ES", str(con("FUT")), "ESZ6", "20261218", "50")
    option = closes[f"OPT:{con('OPT')}"].instrument
    assert (option["symbol"], option["right"], option["strike"]) == ("AAPL", "C", "200")
    assert closes[f"CASH:{con('CASH')}"].quantity == Decimal(25000)  # base currency, on IDEALPRO
    assert closes[f"CRYPTO:{con('CRYPTO')}"].quantity == Decimal("0.5")


def test_an_aapl_option_is_not_closed_as_aapl_shares(gateway):
    gateway.set_position(ACC1, con("STK"), 100, 190.0)
    gateway.set_position(ACC1, con("OPT"), -7, 850.0)
    activate(f"account:{ACC1}", "kill")
    [run] = wait_runs_finished()
    assert run.state == "completed"
    assert sorted((p["sec_type"], p["action"], p["qty"]) for p in closing_orders(gateway)) == [
        ("OPT", "BUY", 7.0), ("STK", "SELL", 100.0)]
    assert gateway.positions() == []


def test_a_symbol_scope_names_a_future_by_its_local_symbol(gateway):
    gateway.set_position(ACC1, con("FUT"), 3, 100.0)
    gateway.set_position(ACC1, con("FOP"), 2, 100.0)  # ES too, but local symbol "ESZ6 P6000"
    gateway.set_position(ACC1, con("STK"), 50, 100.0)
    activate("symbol:ESZ6", "kill")
    runs = wait_runs_finished()
    assert {r.state for r in runs} == {"completed"}
    assert [(p["sec_type"], p["qty"]) for p in closing_orders(gateway)] == [("FUT", 3.0)]
    assert sorted(p["con_id"] for p in gateway.positions()) == sorted([con("FOP"), con("STK")])


def test_an_expired_future_is_unclosable_reported_with_an_alert_and_never_traded(gateway):
    expired = gateway.add_contract(551601561, "ES", "FUT", "CME", multiplier="50", last_trade_date="20240315",
                                   local_symbol="ESH4", trading_class="ES")
    gateway.set_position(ACC1, expired, 2, 100.0)
    gateway.set_position(ACC1, con("STK"), 10, 100.0)
    activate(f"account:{ACC1}", "kill")
    [run] = wait_runs_finished()
    assert run.state == "failed"
    [stuck] = BrokerAction.objects.filter(outcome="unclosable")
    assert stuck.position_key == f"FUT:{expired}" and "expired on 20240315" in stuck.detail
    assert [p["sec_type"] for p in closing_orders(gateway)] == ["STK"]  # nothing on ES, nothing as a stock
    assert [(p["con_id"], p["qty"]) for p in gateway.positions()] == [(expired, 2.0)]
    details = " ".join(Event.objects.filter(action="alert").values_list("detail", flat=True))
    assert "cannot close ES FUT 20240315" in details and f"broker run {run.pk}" in details


def test_a_position_report_trailing_the_fill_never_causes_a_second_close(gateway):
    """Today: a retry more than 3 s after the fill trusted the old report and sold again."""
    gateway.set_position(ACC1, con("FUT"), 5, 100.0)
    gateway.set_position(ACC1, con("CASH"), -25000, 1.0)
    gateway.position_report_lag(5)
    activate(f"account:{ACC1}", "kill")
    [run] = wait_runs_finished(timeout=60)
    assert run.state == "completed", run.error
    assert sorted((p["sec_type"], p["action"], p["qty"]) for p in closing_orders(gateway)) == [
        ("CASH", "BUY", 25000.0), ("FUT", "SELL", 5.0)]
    assert gateway.positions() == []  # flat, not reversed
    assert "Not closed again" in run.notes


def test_a_trailing_report_never_reverses_a_stock_position(gateway):
    """The issue's case on plain shares: a retry after a report lagging more than 3 s."""
    gateway.set_position(ACC1, con("STK"), 100, 190.0)
    gateway.position_report_lag(5)
    activate(f"account:{ACC1}", "kill")
    [run] = wait_runs_finished(timeout=60)
    assert [(p["action"], p["qty"]) for p in closing_orders(gateway)] == [("SELL", 100.0)]
    assert gateway.positions() == []  # not short 100
    assert run.state == "completed", run.error


def test_closing_continues_from_the_fills_of_a_partly_filled_order(gateway):
    """A thin market: the closing order fills 2 of 5 and is cancelled; the next order is
    for the 3 left, counted from IB's fills, whatever the (trailing) report says."""
    gateway.set_position(ACC1, con("FUT"), 5, 100.0)
    gateway.position_report_lag(math.inf)
    gateway.market_liquidity(2)
    activate(f"account:{ACC1}", "kill")
    wait_for(lambda: closing_orders(gateway), timeout=30)
    [first] = closing_orders(gateway)
    wait_for(lambda: [o for o in gateway.orders() if o["order_ref"] == first["order_ref"]
                      and o["filled"] == 2.0], timeout=30)
    gateway.market_liquidity(None)
    # The desk cancels the resting remainder (IB would after the close, or the trader).
    from ib_async import IB

    ib = IB()
    ib.connect("127.0.0.1", gateway.port, clientId=90 + 10, timeout=5)
    try:
        ib.reqGlobalCancel()  # only the resting closing order is working
        ib.sleep(0.5)
    finally:
        ib.disconnect()
    wait_for(lambda: len(closing_orders(gateway)) == 2, timeout=30)
    gateway.release_position_reports()
    gateway.position_report_lag(0)
    [run] = wait_runs_finished(timeout=60)
    assert run.state == "completed", run.error
    assert [(p["action"], p["qty"]) for p in closing_orders(gateway)] == [("SELL", 5.0), ("SELL", 3.0)]
    assert gateway.positions() == []


def test_a_global_kill_never_cancels_the_services_own_working_closing_orders(gateway):
    gateway.set_position(ACC1, con("FUT"), 5, 100.0)
    gateway.set_position(ACC2, con("STK"), 40, 100.0)
    gateway.add_working_order(ACC2, con("STK"), "BUY", 10, 50.0, order_ref="momo", client_id=0)
    gateway.market_liquidity(0)  # closing orders rest, working, as in a fast market
    activate("global", "kill")
    wait_for(lambda: len(closing_orders(gateway)) == 2, timeout=30)
    # Both runs went through further cancel rounds while the closing orders were working.
    wait_for(lambda: BrokerRun.objects.filter(notes__contains="reqGlobalCancel not used").exists(), timeout=30)
    refs = {p["order_ref"] for p in closing_orders(gateway)}
    assert {o["status"] for o in gateway.orders() if o["order_ref"] in refs} == {"Submitted"}
    gateway.market_liquidity(None)
    for order in gateway.orders():
        if order["order_ref"] in refs:
            gateway.fill_order(order["order_id"], client_id=order["client_id"])
    runs = wait_runs_finished(timeout=60)
    assert {r.state for r in runs} == {"completed"}
    assert len(closing_orders(gateway)) == 2  # none cancelled, none sent again
    assert gateway.positions() == []
    assert not [o for o in gateway.orders() if o["status"] in ("Submitted", "PreSubmitted")]


def test_with_the_worker_stopped_the_sweep_cancels_at_ib(gateway, worker, start_sweep, module_tmp, port):
    ids = [gateway.add_working_order(ACC1, con("OPT"), "SELL", 1, 20.0, order_ref="momo", client_id=7)
           for _ in range(3)]
    worker.pause()
    try:
        sweep_loop = start_sweep(module_tmp / "ib-instruments.yaml", paper_only=False)
        activate(f"account:{ACC1}", "halt")
        wait_for(lambda: not [o for o in gateway.orders() if o["status"] == "Submitted"], timeout=30)
        sweep_loop.stop()
    finally:
        worker.resume()
    sweep = BrokerRun.objects.get(kind="sweep")
    assert (sweep.state, sweep.actions.count()) == ("completed", len(ids)), sweep_loop.log()
    [run] = [r for r in wait_runs_finished(timeout=60) if r.kind == "switch"]
    assert run.state == "completed"
    assert not run.actions.filter(action="cancel").exists()


def test_a_kill_lifted_before_the_worker_is_back_is_superseded_at_ib(gateway, worker):
    gateway.set_position(ACC1, con("FUT"), 5, 100.0)
    worker.pause()
    try:
        activate(f"account:{ACC1}", "kill")
        ks.deactivate(scope=f"account:{ACC1}", actor="cli:tester", source="cli", reason="false alarm")
        gateway.set_position(ACC1, con("OPT"), 4, 100.0)  # opened after the resume
        time.sleep(0.2)
    finally:
        worker.resume()
    [run] = wait_runs_finished(timeout=60)
    assert run.state == "superseded"
    assert closing_orders(gateway) == []
    assert sorted((p["con_id"], p["qty"]) for p in gateway.positions()) == sorted(
        [(con("FUT"), 5.0), (con("OPT"), 4.0)])


def test_quantities_per_sec_type_match_the_fake(gateway):
    # Guard: the quantities above are the ones the fake gateway's own tests trade.
    assert {t: abs(q) for t, q in SIGNED.items()} == {t: abs(QUANTITIES[t]) for t in SIGNED}


def test_when_an_order_cannot_be_cancelled_one_by_one_the_global_cancel_is_sent_and_closes_are_resent(gateway):
    """An order whose API client is still connected can only be reached by
    reqGlobalCancel: it is sent, the run says so, and the closing order it cancelled is
    sent again for what was left."""
    from ib_async import IB, LimitOrder

    gateway.set_position(ACC1, con("FUT"), 5, 100.0)
    gateway.market_liquidity(0)
    activate("global", "kill")
    wait_for(lambda: closing_orders(gateway), timeout=30)
    stubborn = IB()
    stubborn.connect("127.0.0.1", gateway.port, clientId=7, timeout=5)
    try:
        # A strategy still connected places an order anyway; only its own session (or a
        # global cancel) can cancel it.
        from ib_async import Contract

        stubborn.placeOrder(Contract(conId=con("STK"), exchange="SMART"),
                            LimitOrder("BUY", 10, 50.0, account=ACC1, orderRef="rogue"))
        wait_for(lambda: BrokerRun.objects.filter(notes__contains="reqGlobalCancel sent although").exists(),
                 timeout=30)
        wait_for(lambda: len(closing_orders(gateway)) >= 2, timeout=30)
    finally:
        stubborn.disconnect()
    gateway.market_liquidity(None)
    for order in gateway.orders():
        if order["order_ref"].startswith("ks-close-") and order["status"] == "Submitted":
            gateway.fill_order(order["order_id"], client_id=order["client_id"])
    runs = wait_runs_finished(timeout=60)
    assert {r.state for r in runs} == {"completed"}, [r.error for r in runs]
    first, second = closing_orders(gateway)[:2]
    assert (first["qty"], second["qty"]) == (5.0, 5.0)  # nothing had filled: all of it again
    statuses = {o["order_ref"]: o["status"] for o in gateway.orders()}
    assert statuses[first["order_ref"]] == "Cancelled"
    assert gateway.positions() == []
    assert not [o for o in gateway.orders() if o["status"] in ("Submitted", "PreSubmitted")]
