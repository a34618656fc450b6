"""Helpers shared by the fake gateway's tests: bounded waits, and one contract per secType."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from ib_async import IB

ACC1, ACC2 = "DU111111", "DU222222"
ErrorLog = list[tuple[int, int, str]]

#: One contract per security type, as add_contract() keyword arguments.
CONTRACTS: dict[str, dict[str, Any]] = {
    "STK": dict(con_id=265598, symbol="AAPL", sec_type="STK", exchange="SMART",
                primary_exchange="NASDAQ", trading_class="NMS", long_name="APPLE INC"),
    "FUT": dict(con_id=495512563, symbol="ES", sec_type="FUT", exchange="CME", multiplier="50",
                last_trade_date="20261218", local_symbol="ESZ6", trading_class="ES",
                min_tick=0.25, long_name="E-mini S&P 500"),
    "OPT": dict(con_id=700000001, symbol="AAPL", sec_type="OPT", exchange="SMART",
                multiplier="100", last_trade_date="20261218", strike=200.0, right="C",
                local_symbol="AAPL  261218C00200000", trading_class="AAPL",
                valid_exchanges="SMART,CBOE", under_con_id=265598),
    "FOP": dict(con_id=700000002, symbol="ES", sec_type="FOP", exchange="CME", multiplier="50",
                last_trade_date="20261218", strike=6000.0, right="P", local_symbol="ESZ6 P6000",
                trading_class="ES", under_con_id=495512563, min_tick=0.05),
    "CASH": dict(con_id=12087792, symbol="EUR", sec_type="CASH", exchange="IDEALPRO",
                 long_name="European Monetary Union Euro"),
    "CFD": dict(con_id=143916318, symbol="IBUS500", sec_type="CFD", exchange="SMART",
                long_name="US 500 Index CFD"),
    "CRYPTO": dict(con_id=479624278, symbol="BTC", sec_type="CRYPTO", exchange="PAXOS",
                   local_symbol="BTC.USD", min_tick=0.25, long_name="Bitcoin"),
    "BOND": dict(con_id=700000003, symbol="912810TV0", sec_type="BOND", exchange="SMART",
                 last_trade_date="20540215", local_symbol="T 4 1/4 02/15/54", trading_class="GOVT",
                 valid_exchanges="SMART", long_name="United States Treasury 4 1/4 02/15/54"),
}
PRICES = {"STK": 195.0, "FUT": 5010.25, "OPT": 9.1, "FOP": 125.5, "CASH": 1.0862,
          "CFD": 5950.0, "CRYPTO": 65000.0, "BOND": 96.5}
#: An order size per secType (FX in base currency, crypto fractional).
QUANTITIES = {"STK": 10, "FUT": 2, "OPT": 3, "FOP": 1, "CASH": 25000, "CFD": 5,
              "CRYPTO": 0.5, "BOND": 10}
#: Currency value of a quantity of one at a price of one (multiplier; bonds per 1,000 face).
FACTORS = {"STK": 1, "FUT": 50, "OPT": 100, "FOP": 50, "CASH": 1, "CFD": 1, "CRYPTO": 1, "BOND": 10}
SEC_TYPES = list(CONTRACTS)


def con(sec_type: str) -> int:
    return CONTRACTS[sec_type]["con_id"]


def wait_until(ib: IB, predicate: Callable[[], object], timeout: float = 3.0) -> None:
    """Run ib_async's loop until ``predicate()`` is truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        ib.sleep(0.02)


def wait_disconnected(ib: IB, timeout: float = 3.0) -> None:
    """Like wait_until(not connected); ib_async's sync API raises ConnectionError on a lost socket."""
    deadline = time.monotonic() + timeout
    while ib.isConnected():
        if time.monotonic() > deadline:
            pytest.fail(f"still connected after {timeout}s")
        try:
            ib.sleep(0.02)
        except ConnectionError:
            pass


def settle(ib: IB, seconds: float = 0.2) -> None:
    """Give in-flight messages time to arrive (used before asserting something did NOT happen)."""
    ib.sleep(seconds)


def codes(errors: ErrorLog) -> list[int]:
    return [code for _req, code, _msg in errors]
