"""HALT and KILL at Interactive Brokers: the real ib_async client, inside a real Celery
worker, against our fake gateway speaking the TWS wire protocol over TCP."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from io import StringIO

import pytest

from brokers.cli import sweep as sweep_cli
from brokers.models import BrokerAction, BrokerRun
from killswitch import services as ks
from tests.conftest import figure, wait_for
from tests.fake_ib.contracts import con_id_for
from tests.fake_ib.gateway import FakeGateway

from ..conftest import FAST_RUNS, use_config, wait_runs_finished, write_policy

pytestmark = pytest.mark.django_db(transaction=True)

ACC1, ACC2 = "DU111111", "DU222222"


def brokers_section(port: int) -> dict:
    return {
        "paper": {"accounts": []},
        "ib": {"connections": [{
            "name": "fake", "host": "127.0.0.1", "port": port, "client_id": 90, "sweep_client_id": 91,
            "accounts": [ACC1, ACC2], "confirm_timeout_seconds": 3, "connect_timeout_seconds": 3,
        }]},
        "runs": FAST_RUNS,
    }


@pytest.fixture(scope="module")
def port() -> int:
    from riskcontrol.embedded_redis import free_port

    return free_port()


@pytest.fixture(scope="module")
def workers(start_worker, module_tmp, port):
    """The module's worker; a test that kills it starts another through `ensure`."""
    policy = write_policy(module_tmp / "ib.yaml", brokers_section(port))

    class Workers:
        current = start_worker(policy, paper_only=False)

        def ensure(self):
            if self.current.process.poll() is not None:
                self.current = start_worker(policy, paper_only=False)
            return self.current

    return Workers()


@pytest.fixture
def gateway(workers, port, monkeypatch, settings):
    """A fresh gateway on the port the worker is configured for."""
    workers.ensure()
    use_config(monkeypatch, brokers_section(port))
    settings.PAPER_ONLY = False
    gw = FakeGateway(port=port, accounts=(ACC1, ACC2)).start()
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


def working(gw: FakeGateway) -> list[dict]:
    return [o for o in gw.orders() if o["status"] in ("PreSubmitted", "Submitted", "PendingSubmit")]


def closing_orders(gw: FakeGateway) -> list[dict]:
    return [p for p in gw.placed_orders if p["order_ref"].startswith("ks-close-")]


def test_global_halt_uses_one_global_cancel_and_records_every_order(gateway):
    strategy = gateway.add_working_order(ACC1, "AAPL", "BUY", 10, 100.0, order_ref="momo", client_id=7)
    manual = gateway.add_working_order(ACC1, "MSFT", "SELL", 5, 300.0, client_id=0)
    other = gateway.add_working_order(ACC2, "SPY", "BUY", 3, 500.0, order_ref="arb", client_id=12)
    gateway.set_position(ACC1, "AAPL", 100, 90.0)
    activate("global", "halt")
    runs = wait_runs_finished()
    assert {(r.account, r.state) for r in runs} == {(ACC1, "completed"), (ACC2, "completed")}
    assert working(gateway) == []
    assert gateway.global_cancel_count >= 1
    assert gateway.cancel_requests == []  # no order-by-order cancel was needed
    assert gateway.positions() == [{"account": ACC1, "symbol": "AAPL", "con_id": gateway.positions()[0]["con_id"],
                                    "qty": 100.0, "avg_cost": 90.0}]  # halt keeps positions
    perm_ids = {o["order_id"]: str(o["perm_id"]) for o in gateway.orders()}
    cancels = {a.broker_order_id: a.outcome for a in BrokerAction.objects.filter(action="cancel")}
    assert cancels == {perm_ids[strategy]: "cancelled", perm_ids[manual]: "cancelled",
                       perm_ids[other]: "cancelled"}
    assert BrokerAction.objects.filter(action="global_cancel").exists()


def test_strategy_halt_cancels_order_by_order_only_that_strategy(gateway):
    mine = [gateway.add_working_order(acc, "AAPL", "BUY", 1, 100.0, order_ref="momo", client_id=7)
            for acc in (ACC1, ACC2)]
    keep = gateway.add_working_order(ACC1, "AAPL", "BUY", 1, 100.0, order_ref="arb", client_id=7)
    activate("strategy:momo", "halt")
    runs = wait_runs_finished()
    assert {r.state for r in runs} == {"completed"}
    assert [o["order_id"] for o in working(gateway)] == [keep]
    assert gateway.global_cancel_count == 0
    assert sorted(c["order_id"] for c in gateway.cancel_requests if c["outcome"] == "cancelled") == sorted(mine)
    assert gateway.pacing_violations == 0


def test_kill_flattens_long_and_short_with_market_orders_of_exact_size(gateway):
    gateway.set_position(ACC1, "AAPL", 100, 90.0)
    gateway.set_position(ACC1, "TSLA", -50, 200.0)
    gateway.set_position(ACC2, "MSFT", 30, 300.0)
    gateway.add_working_order(ACC1, "AAPL", "SELL", 10, 150.0, order_ref="momo", client_id=7)
    activate(f"account:{ACC1}", "kill")
    [run] = wait_runs_finished()
    assert run.state == "completed"
    placed = {(p["symbol"], p["action"], p["qty"], p["order_type"], p["account"]) for p in closing_orders(gateway)}
    assert placed == {("AAPL", "SELL", 100.0, "MKT", ACC1), ("TSLA", "BUY", 50.0, "MKT", ACC1)}
    assert {(p["account"], p["symbol"], p["qty"]) for p in gateway.positions()} == {(ACC2, "MSFT", 30.0)}
    assert working(gateway) == []
    closes = BrokerAction.objects.filter(action="close").order_by("symbol")
    assert [(a.symbol, a.side, a.quantity, a.outcome, a.position_key) for a in closes] == [
        ("AAPL", "SELL", Decimal(100), "filled", f"STK:{con_id_for('AAPL')}"),
        ("TSLA", "BUY", Decimal(50), "filled", f"STK:{con_id_for('TSLA')}"),
    ]
    assert sorted(a.client_ref for a in closes) == [f"ks-close-{run.pk}-1", f"ks-close-{run.pk}-2"]


def test_partial_fill_racing_the_cancel_and_a_fill_before_it_are_recorded(gateway):
    partial = gateway.add_working_order(ACC1, "AAPL", "BUY", 10, 100.0, order_ref="momo", client_id=7)
    filled = gateway.add_working_order(ACC1, "MSFT", "BUY", 4, 300.0, order_ref="momo", client_id=7)
    gateway.partial_fill_on_cancel(partial, 3)
    gateway.fill_before_cancel(filled)
    activate("strategy:momo", "halt")
    [_, _] = wait_runs_finished()
    perm = {o["order_id"]: str(o["perm_id"]) for o in gateway.orders()}
    a1 = BrokerAction.objects.get(broker_order_id=perm[partial])
    a2 = BrokerAction.objects.get(broker_order_id=perm[filled])
    assert (a1.outcome, a1.filled_quantity) == ("filled_before_cancel", Decimal(3))
    assert (a2.outcome, a2.filled_quantity) == ("too_late", Decimal(4))
    assert {(p["symbol"], p["qty"]) for p in gateway.positions()} == {("AAPL", 3.0), ("MSFT", 4.0)}


def test_a_rejected_closing_order_is_recorded_and_a_new_one_closes_the_position(gateway):
    gateway.set_position(ACC1, "AAPL", 100, 90.0)
    gateway.reject_next_orders(1)
    activate(f"account:{ACC1}", "kill")
    [run] = wait_runs_finished()
    assert run.state == "completed"
    closes = list(BrokerAction.objects.filter(action="close").order_by("id"))
    assert [(a.outcome, a.quantity) for a in closes] == [("rejected", Decimal(100)), ("filled", Decimal(100))]
    assert "201" in closes[0].detail
    assert gateway.positions() == []
    assert [p["outcome"] for p in closing_orders(gateway)] == ["rejected", "filled"]


def test_connection_dropped_mid_run_is_restored_and_the_run_completes(gateway):
    ids = [gateway.add_working_order(ACC1, "AAPL", "BUY", 1, 100.0, order_ref="momo", client_id=7)
           for _ in range(120)]
    activate(f"account:{ACC1}", "halt")  # wait: account scope -> order by order
    wait_for(lambda: len(gateway.cancel_requests) >= 10, timeout=30)
    gateway.drop_connections()
    dropped = time.monotonic()
    [run] = wait_runs_finished(timeout=60)
    figure("IB connection dropped mid-cancel", "run completed after the drop",
           f"{(time.monotonic() - dropped) * 1000:.0f} ms, {run.attempts} attempts")
    assert run.state == "completed"
    assert run.attempts >= 2  # the first attempt saw the connection drop
    assert working(gateway) == []
    assert BrokerAction.objects.filter(action="cancel").count() == len(ids)
    assert gateway.pacing_violations == 0


def test_worker_killed_mid_run_completes_without_a_duplicate_closing_order(gateway, workers):
    for symbol, qty in (("AAPL", 100), ("TSLA", -50), ("MSFT", 30), ("NVDA", 7)):
        gateway.set_position(ACC1, symbol, qty, 100.0)
    gateway.delay_ms = 150  # a slow gateway, so the worker dies while closing
    activate(f"account:{ACC1}", "kill")
    wait_for(lambda: BrokerAction.objects.filter(action="close").exists(), timeout=30)
    workers.current.kill()
    # The production pair: a fresh worker and the sweep loop (which resumes abandoned runs).
    workers.ensure()
    stop = threading.Event()
    loop = threading.Thread(target=sweep_cli.run, args=({"interval": 0.5}, StringIO(), StringIO(), stop),
                            daemon=True)
    loop.start()
    try:
        [run] = wait_runs_finished(timeout=60)
    finally:
        stop.set()
        loop.join(timeout=10)
    gateway.delay_ms = 0
    assert run.state == "completed"
    assert run.attempts >= 2
    assert gateway.positions() == []
    per_symbol: dict[str, int] = {}
    for p in closing_orders(gateway):
        per_symbol[p["symbol"]] = per_symbol.get(p["symbol"], 0) + 1
    figure("worker SIGKILL mid-flatten", "duplicate closing orders", sum(per_symbol.values()) - len(per_symbol))
    assert per_symbol == {"AAPL": 1, "TSLA": 1, "MSFT": 1, "NVDA": 1}
