"""Each kind's figure from one round's facts: the numbers, the words a trip's reason
carries, and `unknown` (with why) wherever the facts do not allow a figure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from killswitch.breakers import kinds
from killswitch.breakers.config import parse_breakers
from killswitch.breakers.feeds import AccountFacts, InstrumentPnL, OrderFact, PnL, PositionFact

NOW = datetime(2026, 3, 12, 15, 0, tzinfo=UTC)
DAY = datetime(2026, 3, 12, tzinfo=UTC)


def breaker(kind: str, scope: str = "account:A1", **keys):
    return parse_breakers([{"name": "b", "kind": kind, "scope": scope, "level": "halt", **keys}])[0]


def world(**facts) -> kinds.World:
    return kinds.World(now=NOW, facts=dict(facts), accounts=tuple(facts))


def pnl_facts(account: str, total: float, currency: str = "USD", **more) -> AccountFacts:
    return AccountFacts(account, "paper", currency=currency, pnl={DAY: PnL(total, **more)})


def test_max_loss_reads_the_scopes_pnl_since_the_day_start_and_names_it():
    reading = kinds.read(breaker("max_loss", limit=1000), world(A1=pnl_facts("A1", -1250.5)), {})
    assert reading.value == pytest.approx(1250.5) and reading.display == pytest.approx(-1250.5)
    assert reading.text == "P&L -1,250.50 USD since 00:00 UTC (2026-03-12)"
    assert reading.limit_text == "-1,000.00 USD"


def test_global_loss_adds_accounts_only_in_one_currency():
    two = world(A1=pnl_facts("A1", -600), A2=pnl_facts("A2", -700))
    assert kinds.read(breaker("max_loss", "global", limit=1000), two, {}).value == pytest.approx(1300)
    mixed = world(A1=pnl_facts("A1", -600), A2=pnl_facts("A2", -700, currency="EUR"))
    reading = kinds.read(breaker("max_loss", "global", limit=1000), mixed, {})
    assert reading.value is None and "EUR, USD cannot be added without FX rates" in reading.unknown


def test_symbol_and_strategy_pnl_come_from_the_brokers_breakdown_or_are_unknown():
    facts = pnl_facts("A1", -900, instruments=(InstrumentPnL("ES", "ESZ6", -800), InstrumentPnL("AAPL", "", -100)),
                      strategies={"momo": -300})
    assert kinds.read(breaker("max_loss", "symbol:ES", limit=10), world(A1=facts), {}).value == 800
    assert kinds.read(breaker("max_loss", "symbol:ESZ6", limit=10), world(A1=facts), {}).value == 800
    assert kinds.read(breaker("max_loss", "strategy:momo", limit=10), world(A1=facts), {}).value == 300
    ib = pnl_facts("A1", -900, strategies=None)
    ib.broker = "ib"
    reading = kinds.read(breaker("max_loss", "strategy:momo", limit=10), world(A1=ib), {})
    assert reading.unknown == "A1 (ib) does not attribute P&L to strategies"


def test_a_missing_fact_is_unknown_with_the_brokers_reason():
    down = AccountFacts("A1", "paper", connected=False, why={"connection": "paper account A1 is offline"})
    reading = kinds.read(breaker("max_loss", limit=10), world(A1=down), {})
    assert reading.value is None and reading.unknown == "A1 (paper): paper account A1 is offline"
    reading = kinds.read(breaker("max_loss", "account:ZZ", limit=10), world(A1=pnl_facts("A1", 0)), {})
    assert reading.unknown == "no broker feed serves account ZZ"


def test_drawdown_counts_from_the_days_peak_which_starts_at_zero():
    b = breaker("max_drawdown", limit=500)
    first = kinds.read(b, world(A1=pnl_facts("A1", 1000)), {})
    assert first.value == 0 and first.memory["peak"] == 1000
    later = kinds.read(b, world(A1=pnl_facts("A1", 300)), first.memory)
    assert later.value == 700 and "from the day's peak P&L 1,000.00 USD (P&L 300.00 USD)" in later.text
    # A new trading day forgets yesterday's peak.
    yesterday = {**first.memory, "day": (DAY - timedelta(days=1)).isoformat()}
    assert kinds.read(b, world(A1=pnl_facts("A1", 300)), yesterday).value == 0
    fraction = kinds.read(breaker("max_drawdown", fraction=0.3), world(A1=pnl_facts("A1", 600)), {"day": DAY.isoformat(),
                                                                                                   "peak": 1000})
    assert fraction.value == pytest.approx(0.4) and fraction.text.startswith("drawdown 40.0% from")


def test_order_and_reject_rates_count_the_window_in_scope():
    t = NOW.timestamp()
    orders = [OrderFact("1", "AAPL", t - 0.5, "momo"), OrderFact("2", "AAPL", t - 0.2, "other"),
              OrderFact("3", "MSFT", t - 5, "momo"), OrderFact("4", "AAPL", t - 0.1, "momo", rejected_at=t - 0.1)]
    facts = AccountFacts("A1", "paper", orders=orders)
    rate = kinds.read(breaker("order_rate", "global", max_orders=2, window_seconds=1), world(A1=facts), {})
    assert (rate.value, rate.text) == (3, "3 orders in the last 1 s")
    assert kinds.read(breaker("order_rate", "strategy:momo", max_orders=2, window_seconds=1), world(A1=facts),
                      {}).value == 2
    assert kinds.read(breaker("order_rate", "symbol:MSFT", max_orders=2, window_seconds=10), world(A1=facts),
                      {}).value == 1
    rejects = kinds.read(breaker("reject_rate", "global", max_rejects=0, window_seconds=1), world(A1=facts), {})
    assert (rejects.value, rejects.text) == (1, "1 rejects in the last 1 s")


def test_positions_per_symbol_and_gross_per_account_and_notional_needs_a_price():
    positions = [PositionFact("AAPL", 100, 190.0), PositionFact("MSFT", -300, 400.0), PositionFact("ES", 2, 5000.0,
                                                                                                   multiplier=50)]
    facts = AccountFacts("A1", "paper", positions=positions)
    largest = kinds.read(breaker("max_position", limit=250), world(A1=facts), {})
    assert (largest.value, largest.text) == (300, "MSFT position -300")
    gross = kinds.read(breaker("max_notional", limit=1e6), world(A1=facts), {})
    assert gross.value == pytest.approx(100 * 190 + 300 * 400 + 2 * 5000 * 50)
    only = kinds.read(breaker("max_notional", per="symbol", symbols=["ES"], limit=1e6), world(A1=facts), {})
    assert only.value == 500_000 and only.text == "ES notional 500,000.00 USD"
    facts.positions.append(PositionFact("TSLA", 5, None))
    assert kinds.read(breaker("max_notional", limit=1e6), world(A1=facts), {}).unknown == "A1: no price for TSLA"
    assert "not per strategy" in kinds.read(breaker("max_position", "strategy:momo", limit=1), world(A1=facts),
                                            {}).unknown


def test_disconnect_counts_seconds_without_the_brokers_connection():
    up, down = AccountFacts("A1", "paper"), AccountFacts("A2", "ib", connected=False, why={"connection": "refused"})
    w = world(A1=up, A2=down)
    w.down_since = {"A2": NOW - timedelta(seconds=12.5)}
    reading = kinds.read(breaker("broker_disconnect", "global", grace_seconds=10), w, {})
    assert (reading.value, reading.text) == (12.5, "A2 (ib) disconnected for 12.5 s: refused")
    assert kinds.read(breaker("broker_disconnect", grace_seconds=10), w, {}).value == 0


def test_stale_data_is_the_oldest_symbol_of_a_connected_process_in_scope():
    t = NOW.timestamp()
    w = world()
    w.processes = [kinds.ProcessInputs("c1", "momo-1", "A1", "momo", {"AAPL": t - 1, "MSFT": t - 7}),
                   kinds.ProcessInputs("c2", "arb-1", "A2", "arb", {"AAPL": t - 30})]
    reading = kinds.read(breaker("stale_data", max_age_seconds=5), w, {})
    assert (reading.value, reading.text) == (7, "MSFT market data 7.0 s old (at momo-1)")
    assert kinds.read(breaker("stale_data", "symbol:AAPL", max_age_seconds=5), w, {}).value == 30
    none = kinds.read(breaker("stale_data", "strategy:nothing", max_age_seconds=5), w, {})
    assert none.unknown == "no connected trading process in strategy:nothing reports market data"


def test_a_dead_mans_switch_is_idle_until_a_heartbeat_newer_than_its_last_trip():
    b = breaker("dead_man", "strategy:momo", timeout_seconds=30)
    w = world()
    w.renewals = {}
    assert kinds.read(b, w, {}).idle == "not armed: waiting for its first heartbeat"
    w.renewals = {"b": kinds.Renewal(NOW.timestamp() - 31, "momo-1 (c1)")}
    reading = kinds.read(b, w, {})
    assert (reading.value, reading.text) == (31, "no heartbeat for 31.0 s (last from momo-1 (c1))")
    assert kinds.read(b, w, {"last_trip_at": NOW.timestamp() - 10}).idle.startswith("not armed since it tripped")
    w.renewals = None
    w.renewals_why = "Redis cannot be read"
    assert kinds.read(b, w, {}).unknown == "Redis cannot be read"
