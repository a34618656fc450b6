"""Contracts by conId through the real ib_async client: qualifyContracts, contract
details, positions and portfolio carrying the full contract, for every secType."""

from __future__ import annotations

import pytest
from ib_async import Contract, Future, Option, Stock

from .support import ACC1, ACC2, CONTRACTS, FACTORS, PRICES, SEC_TYPES, codes, con, wait_until

# Contract fields as ib_async reports them, per secType (bonds: bondContractData carries
# no primaryExchange, localSymbol, multiplier or expiry, as at IB).
EXPECTED = {
    "STK": dict(symbol="AAPL", exchange="SMART", primaryExchange="NASDAQ", currency="USD",
                localSymbol="AAPL", tradingClass="NMS"),
    "FUT": dict(symbol="ES", exchange="CME", currency="USD", multiplier="50",
                lastTradeDateOrContractMonth="20261218", localSymbol="ESZ6", tradingClass="ES"),
    "OPT": dict(symbol="AAPL", exchange="SMART", currency="USD", multiplier="100",
                lastTradeDateOrContractMonth="20261218", strike=200.0, right="C",
                localSymbol="AAPL  261218C00200000", tradingClass="AAPL"),
    "FOP": dict(symbol="ES", exchange="CME", currency="USD", multiplier="50",
                lastTradeDateOrContractMonth="20261218", strike=6000.0, right="P",
                localSymbol="ESZ6 P6000", tradingClass="ES"),
    "CASH": dict(symbol="EUR", exchange="IDEALPRO", currency="USD", localSymbol="EUR.USD",
                 tradingClass="EUR.USD"),
    "CFD": dict(symbol="IBUS500", exchange="SMART", currency="USD", localSymbol="IBUS500",
                tradingClass="IBUS500"),
    "CRYPTO": dict(symbol="BTC", exchange="PAXOS", currency="USD", localSymbol="BTC.USD",
                   tradingClass="BTC"),
    "BOND": dict(symbol="912810TV0", exchange="SMART", currency="USD", tradingClass="GOVT"),
}


def fields_of(contract: Contract, names: dict) -> dict:
    return {name: getattr(contract, name) for name in names}


@pytest.mark.parametrize("sec_type", SEC_TYPES)
def test_qualify_by_con_id_fills_in_the_whole_contract(desk, connect, sec_type) -> None:
    ib, errors = connect(1)
    contract = Contract(conId=con(sec_type))
    [qualified] = ib.qualifyContracts(contract)
    assert qualified is contract  # ib_async updates the contract in place
    assert contract.secType == sec_type
    assert fields_of(contract, EXPECTED[sec_type]) == EXPECTED[sec_type]
    [details] = ib.reqContractDetails(Contract(conId=con(sec_type)))
    spec = CONTRACTS[sec_type]
    assert details.longName == spec.get("long_name", spec["symbol"])
    assert details.minTick == spec.get("min_tick", 0.00005 if sec_type == "CASH" else 0.01)
    assert details.priceMagnifier == (0 if sec_type == "BOND" else 1)  # not in bondContractData
    assert details.validExchanges.split(",")[0] == spec["exchange"]
    assert details.marketName == EXPECTED[sec_type]["tradingClass"]
    if sec_type == "BOND":
        assert details.maturity == "20540215"
    assert [c for c in codes(errors) if c < 2100] == []


def test_contract_details_of_derivatives_name_the_underlying(desk, connect) -> None:
    ib, _ = connect(1)
    [option] = ib.reqContractDetails(Contract(conId=con("OPT")))
    assert (option.underConId, option.underSymbol, option.underSecType) == (con("STK"), "AAPL", "STK")
    assert option.validExchanges == "SMART,CBOE"
    [fop] = ib.reqContractDetails(Contract(conId=con("FOP")))
    assert (fop.underConId, fop.underSecType, fop.contractMonth) == (con("FUT"), "FUT", "202612")
    assert fop.timeZoneId == "US/Central"


def test_unknown_con_id_gets_error_200_on_that_request(desk, connect) -> None:
    ib, errors = connect(1)
    assert ib.qualifyContracts(Contract(conId=999_999_999)) == [None]
    [(req_id, code, message)] = [e for e in errors if e[1] < 2100]
    assert (code, message) == (200, "No security definition has been found for the request")
    assert req_id > 0  # the request's id, not -1
    # A conId with fields that contradict it is unknown too.
    assert ib.qualifyContracts(Contract(conId=con("FUT"), secType="STK")) == [None]


def test_qualify_by_fields_as_ib_matches_them(desk, connect) -> None:
    ib, _ = connect(1)
    # A stock by symbol is the stock, not the option on it.
    [stock] = ib.qualifyContracts(Stock("AAPL", "SMART", "USD"))
    assert (stock.conId, stock.secType) == (con("STK"), "STK")
    # A future by symbol and contract month, on its exchange.
    [future] = ib.qualifyContracts(Future("ES", "202612", "CME"))
    assert future.conId == con("FUT")
    [option] = ib.qualifyContracts(Option("AAPL", "20261218", 200, "CALL", "SMART"))
    assert option.conId == con("OPT")
    # Unset fields are wildcards: AAPL alone matches the stock and the option.
    assert len(ib.reqContractDetails(Contract(symbol="AAPL"))) == 2
    # A future is not routed through SMART here: no such contract.
    assert ib.qualifyContracts(Future("ES", "202612", "SMART")) == [None]


def test_a_symbol_known_as_a_future_is_no_stock(desk, connect) -> None:
    # The bug this fake exists to catch: closing ES futures as Stock("ES").
    ib, _ = connect(1)
    assert ib.qualifyContracts(Stock("ES", "SMART", "USD")) == [None]
    assert [c["sec_type"] for c in desk.contracts() if c["symbol"] == "ES"] == ["FUT", "FOP"]


@pytest.mark.parametrize("sec_type", SEC_TYPES)
def test_positions_carry_the_full_contract(desk, connect, sec_type) -> None:
    avg_cost = PRICES[sec_type] * FACTORS[sec_type]
    desk.set_position(ACC2, con(sec_type), -3, avg_cost)
    ib, _ = connect(1)
    [pos] = ib.positions()
    assert (pos.account, pos.position, pos.avgCost) == (ACC2, -3.0, avg_cost)
    assert (pos.contract.conId, pos.contract.secType) == (con(sec_type), sec_type)
    reported = {k: v for k, v in EXPECTED[sec_type].items() if k not in ("exchange", "primaryExchange")}
    assert fields_of(pos.contract, reported) == reported
    # TWS reports only the listing exchange: orders need the exchange filled in.
    assert pos.contract.exchange == ("NASDAQ" if sec_type == "STK" else "")
    [again] = ib.reqPositions()
    assert again.contract == pos.contract and again.position == -3.0


@pytest.mark.parametrize("gateway", [(ACC1,)], indirect=True)
def test_portfolio_values_positions_with_their_multiplier(desk, connect) -> None:
    # With one account, ib_async subscribes to its account updates (portfolio) at connect.
    desk.set_position(ACC1, con("FUT"), 2, 5000.0 * 50)
    desk.set_price(con("FUT"), 5010.0)
    ib, _ = connect(1)
    [item] = ib.portfolio()
    assert (item.contract.conId, item.contract.localSymbol) == (con("FUT"), "ESZ6")
    assert (item.position, item.marketPrice, item.marketValue) == (2.0, 5010.0, 501000.0)
    assert (item.averageCost, item.unrealizedPNL) == (250000.0, 1000.0)
    desk.set_price(con("FUT"), 4990.0)  # portfolio subscribers get the new value
    wait_until(ib, lambda: ib.portfolio()[0].unrealizedPNL == -1000.0)


def test_an_aapl_stock_and_an_aapl_option_are_distinct_positions(desk, connect) -> None:
    desk.set_position(ACC1, con("STK"), 100, 190.0)
    desk.set_position(ACC1, con("OPT"), 10, 850.0)
    ib, _ = connect(1)
    got = {(p.contract.conId, p.contract.secType): p.position for p in ib.positions(ACC1)}
    assert got == {(con("STK"), "STK"): 100.0, (con("OPT"), "OPT"): 10.0}
    # Moving the option leaves the stock alone.
    desk.set_position(ACC1, con("OPT"), 0, 0.0)
    wait_until(ib, lambda: len(ib.positions(ACC1)) == 1)
    assert [(p.contract.secType, p.position) for p in ib.positions(ACC1)] == [("STK", 100.0)]
    assert [(p["con_id"], p["qty"]) for p in desk.positions()] == [(con("STK"), 100.0)]


def test_add_contract_refuses_bad_or_conflicting_definitions(desk) -> None:
    with pytest.raises(ValueError, match="multiplier is required for FUT"):
        desk.add_contract(1, "NQ", "FUT", "CME", last_trade_date="20261218")
    with pytest.raises(ValueError, match="secType 'WARRANT' is not one of"):
        desk.add_contract(2, "X", "WARRANT", "SMART")
    with pytest.raises(ValueError, match="needs strike > 0 and right C/P"):
        desk.add_contract(3, "AAPL", "OPT", "SMART", multiplier="100", last_trade_date="20261218")
    with pytest.raises(ValueError, match=f"conId {con('FUT')} is already ESZ6 FUT"):
        desk.add_contract(con("FUT"), "NQ", "STK", "SMART")
    # Registering the same contract again is harmless.
    assert desk.add_contract(**CONTRACTS["FUT"]) == con("FUT")
    with pytest.raises(KeyError, match="no contract with conId 42"):
        desk.set_price(42, 1.0)
    assert desk.contract(con("FUT"))["local_symbol"] == "ESZ6"
    with pytest.raises(KeyError, match="no US stock 'IBM'"):
        desk.contract("IBM")
