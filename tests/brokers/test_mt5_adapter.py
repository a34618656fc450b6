"""The MT5 adapter on its own, through the real mt5linux client against the fake
terminal: the configuration, the return-code table, sessions (account check, a
restarted bridge, passwords), filling modes, lost and stalled replies."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured

from brokers.adapters.base import CANCELLED, FILLED, TOO_LATE, BrokerError, BrokerScope, Unclosable
from brokers.adapters.mt5 import MT5Adapter
from brokers.adapters.mt5.bridge import plain
from brokers.adapters.mt5.retcodes import TERMINAL_ERRORS, TRADE_RETCODES
from brokers.config import MT5Terminal, parse_brokers_config
from tests.fake_mt5.harness import FakeMT5

LOGIN = 5012345
ACCOUNT = str(LOGIN)


@pytest.fixture(scope="module")
def fake_process() -> Iterator[FakeMT5]:
    fake = FakeMT5.start(login=LOGIN)
    yield fake
    fake.stop()


@pytest.fixture
def fake(fake_process: FakeMT5) -> FakeMT5:
    fake_process.reset(netting=False)
    return fake_process


def terminal_for(fake: FakeMT5, **options) -> MT5Terminal:
    fields = {"name": "fake", "host": fake.host, "port": fake.port, "accounts": (ACCOUNT,), "timeout_seconds": 2.0}
    return MT5Terminal(**{**fields, **options})


@pytest.fixture
def adapter(fake: FakeMT5) -> Iterator[MT5Adapter]:
    adapter = MT5Adapter(terminal_for(fake), ACCOUNT)
    yield adapter
    adapter.close()


# --- configuration and the code table -------------------------------------------------------


@pytest.mark.parametrize(("terminal", "message"), [
    ({"accounts": ["5012345"]}, "accounts=['5012345'] is invalid; expected a non-empty list of MT5 logins"),
    ({"accounts": []}, "a non-empty list of MT5 logins"),
    ({"accounts": [1], "port": 0}, "port=0 is invalid; expected a whole number between 1 and 65535"),
    ({"accounts": [1], "strategy": "ea"}, "strategy='ea' is invalid; expected one of magic, comment"),
    ({"accounts": [1], "transport": "wine"}, "expected one of auto, module, bridge"),
    ({"accounts": [1], "timeout_seconds": 300}, "timeout_seconds=300 is invalid"),
    ({"accounts": [1], "strategy_magics": {"a": 5, "b": 5}}, "one strategy name per magic number"),
    ({"accounts": [1], "magics": {}}, "brokers.mt5.terminals[0].magics={} is invalid; expected one of the known keys"),
])
def test_a_bad_terminal_names_the_key_the_value_and_what_is_expected(terminal, message):
    with pytest.raises(ImproperlyConfigured, match="brokers.mt5.terminals") as info:
        parse_brokers_config({"mt5": {"terminals": [terminal]}})
    assert message in str(info.value)


def test_a_password_written_where_its_variable_belongs_is_refused_without_echoing_it():
    with pytest.raises(ImproperlyConfigured) as info:
        parse_brokers_config({"mt5": {"terminals": [{"accounts": [1], "password_env": "Secret pass!"}]}})
    assert "password_env" in str(info.value) and "Secret pass!" not in str(info.value)


def test_an_mt5_login_already_configured_elsewhere_is_refused():
    with pytest.raises(ImproperlyConfigured, match=r"accounts='5012345' is invalid; expected an account not already"):
        parse_brokers_config({"paper": {"accounts": ["5012345"]}, "mt5": {"terminals": [{"accounts": [5012345]}]}})


def test_every_trade_return_code_of_the_metatrader5_package_is_in_the_table_by_its_name():
    from mt5linux.constants import Constants

    package = {v: k for k, v in vars(Constants).items() if k.startswith("TRADE_RETCODE_")}
    assert package and set(package) <= set(TRADE_RETCODES)
    assert {code: TRADE_RETCODES[code].name for code in package} == package
    errors = {v: k for k, v in vars(Constants).items() if k.startswith("RES_")}
    assert {code: TERMINAL_ERRORS[code].name for code in errors} == errors


def test_only_plain_values_go_over_the_bridge():
    assert plain({"volume": 0.1, "comment": "ks-close-1-1"}) == {"volume": 0.1, "comment": "ks-close-1-1"}
    with pytest.raises(TypeError, match="Decimal"):
        plain({"volume": Decimal("0.1")}, "order_send")


# --- sessions -------------------------------------------------------------------------------


def test_a_terminal_logged_into_another_account_is_refused_before_anything_is_sent(fake):
    fake.add_position("EURUSD", "buy", 0.10)
    other = MT5Adapter(terminal_for(fake, accounts=(ACCOUNT, "777")), "777")
    try:
        with pytest.raises(BrokerError, match="logged into account 5012345, not 777") as info:
            other.positions(BrokerScope("777"))
        assert info.value.retryable is False
    finally:
        other.close()
    assert not [c for c in fake.calls() if c[0] == "order_send"]


def test_a_restarted_bridge_is_initialized_again_and_read(fake, adapter):
    ticket = fake.add_position("EURUSD", "buy", 0.10)
    assert [p.ticket for p in adapter.positions(BrokerScope(ACCOUNT))] == [str(ticket)]
    fake.drop_bridge(reset_session=True)
    with pytest.raises(BrokerError, match="connection lost") as info:
        adapter.positions(BrokerScope(ACCOUNT))  # the old link died with the bridge: unknown, not flat
    assert info.value.retryable
    assert [p.ticket for p in adapter.positions(BrokerScope(ACCOUNT))] == [str(ticket)]
    assert sum(1 for c in fake.calls() if c[0] == "initialize") >= 2


def test_the_password_comes_from_the_named_environment_variable(monkeypatch):
    with FakeMT5.start(login=LOGIN, extra_args=["--password", "s3cret"]) as fake:
        terminal = terminal_for(fake, password_env="MT5_TEST_PASSWORD", server="FakeBroker-Demo")
        monkeypatch.delenv("MT5_TEST_PASSWORD", raising=False)
        with pytest.raises(BrokerError, match="needs the environment variable MT5_TEST_PASSWORD"):
            MT5Adapter(terminal, ACCOUNT).positions(BrokerScope(ACCOUNT))
        monkeypatch.setenv("MT5_TEST_PASSWORD", "wrong")
        with pytest.raises(BrokerError, match="RES_E_AUTH_FAILED"):
            MT5Adapter(terminal, ACCOUNT).positions(BrokerScope(ACCOUNT))
        monkeypatch.setenv("MT5_TEST_PASSWORD", "s3cret")
        adapter = MT5Adapter(terminal, ACCOUNT)
        try:
            assert adapter.positions(BrokerScope(ACCOUNT)) == [] and adapter.account_mode() == "demo"
        finally:
            adapter.close()


# --- reads, closes, cancels -------------------------------------------------------------------


def test_hedging_tickets_are_listed_oldest_first_and_strategies_come_from_magic_numbers(fake):
    first = fake.add_position("EURUSD", "buy", 0.10, magic=4242)
    second = fake.add_position("EURUSD", "sell", 0.20, magic=7)
    fake.add_order("EURUSD", "buy_limit", 0.10, 1.07, magic=4242)
    fake.add_order("EURUSD", "buy_limit", 0.10, 1.07, magic=7, comment="grid")
    named = MT5Adapter(terminal_for(fake, strategy_magics=(("momentum", 4242),)), ACCOUNT)
    by_comment = MT5Adapter(terminal_for(fake, strategy="comment"), ACCOUNT)
    try:
        held = named.positions(BrokerScope(ACCOUNT))
        assert [(p.ticket, p.quantity, p.key) for p in held] == [
            (str(first), Decimal("0.1"), f"forex:EURUSD#{first}"), (str(second), Decimal("-0.2"), f"forex:EURUSD#{second}")]
        assert [o.strategy for o in named.working_orders(BrokerScope(ACCOUNT))] == ["momentum", "7"]
        assert [o.strategy for o in by_comment.working_orders(BrokerScope(ACCOUNT, strategy="grid"))] == ["grid"]
    finally:
        named.close()
        by_comment.close()


def test_closing_more_than_the_ticket_holds_sends_only_what_it_holds(fake, adapter):
    fake.add_position("EURUSD", "buy", 0.10)
    [position] = adapter.positions(BrokerScope(ACCOUNT))
    state = adapter.close_position(position, quantity=Decimal("0.3"), client_ref="ks-close-9-1")
    assert (state.status, state.filled) == (FILLED, Decimal("0.1")) and "10038" in state.detail
    assert fake.snapshot()["positions"] == []


def test_a_symbol_that_allows_only_fok_is_closed_fok_and_the_mask_is_never_sent(fake, adapter):
    fake.set_symbol("EURUSD", filling_mode=1)  # SYMBOL_FILLING_FOK only
    fake.add_position("EURUSD", "buy", 0.10)
    [position] = adapter.positions(BrokerScope(ACCOUNT))
    state = adapter.close_position(position, quantity=Decimal("0.1"), client_ref="ks-close-9-2")
    assert state.status == FILLED and "filling FOK" in state.detail
    sent = [c[1] for c in fake.calls() if c[0] == "order_send"]
    assert len(sent) == 1 and "'type_filling': 0" in sent[0]


def test_a_stalled_reply_times_out_and_is_settled_from_the_history(fake):
    fake.add_position("EURUSD", "buy", 0.10)
    adapter = MT5Adapter(terminal_for(fake, timeout_seconds=1.0), ACCOUNT)
    try:
        [position] = adapter.positions(BrokerScope(ACCOUNT))
        fake.stall_next_send(2.0)  # the deal executes; its answer comes after the client's timeout
        state = adapter.close_position(position, quantity=Decimal("0.1"), client_ref="ks-close-9-3")
        assert (state.status, state.filled) == (FILLED, Decimal("0.1")) and "answer lost" in state.detail
    finally:
        adapter.close()
    assert len([d for d in fake.snapshot()["deals"] if d["comment"] == "ks-close-9-3"]) == 1


def test_a_reply_lost_while_the_bridge_refuses_is_unknown_until_found_by_its_reference(fake, adapter):
    fake.add_position("EURUSD", "buy", 0.10)
    [position] = adapter.positions(BrokerScope(ACCOUNT))
    fake.drop_next_send(refuse_for=1.5)
    with pytest.raises(BrokerError, match="outcome is unknown") as info:
        adapter.close_position(position, quantity=Decimal("0.1"), client_ref="ks-close-9-4")
    assert info.value.retryable

    def found():
        try:
            return adapter.find_order(account=ACCOUNT, client_ref="ks-close-9-4")
        except BrokerError:
            return None

    from tests.conftest import wait_for

    state = wait_for(found, timeout=10)
    assert (state.status, state.filled) == (FILLED, Decimal("0.1"))
    assert adapter.find_order(account=ACCOUNT, client_ref="ks-close-never") is None


def test_a_disabled_symbol_is_unclosable_before_anything_is_sent(fake, adapter):
    fake.add_position("BTCUSD", "buy", 0.10)
    [position] = adapter.positions(BrokerScope(ACCOUNT))
    with pytest.raises(Unclosable, match="SYMBOL_TRADE_MODE_DISABLED"):
        adapter.close_position(position, quantity=Decimal("0.1"), client_ref="ks-close-9-5")
    assert not [c for c in fake.calls() if c[0] == "order_send"]


def test_orders_no_longer_working_are_settled_from_the_order_history(fake, adapter):
    removed = fake.add_order("EURUSD", "buy_limit", 0.10, 1.07)
    filled = fake.add_order("EURUSD", "buy_limit", 0.10, 1.08)
    orders = {o.order_id: o for o in adapter.working_orders(BrokerScope(ACCOUNT))}
    assert adapter.cancel_order(orders[str(removed)]).outcome == CANCELLED
    fake.set_price("EURUSD", 1.0790, 1.0792)  # reaches the buy limit at 1.08: it fills
    [too_late] = adapter.settle([orders[str(filled)]])
    assert (too_late.outcome, too_late.filled) == (TOO_LATE, Decimal("0.1"))
    executions = adapter.executions(account=ACCOUNT, since=datetime.now(UTC))
    assert [(e.side, e.quantity, e.order_id) for e in executions] == [("BUY", Decimal("0.1"), str(filled))]
