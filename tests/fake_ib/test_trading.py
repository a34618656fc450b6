"""Orders by conId on every secType through the real ib_async client: fills, executions
(live and replayed with filters), error 200 for unknown contracts, lagging position reports."""

from __future__ import annotations

import math
import time

import pytest
from ib_async import Contract, ExecutionFilter, LimitOrder, MarketOrder, Stock

from .support import (
    ACC1,
    ACC2,
    CONTRACTS,
    FACTORS,
    PRICES,
    QUANTITIES,
    SEC_TYPES,
    codes,
    con,
    settle,
    wait_until,
)

NO_DEFINITION = "No security definition has been found for the request"
#: Where a fill is reported as executed: the routed exchange, or for SMART a listing venue.
VENUES = {"STK": "ISLAND", "FUT": "CME", "OPT": "CBOE", "FOP": "CME", "CASH": "IDEALPRO",
          "CFD": "SMART", "CRYPTO": "PAXOS", "BOND": "SMART"}


def routed(sec_type: str) -> Contract:
    """The contract as the broker work will send it: conId plus its exchange."""
    return Contract(conId=con(sec_type), exchange=CONTRACTS[sec_type]["exchange"])


@pytest.mark.parametrize("sec_type", SEC_TYPES)
def test_market_order_by_con_id_fills_at_the_contracts_price(desk, connect, sec_type) -> None:
    desk.set_price(con(sec_type), PRICES[sec_type])
    desk.set_price("MSFT", 1.0)  # another instrument's price must not matter
    ib, errors = connect(1)
    qty, price = QUANTITIES[sec_type], PRICES[sec_type]
    trade = ib.placeOrder(routed(sec_type), MarketOrder("BUY", qty, account=ACC1, orderRef="t-1"))
    wait_until(ib, lambda: trade.orderStatus.status == "Filled" and trade.fills
               and trade.fills[-1].commissionReport.commission > 0)
    assert (trade.orderStatus.filled, trade.orderStatus.avgFillPrice) == (qty, price)
    [fill] = trade.fills
    ex = fill.execution
    assert (ex.side, ex.shares, ex.price, ex.cumQty, ex.avgPrice) == ("BOT", qty, price, qty, price)
    assert (ex.acctNumber, ex.orderRef, ex.clientId, ex.orderId) == (ACC1, "t-1", 1, trade.order.orderId)
    assert ex.permId == trade.order.permId and ex.execId
    assert ex.exchange == VENUES[sec_type]
    assert abs(ex.time.timestamp() - time.time()) < 120  # stamped now (TWS time, UTC)
    assert fill.contract.conId == con(sec_type)  # ib_async keeps its own trade's contract
    assert fill.commissionReport.currency == "USD"
    # The position is in contracts / units, its avgCost includes the multiplier.
    wait_until(ib, lambda: [p.position for p in ib.positions(ACC1)] == [qty])
    [pos] = ib.positions(ACC1)
    assert pos.contract.conId == con(sec_type)
    assert pos.avgCost == pytest.approx(price * FACTORS[sec_type])
    [order] = desk.orders()
    assert (order["con_id"], order["sec_type"], order["status"]) == (con(sec_type), sec_type, "Filled")
    # reqExecutions replays the fill exactly, with the full contract on the wire (seen by a
    # client without the trade, since ib_async substitutes the trade's own contract).
    other, _ = connect(2)
    [replayed] = other.reqExecutions(ExecutionFilter(acctCode=ACC1))
    assert replayed.execution.execId == ex.execId
    assert (replayed.execution.shares, replayed.execution.price) == (qty, price)
    assert (replayed.contract.conId, replayed.contract.secType) == (con(sec_type), sec_type)
    assert replayed.contract.localSymbol == CONTRACTS[sec_type].get(
        "local_symbol", "EUR.USD" if sec_type == "CASH" else CONTRACTS[sec_type]["symbol"])
    # (ib_async attaches replayed commission reports to the fills it already holds.)
    [known] = other.fills()
    assert known.commissionReport.commission == fill.commissionReport.commission
    assert [c for c in codes(errors) if c < 2100] == []


def test_closing_a_future_as_itself_flattens_it(desk, connect) -> None:
    desk.set_position(ACC1, con("FUT"), 5, 5000.0 * 50)
    desk.set_price(con("FUT"), 5010.0, bid=5009.75, ask=5010.25)
    ib, _ = connect(1)
    [pos] = ib.positions(ACC1)
    [contract] = ib.qualifyContracts(Contract(conId=pos.contract.conId))  # fills in exchange CME
    trade = ib.placeOrder(contract, MarketOrder("SELL", pos.position, account=ACC1))
    wait_until(ib, lambda: trade.isDone() and trade.fills and not ib.positions(ACC1))
    assert trade.orderStatus.avgFillPrice == 5009.75  # a market sell hits the bid
    # 5 contracts x (5009.75 - 5000) x 50 = 2437.50, less 5 x 0.85 commission.
    assert trade.fills[0].commissionReport.realizedPNL == pytest.approx(2437.5 - 4.25)
    assert desk.positions() == []
    assert [(e["con_id"], e["side"], e["shares"]) for e in desk.executions()] == [(con("FUT"), "SLD", 5.0)]


def test_order_on_an_unknown_con_id_is_rejected_with_error_200(desk, connect) -> None:
    ib, errors = connect(1)
    trade = ib.placeOrder(Contract(conId=999_999_999, exchange="SMART"), MarketOrder("SELL", 5, account=ACC1))
    wait_until(ib, lambda: trade.orderStatus.status == "Cancelled")
    assert (trade.order.orderId, 200, NO_DEFINITION) in errors
    assert desk.orders() == [] and desk.executions() == []
    [placed] = desk.placed_orders
    assert (placed["outcome"], placed["error_code"], placed["requested_con_id"]) == ("rejected", 200, 999_999_999)


def test_a_future_closed_as_a_stock_is_rejected_and_nothing_trades(desk, connect) -> None:
    # The adapter bug: a long 5 ES futures "closed" by selling 5 ES shares.
    desk.set_position(ACC1, con("FUT"), 5, 5000.0 * 50)
    ib, errors = connect(1)
    trade = ib.placeOrder(Stock("ES", "SMART", "USD"), MarketOrder("SELL", 5, account=ACC1))
    wait_until(ib, lambda: trade.orderStatus.status == "Cancelled")
    assert (trade.order.orderId, 200, NO_DEFINITION) in errors
    assert desk.orders() == []
    assert [(p["con_id"], p["qty"]) for p in desk.positions()] == [(con("FUT"), 5.0)]
    assert not [c for c in desk.contracts() if c["sec_type"] == "STK" and c["symbol"] == "ES"]


def test_order_on_a_position_contract_needs_its_exchange(desk, connect) -> None:
    desk.set_position(ACC1, con("OPT"), 10, 850.0)
    ib, errors = connect(1)
    [pos] = ib.positions(ACC1)
    trade = ib.placeOrder(pos.contract, MarketOrder("SELL", 10, account=ACC1))  # exchange ""
    wait_until(ib, lambda: 321 in codes(errors))
    assert "Missing order exchange" in next(m for _r, c, m in errors if c == 321)
    # Routed somewhere the contract does not trade: no such security.
    wrong = ib.placeOrder(Contract(conId=con("FUT"), exchange="SMART"), MarketOrder("BUY", 1, account=ACC1))
    wait_until(ib, lambda: wrong.orderStatus.status == "Cancelled")
    assert (wrong.order.orderId, 200, NO_DEFINITION) in errors
    assert desk.orders() == [] and trade.fills == []


def test_an_option_order_leaves_the_stock_position_alone(desk, connect) -> None:
    desk.set_position(ACC1, con("STK"), 100, 190.0)
    desk.set_position(ACC1, con("OPT"), 10, 850.0)
    desk.set_price(con("OPT"), 9.0)
    ib, _ = connect(1)
    trade = ib.placeOrder(routed("OPT"), MarketOrder("SELL", 10, account=ACC1))
    wait_until(ib, lambda: trade.isDone() and len(ib.positions(ACC1)) == 1)
    assert [(p.contract.secType, p.position) for p in ib.positions(ACC1)] == [("STK", 100.0)]
    # 10 x (9.00 - 8.50) x 100 = 500, less the 6.50 option commission.
    assert trade.fills[0].commissionReport.realizedPNL == pytest.approx(493.5)
    # And a stock order by symbol is the stock, with the option on the books.
    stock = ib.placeOrder(Stock("AAPL", "SMART", "USD"), MarketOrder("SELL", 100, account=ACC1))
    wait_until(ib, lambda: stock.isDone() and not ib.positions(ACC1))
    assert desk.orders()[-1]["con_id"] == con("STK")


def test_working_orders_on_any_contract_are_visible_and_cancellable(desk, connect) -> None:
    fx = desk.add_working_order(ACC2, con("CASH"), "SELL", 25000, 1.10, order_ref="fx", client_id=1)
    stop = desk.add_working_order(ACC1, con("OPT"), "SELL", 5, None, client_id=1,
                                  order_type="STP", stop_price=5.0)
    ib, _ = connect(1)
    got = {t.order.orderId: (t.contract.conId, t.contract.secType, t.order.orderType, t.contract.exchange)
           for t in ib.openTrades()}
    assert got == {fx: (con("CASH"), "CASH", "LMT", "IDEALPRO"), stop: (con("OPT"), "OPT", "STP", "SMART")}
    ib.reqGlobalCancel()
    wait_until(ib, lambda: not ib.openTrades())
    assert {o["status"] for o in desk.orders()} == {"Cancelled"}


def test_exec_filters_select_like_ib(desk, connect) -> None:
    ib1, _ = connect(1)
    ib2, _ = connect(2)
    placed = [
        ib1.placeOrder(routed("FUT"), MarketOrder("BUY", 2, account=ACC1)),
        ib1.placeOrder(routed("STK"), MarketOrder("SELL", 10, account=ACC2)),
        ib2.placeOrder(routed("CASH"), MarketOrder("BUY", 25000, account=ACC1)),
    ]
    wait_until(ib1, lambda: all(t.isDone() for t in placed[:2]))
    wait_until(ib2, lambda: placed[2].isDone())

    def ids(**filter_fields: object) -> list[int]:
        return sorted(f.contract.conId for f in ib1.reqExecutions(ExecutionFilter(**filter_fields)))

    assert ids() == sorted([con("FUT"), con("STK"), con("CASH")])
    assert ids(clientId=2) == [con("CASH")]
    assert ids(acctCode=ACC2) == [con("STK")]
    assert ids(secType="FUT") == [con("FUT")]
    assert ids(symbol="EUR") == [con("CASH")]
    assert ids(side="SELL") == [con("STK")]
    assert ids(acctCode=ACC1, clientId=1) == [con("FUT")]
    future = time.strftime("%Y%m%d %H:%M:%S", time.gmtime(time.time() + 3600))
    assert ids(time=future) == []
    past = time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(time.time() - 3600))
    assert len(ids(time=past)) == 3


def test_bad_exec_filter_time_is_an_error_not_a_hang(desk, connect) -> None:
    ib, errors = connect(1)
    assert ib.reqExecutions(ExecutionFilter(time="yesterday")) == []
    assert 320 in codes(errors)


def test_position_reports_lag_behind_fills(desk, connect) -> None:
    desk.set_position(ACC1, con("FUT"), 5, 5000.0 * 50)
    desk.position_report_lag(math.inf)  # held until released: no timing in the test
    ib, _ = connect(1)
    trade = ib.placeOrder(routed("FUT"), MarketOrder("SELL", 5, account=ACC1))
    wait_until(ib, lambda: trade.orderStatus.status == "Filled" and trade.fills)
    assert ib.reqExecutions()[0].execution.shares == 5  # the fill is reported at once
    settle(ib)
    # ... while every position report still says 5, pushed or asked for.
    assert [p.position for p in ib.positions(ACC1)] == [5.0]
    assert [p.position for p in ib.reqPositions() if p.account == ACC1] == [5.0]
    assert desk.positions() == []  # the truth
    desk.release_position_reports()
    wait_until(ib, lambda: not ib.positions(ACC1))
    assert [p.position for p in ib.reqPositions() if p.account == ACC1] == [0.0]


def test_position_report_lag_in_seconds(desk, connect) -> None:
    desk.position_report_lag(0.5)
    ib, _ = connect(1)
    arrived: list[float] = []
    ib.positionEvent += lambda p: arrived.append(time.monotonic())
    trade = ib.placeOrder(routed("STK"), LimitOrder("BUY", 3, 190.0, account=ACC1))
    wait_until(ib, lambda: trade.orderStatus.status == "Submitted")
    desk.fill_order(trade.order.orderId, client_id=1)
    filled = time.monotonic()
    wait_until(ib, lambda: [p.position for p in ib.positions(ACC1)] == [3.0])
    assert trade.fills and arrived[-1] - filled >= 0.45  # never before the lag has passed
    desk.position_report_lag(0)
    again = ib.placeOrder(routed("STK"), MarketOrder("BUY", 1, account=ACC1))
    wait_until(ib, lambda: again.isDone() and [p.position for p in ib.positions(ACC1)] == [4.0])


def test_a_thin_market_leaves_the_rest_of_a_market_order_working(desk, connect) -> None:
    desk.set_price(con("FUT"), 5010.0)
    desk.market_liquidity(2)
    ib, _ = connect(1)
    trade = ib.placeOrder(routed("FUT"), MarketOrder("SELL", 5, account=ACC1, orderRef="thin"))
    wait_until(ib, lambda: trade.orderStatus.filled == 2)
    settle(ib)
    assert (trade.orderStatus.status, trade.orderStatus.remaining) == ("Submitted", 3)
    [order] = desk.orders()
    assert (order["status"], order["filled"]) == ("Submitted", 2.0)
    desk.fill_order(trade.order.orderId, client_id=1)
    wait_until(ib, lambda: trade.orderStatus.status == "Filled")
    assert [(p["con_id"], p["qty"]) for p in desk.positions()] == [(con("FUT"), -5.0)]
    desk.market_liquidity(None)
    again = ib.placeOrder(routed("FUT"), MarketOrder("BUY", 5, account=ACC1))
    wait_until(ib, lambda: again.orderStatus.status == "Filled")
