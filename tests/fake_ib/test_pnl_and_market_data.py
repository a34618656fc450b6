"""reqPnL / reqPnLSingle and reqMktData by conId through the real ib_async client."""

from __future__ import annotations

import pytest
from ib_async import Contract, MarketOrder

from .support import ACC1, ACC2, CONTRACTS, codes, con, settle, wait_until


def test_pnl_follows_price_moves_and_fills(desk, connect) -> None:
    desk.set_price(con("FUT"), 5000.0)
    desk.set_position(ACC1, con("FUT"), 2, 5000.0 * 50)
    desk.set_position(ACC1, con("STK"), 10, 190.0)  # no price yet: marked at its cost
    desk.set_position(ACC2, con("FUT"), -1, 5000.0 * 50)  # another account: not in ACC1's P&L
    ib, _ = connect(1)
    account = ib.reqPnL(ACC1)
    single = ib.reqPnLSingle(ACC1, "", con("FUT"))
    wait_until(ib, lambda: single.position == 2 and account.unrealizedPnL == 0.0)
    assert (single.dailyPnL, single.unrealizedPnL, single.value) == (0.0, 0.0, 500000.0)

    desk.set_price(con("FUT"), 5010.0)  # +10 points x 50 x 2 contracts
    wait_until(ib, lambda: single.unrealizedPnL == 1000.0)
    assert (single.dailyPnL, single.realizedPnL, single.value) == (1000.0, 0.0, 501000.0)
    wait_until(ib, lambda: account.unrealizedPnL == 1000.0)
    assert account.dailyPnL == 1000.0

    desk.set_price(con("STK"), 195.0)  # the stock moves too: +5 x 10
    wait_until(ib, lambda: account.unrealizedPnL == 1050.0)
    assert account.dailyPnL == 1050.0

    trade = ib.placeOrder(Contract(conId=con("FUT"), exchange="CME"), MarketOrder("SELL", 1, account=ACC1))
    wait_until(ib, lambda: trade.isDone() and single.position == 1)
    # Realized: 1 x 10 x 50 less the 0.85 commission; the rest stays unrealized.
    assert (single.realizedPnL, single.unrealizedPnL, single.value) == (499.15, 500.0, 250500.0)
    assert single.dailyPnL == pytest.approx(999.15)
    wait_until(ib, lambda: account.realizedPnL == 499.15)
    assert account.dailyPnL == pytest.approx(1049.15)
    assert desk.pnl(ACC1) == pytest.approx({"daily": 1049.15, "unrealized": 550.0, "realized": 499.15})


def test_daily_pnl_counts_from_the_prior_close(desk, connect) -> None:
    desk.set_price(con("STK"), 195.0, close=193.0)
    desk.set_position(ACC1, con("STK"), 100, 190.0)
    ib, _ = connect(1)
    single = ib.reqPnLSingle(ACC1, "", con("STK"))
    wait_until(ib, lambda: single.position == 100)
    assert (single.dailyPnL, single.unrealizedPnL) == (200.0, 500.0)


def test_pnl_of_a_fractional_crypto_position(desk, connect) -> None:
    desk.set_price(con("CRYPTO"), 64000.0)
    desk.set_position(ACC1, con("CRYPTO"), 0.75, 60000.0)
    ib, _ = connect(1)
    single = ib.reqPnLSingle(ACC1, "", con("CRYPTO"))
    wait_until(ib, lambda: single.position == 0.75)
    assert (single.unrealizedPnL, single.value) == (3000.0, 48000.0)


def test_cancelled_pnl_subscriptions_stop_updating(desk, connect) -> None:
    desk.set_position(ACC1, con("FUT"), 1, 5000.0 * 50)
    ib, errors = connect(1)
    account = ib.reqPnL(ACC1)
    single = ib.reqPnLSingle(ACC1, "", con("FUT"))
    wait_until(ib, lambda: single.position == 1 and account.dailyPnL == 0.0)
    ib.cancelPnL(ACC1)
    ib.cancelPnLSingle(ACC1, "", con("FUT"))
    events: list[object] = []
    ib.pnlEvent += events.append
    ib.pnlSingleEvent += events.append
    desk.set_price(con("FUT"), 5100.0)
    settle(ib)
    assert events == []
    # An unknown account or contract is refused on the request.
    ib.reqPnLSingle(ACC1, "", 999_999_999)
    ib.reqPnL("DU000000")
    wait_until(ib, lambda: {200, 321} <= set(codes(errors)))


def test_market_data_by_con_id_follows_set_price(desk, connect) -> None:
    desk.set_price(con("CASH"), 1.0862, bid=1.0861, ask=1.0863)
    ib, errors = connect(1)
    contract = Contract(conId=con("CASH"), exchange="IDEALPRO")
    ticker = ib.reqMktData(contract)
    wait_until(ib, lambda: ticker.last == 1.0862)
    assert (ticker.bid, ticker.ask, ticker.close) == (1.0861, 1.0863, 1.0862)
    desk.set_price(con("CASH"), 1.0900, bid=1.0899, ask=1.0901)
    wait_until(ib, lambda: ticker.last == 1.09)
    assert (ticker.bid, ticker.ask) == (1.0899, 1.0901)
    # A snapshot of another secType, and an unknown conId.
    desk.set_price(con("FOP"), 125.5)
    [fop] = ib.reqTickers(Contract(conId=con("FOP"), exchange=CONTRACTS["FOP"]["exchange"]))
    assert fop.last == 125.5
    ib.cancelMktData(contract)
    unknown = ib.reqMktData(Contract(conId=999_999_999, exchange="SMART"))
    wait_until(ib, lambda: 200 in codes(errors))
    assert unknown.last != unknown.last  # nan: nothing was sent for it
