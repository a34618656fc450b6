"""Wire-level tests: the real ib_async client against FakeGateway, no mocks (US stocks).

Every test talks TCP to a gateway running in its own thread and loop, while
ib_async runs its synchronous API on the test thread's loop (fixtures in
conftest.py fail a test on any ib_async decoder error).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from ib_async import IB, LimitOrder, MarketOrder, Stock, Trade

from tests.fake_ib import FakeGateway
from tests.fake_ib.gateway import SERVER_VERSION, con_id_for

from .support import ACC1, ACC2, codes, settle, wait_disconnected, wait_until

REPO_ROOT = Path(__file__).resolve().parents[2]


def stock(symbol: str) -> Stock:
    return Stock(symbol, "SMART", "USD")


def limit(action: str, qty: float, price: float, ref: str = "", account: str = ACC1) -> LimitOrder:
    return LimitOrder(action, qty, price, orderRef=ref, account=account)


def market(action: str, qty: float, ref: str = "", account: str = ACC1) -> MarketOrder:
    return MarketOrder(action, qty, orderRef=ref, account=account)


# ---------------------------------------------------------------------- session


def test_connect_handshake_accounts_and_startup_sync(connect) -> None:
    started = time.monotonic()
    # raiseSyncErrors turns any startup request that never got its "end" message into an error.
    ib, errors = connect(1, raiseSyncErrors=True)
    assert time.monotonic() - started < 2.0
    assert ib.isConnected()
    assert ib.client.serverVersion() == SERVER_VERSION
    assert ib.managedAccounts() == [ACC1, ACC2]
    # TWS-style farm notices are warnings, not errors.
    assert set(codes(errors)) <= {2104, 2106, 2158}
    assert {v.tag for v in ib.accountValues(ACC1)} >= {"NetLiquidation", "BuyingPower"}
    assert ib.reqCurrentTime().year >= 2024


def test_single_account_connect_gets_account_updates_and_summary(gateway, connect) -> None:
    gateway.stop()
    gw = FakeGateway(accounts=("DU999999",)).start()
    try:
        gw.set_position("DU999999", "IBM", 3, 120.0)
        ib = IB()
        # With one account ib_async also runs reqAccountUpdates, which must end with accountDownloadEnd.
        ib.connect("127.0.0.1", gw.port, clientId=1, timeout=5, raiseSyncErrors=True)
        try:
            assert [p.contract.symbol for p in ib.portfolio()] == ["IBM"]
            summary = {v.tag: v.value for v in ib.accountSummary("DU999999")}
            assert summary["NetLiquidation"] == "1000000.00"
            # An order without an account is fine when there is only one account.
            trade = ib.placeOrder(stock("IBM"), MarketOrder("SELL", 3))
            wait_until(ib, trade.isDone)
            assert trade.orderStatus.status == "Filled"
            wait_until(ib, lambda: not ib.portfolio())
        finally:
            ib.disconnect()
    finally:
        gw.stop()


def test_duplicate_client_id_is_refused(gateway, connect) -> None:
    ib, _ = connect(5)
    second = IB()
    errors: list[int] = []
    second.errorEvent += lambda _req, code, _msg, _contract: errors.append(code)
    # TWS answers error 326 and closes; ib_async then gives up waiting for the API to start.
    with pytest.raises(TimeoutError):
        second.connect("127.0.0.1", gateway.port, clientId=5, timeout=1)
    assert errors == [326]
    assert ib.isConnected() and gateway.connected_client_ids == [5]


# ---------------------------------------------------------------------- positions / open orders


def test_positions_carry_avg_cost_and_stream_updates(gateway, connect) -> None:
    gateway.set_position(ACC1, "AAPL", 10, 150.25)
    gateway.set_position(ACC2, "MSFT", -4, 410.0)
    ib, _ = connect(1)
    got = {(p.account, p.contract.symbol): (p.position, p.avgCost) for p in ib.positions()}
    assert got == {(ACC1, "AAPL"): (10.0, 150.25), (ACC2, "MSFT"): (-4.0, 410.0)}
    aapl = next(p for p in ib.positions() if p.contract.symbol == "AAPL")
    assert aapl.contract.conId == con_id_for("AAPL")

    # reqPositions subscribed at connect, so later changes are pushed.
    gateway.set_position(ACC1, "AAPL", 25, 151.0)
    wait_until(ib, lambda: any(p.position == 25 for p in ib.positions(ACC1)))
    assert [(p.account, p.position) for p in ib.reqPositions() if p.contract.symbol == "AAPL"] == [
        (ACC1, 25.0)
    ]


def test_open_orders_show_order_ref_account_and_owner(gateway, connect) -> None:
    own = gateway.add_working_order(ACC2, "AAPL", "SELL", 7, 190.5, order_ref="strat-A", client_id=7)
    manual = gateway.add_working_order(ACC1, "MSFT", "BUY", 3, 300.0, order_ref="tws", client_id=0)

    ib7, _ = connect(7)
    # reqOpenOrders at connect returns only this client's orders, as at IB.
    [trade] = ib7.openTrades()
    assert (trade.order.orderId, trade.order.orderRef, trade.order.account) == (own, "strat-A", ACC2)
    assert (trade.order.action, trade.order.totalQuantity, trade.order.lmtPrice) == ("SELL", 7.0, 190.5)
    assert trade.orderStatus.status == "Submitted" and trade.orderStatus.remaining == 7
    assert trade.order.permId > 0

    every = ib7.reqAllOpenOrders()
    assert sorted((t.order.clientId, t.order.orderId, t.order.orderRef) for t in every) == [
        (0, manual, "tws"), (7, own, "strat-A")
    ]

    ib0, _ = connect(0)  # client 0 sees the "TWS" order (ib_async also sends reqAutoOpenOrders)
    assert [(t.order.orderId, t.order.orderRef) for t in ib0.openTrades()] == [(manual, "tws")]

    # An order added while a client is connected is pushed to it.
    later = gateway.add_working_order(ACC1, "IBM", "BUY", 1, 100.0, order_ref="late", client_id=7)
    wait_until(ib7, lambda: any(t.order.orderId == later for t in ib7.openTrades()))


# ---------------------------------------------------------------------- placing orders


def test_limit_order_rests_as_working(gateway, connect) -> None:
    ib, errors = connect(1)
    trade = ib.placeOrder(stock("AAPL"), limit("BUY", 10, 150.0, ref="ks-open-1"))
    wait_until(ib, lambda: trade.orderStatus.status == "Submitted")
    assert trade in ib.openTrades()
    assert trade.order.permId > 0
    [order] = gateway.orders()
    assert (order["client_id"], order["order_id"], order["status"]) == (1, trade.order.orderId, "Submitted")
    assert (order["account"], order["symbol"], order["order_ref"], order["limit_price"]) == (
        ACC1, "AAPL", "ks-open-1", 150.0,
    )
    [placed] = gateway.placed_orders
    assert (placed["order_ref"], placed["modify"], placed["outcome"], placed["exchange"]) == (
        "ks-open-1", False, "working", "SMART",
    )
    assert not [c for c in codes(errors) if c < 2100]


def test_market_order_fills_at_last_price_and_moves_position(gateway, connect) -> None:
    gateway.set_position(ACC1, "AAPL", 10, 150.0)
    gateway.set_price("AAPL", 175.5)
    ib, _ = connect(1)
    trade = ib.placeOrder(stock("AAPL"), market("SELL", 4, ref="ks-close-1"))
    wait_until(ib, lambda: trade.orderStatus.status == "Filled" and trade.fills
               and trade.fills[0].commissionReport.commission > 0)
    assert trade.orderStatus.avgFillPrice == 175.5
    assert trade.orderStatus.filled == 4 and trade.orderStatus.remaining == 0
    [fill] = trade.fills
    assert (fill.execution.side, fill.execution.shares, fill.execution.price) == ("SLD", 4.0, 175.5)
    assert (fill.execution.acctNumber, fill.execution.orderRef) == (ACC1, "ks-close-1")
    # Closing 4 @ 175.5 against avg cost 150 realizes 102 minus the 1.00 commission.
    assert fill.commissionReport.realizedPNL == pytest.approx(101.0)
    wait_until(ib, lambda: [p.position for p in ib.positions(ACC1)] == [6.0])
    assert gateway.positions() == [
        {"account": ACC1, "symbol": "AAPL", "con_id": con_id_for("AAPL"), "qty": 6.0, "avg_cost": 150.0}
    ]

    # Flattening completely: ib_async drops the zero position.
    trade2 = ib.placeOrder(stock("AAPL"), market("SELL", 6))
    wait_until(ib, lambda: trade2.isDone() and not ib.positions(ACC1))
    assert gateway.positions() == []


def test_same_order_id_modifies_the_order(gateway, connect) -> None:
    ib, _ = connect(1)
    order = limit("BUY", 10, 150.0, ref="v1")
    trade = ib.placeOrder(stock("AAPL"), order)
    wait_until(ib, lambda: trade.orderStatus.status == "Submitted")
    order.lmtPrice, order.totalQuantity, order.orderRef = 151.0, 12, "v2"
    ib.placeOrder(stock("AAPL"), order)
    wait_until(ib, lambda: trade.orderStatus.remaining == 12)
    assert trade.log[-2].message == "Modify" and trade.orderStatus.status == "Submitted"
    [gw_order] = gateway.orders()
    assert (gw_order["limit_price"], gw_order["qty"], gw_order["order_ref"]) == (151.0, 12.0, "v2")
    assert [p["modify"] for p in gateway.placed_orders] == [False, True]


def test_qualify_market_data_and_what_if(gateway, connect) -> None:
    gateway.set_price("NVDA", 99.5)
    ib, _ = connect(1)
    [contract] = ib.qualifyContracts(stock("NVDA"))
    assert contract.conId == con_id_for("NVDA") and contract.primaryExchange == "NASDAQ"
    [ticker] = ib.reqTickers(contract)
    assert ticker.last == 99.5
    state = ib.whatIfOrder(contract, limit("BUY", 10, 100.0))
    assert float(state.initMarginChange) == pytest.approx(250.0)
    assert gateway.orders() == []  # what-if orders are never placed


# ---------------------------------------------------------------------- cancelling


def test_cancel_working_order(gateway, connect) -> None:
    ib, errors = connect(1)
    trade = ib.placeOrder(stock("AAPL"), limit("BUY", 10, 150.0))
    wait_until(ib, lambda: trade.orderStatus.status == "Submitted")
    ib.cancelOrder(trade.order)
    wait_until(ib, lambda: trade.orderStatus.status == "Cancelled")
    assert (trade.order.orderId, 202) in [(r, c) for r, c, _ in errors]
    assert trade not in ib.openTrades()
    assert [o["status"] for o in gateway.orders()] == ["Cancelled"]
    assert [(c["order_id"], c["outcome"]) for c in gateway.cancel_requests] == [
        (trade.order.orderId, "cancelled")
    ]
    # ib_async sees it among completed orders.
    completed = ib.reqCompletedOrders(apiOnly=False)
    assert [(t.order.permId, t.orderStatus.status) for t in completed] == [
        (trade.order.permId, "Cancelled")
    ]


def test_cancel_unknown_filled_or_foreign_order_is_refused(gateway, connect) -> None:
    foreign = gateway.add_working_order(ACC1, "MSFT", "BUY", 1, 300.0, client_id=9)
    ib, errors = connect(1)

    ib.client.cancelOrder(4242)
    wait_until(ib, lambda: (4242, 10147) in [(r, c) for r, c, _ in errors])

    filled = ib.placeOrder(stock("AAPL"), market("BUY", 1))
    wait_until(ib, filled.isDone)
    ib.client.cancelOrder(filled.order.orderId)
    wait_until(ib, lambda: (filled.order.orderId, 10148) in [(r, c) for r, c, _ in errors])
    assert filled.orderStatus.status == "Filled"

    # Only the owning client may cancel an order (reqGlobalCancel is the way to kill others).
    ib.client.cancelOrder(foreign)
    wait_until(ib, lambda: (foreign, 10147) in [(r, c) for r, c, _ in errors])
    assert next(o for o in gateway.orders() if o["order_id"] == foreign)["status"] == "Submitted"
    assert [c["outcome"] for c in gateway.cancel_requests] == ["not_found", "too_late", "not_found"]


def test_global_cancel_cancels_every_account_and_client(gateway, connect) -> None:
    gateway.add_working_order(ACC1, "AAPL", "BUY", 5, 100.0, client_id=0)
    gateway.add_working_order(ACC2, "MSFT", "SELL", 5, 500.0, client_id=3)
    ib, _ = connect(1)
    own = ib.placeOrder(stock("IBM"), limit("BUY", 2, 90.0, account=ACC2))
    wait_until(ib, lambda: own.orderStatus.status == "Submitted")
    assert len(ib.reqAllOpenOrders()) == 3

    ib.reqGlobalCancel()
    wait_until(ib, lambda: own.orderStatus.status == "Cancelled")
    wait_until(ib, lambda: all(o["status"] == "Cancelled" for o in gateway.orders()))
    assert gateway.global_cancel_count == 1
    assert ib.reqAllOpenOrders() == []


# ---------------------------------------------------------------------- fault scenarios


def test_rejected_order_reports_error_and_cancelled_status(gateway, connect) -> None:
    gateway.set_position(ACC1, "AAPL", 10, 150.0)
    ib, errors = connect(1)
    rejected: list[Trade] = []
    gateway.reject_next_orders(1, code=201, message="Order rejected - reason:Test says no")
    trade = ib.placeOrder(stock("AAPL"), market("SELL", 10, ref="close"))
    trade.cancelledEvent += rejected.append
    wait_until(ib, lambda: trade.orderStatus.status == "Cancelled")
    assert rejected == [trade]
    assert (trade.order.orderId, 201, "Order rejected - reason:Test says no") in errors
    assert trade.log[-1].errorCode == 201
    assert gateway.positions()[0]["qty"] == 10  # nothing traded
    assert gateway.orders() == []

    retry = ib.placeOrder(stock("AAPL"), market("SELL", 10, ref="close"))
    wait_until(ib, lambda: retry.orderStatus.status == "Filled")
    assert [p["outcome"] for p in gateway.placed_orders] == ["rejected", "filled"]
    assert [p["order_ref"] for p in gateway.placed_orders] == ["close", "close"]


def test_partial_fill_racing_cancel(gateway, connect) -> None:
    ib, errors = connect(1)
    trade = ib.placeOrder(stock("AAPL"), limit("BUY", 100, 150.0, ref="open"))
    wait_until(ib, lambda: trade.orderStatus.status == "Submitted")
    gateway.partial_fill_on_cancel(trade.order.orderId, 40)
    ib.cancelOrder(trade.order)
    wait_until(ib, lambda: trade.orderStatus.status == "Cancelled" and trade.fills)
    assert trade.filled() == 40 and trade.orderStatus.filled == 40
    assert trade.orderStatus.remaining == 60
    assert [(f.execution.shares, f.execution.price) for f in trade.fills] == [(40.0, 150.0)]
    assert 202 in codes(errors)
    wait_until(ib, lambda: [p.position for p in ib.positions(ACC1)] == [40.0])
    [gw_order] = gateway.orders()
    assert (gw_order["status"], gw_order["filled"], gw_order["remaining"]) == ("Cancelled", 40.0, 60.0)
    assert [c["outcome"] for c in gateway.cancel_requests] == ["partially_filled_then_cancelled"]


def test_fill_before_cancel_answers_cancel_too_late(gateway, connect) -> None:
    ib, errors = connect(1)
    trade = ib.placeOrder(stock("AAPL"), limit("SELL", 5, 180.0))
    wait_until(ib, lambda: trade.orderStatus.status == "Submitted")
    gateway.fill_before_cancel(trade.order.orderId)
    ib.cancelOrder(trade.order)
    wait_until(ib, lambda: 10148 in codes(errors))
    assert trade.orderStatus.status == "Filled"
    assert trade.filled() == 5
    assert 202 not in codes(errors)
    wait_until(ib, lambda: [p.position for p in ib.positions(ACC1)] == [-5.0])
    assert [(c["outcome"], c["error_code"]) for c in gateway.cancel_requests] == [("too_late", 10148)]


def test_drop_connections_then_reconnect(gateway, connect) -> None:
    gateway.set_position(ACC1, "AAPL", 10, 150.0)
    ib, _ = connect(3)
    order = ib.placeOrder(stock("AAPL"), limit("SELL", 10, 200.0, ref="resting"))
    wait_until(ib, lambda: order.orderStatus.status == "Submitted")
    dropped: list[bool] = []
    ib.disconnectedEvent += lambda: dropped.append(True)

    gateway.drop_connections()
    wait_disconnected(ib)
    assert dropped == [True]
    assert gateway.connected_client_ids == []

    ib.connect("127.0.0.1", gateway.port, clientId=3, timeout=5)
    assert ib.isConnected()
    assert [p.position for p in ib.positions(ACC1)] == [10.0]
    # The order outlived the session and is recovered with its orderRef.
    assert [(t.order.orderId, t.order.orderRef) for t in ib.openTrades()] == [
        (order.order.orderId, "resting")
    ]
    assert gateway.connected_client_ids == [3]


def test_pause_accepting_refuses_then_recovers(gateway, connect) -> None:
    ib, _ = connect(1)
    gateway.pause_accepting(0.5)
    other = IB()
    with pytest.raises(ConnectionRefusedError):
        other.connect("127.0.0.1", gateway.port, clientId=2, timeout=2)
    assert ib.isConnected()  # existing sessions are untouched
    settle(ib, 0.6)
    ib2, _ = connect(2)
    assert ib2.isConnected()


def test_delay_ms_slows_every_reply(gateway, connect) -> None:
    ib, _ = connect(1)
    gateway.delay_ms = 150
    started = time.monotonic()
    ib.reqCurrentTime()
    assert time.monotonic() - started >= 0.15
    gateway.delay_ms = 0


# ---------------------------------------------------------------------- pacing


def test_pacing_violation_when_blasting(gateway, connect) -> None:
    ib, errors = connect(1)
    ib.client.MaxRequests = 0  # switch off ib_async's own throttle to blast
    for _ in range(80):
        ib.client.reqCurrentTime()
    wait_until(ib, lambda: 100 in codes(errors))
    settle(ib)
    violations = codes(errors).count(100)
    # The connect requests (~7) share the 1 s window, so at least 80 - 50 excess messages.
    assert violations >= 30
    assert gateway.pacing_violations == violations
    assert "Max rate of messages per second has been exceeded" in next(
        m for _r, c, m in errors if c == 100
    )


def test_throttled_client_stays_under_pacing_limit(gateway, connect) -> None:
    ib, errors = connect(1)  # ib_async's default throttle: 45 requests / s
    throttle_ended: list[bool] = []
    ib.client.throttleEnd += lambda: throttle_ended.append(True)
    for _ in range(60):
        ib.client.reqCurrentTime()
    wait_until(ib, lambda: throttle_ended, timeout=5)
    settle(ib)
    assert gateway.pacing_violations == 0
    assert 100 not in codes(errors)


# ---------------------------------------------------------------------- sessions across clients / process


def test_fills_and_completed_orders_visible_to_a_new_session(gateway, connect) -> None:
    ib1, _ = connect(1)
    trade = ib1.placeOrder(stock("AAPL"), market("BUY", 3, ref="earlier"))
    wait_until(ib1, trade.isDone)
    ib1.disconnect()

    ib2, _ = connect(1)  # same client id again: reqExecutions at connect restores the fills
    assert [(f.execution.orderId, f.execution.shares) for f in ib2.fills()] == [
        (trade.order.orderId, 3.0)
    ]
    completed = ib2.reqCompletedOrders(apiOnly=True)
    assert [(t.order.orderRef, t.orderStatus.status, t.order.filledQuantity) for t in completed] == [
        ("earlier", "Filled", 3.0)
    ]


def test_runs_as_a_process(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_ib.gateway", "--port", "0", "--accounts", ACC1,
         "--position", f"{ACC1}:AAPL:5:10.5", "--price", "AAPL=12"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        assert line[0] == "READY", line
        ib = IB()
        ib.connect("127.0.0.1", int(line[1]), clientId=1, timeout=5)
        assert [(p.position, p.avgCost) for p in ib.positions()] == [(5.0, 10.5)]
        trade = ib.placeOrder(stock("AAPL"), MarketOrder("SELL", 5))
        wait_until(ib, trade.isDone)
        assert trade.orderStatus.avgFillPrice == 12.0
        proc.terminate()  # SIGTERM: the gateway closes every session and exits cleanly
        wait_disconnected(ib)
        assert proc.wait(5) == 0
        assert proc.stderr is not None and proc.stderr.read() == ""
    finally:
        proc.kill()
        proc.wait(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
