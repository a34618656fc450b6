"""The bridge as an adapter meets it: session, records over rpyc, drops, timeouts, the CLI.

Clients are the real ones: ``mt5linux.MetaTrader5`` (1.0.x: rpyc classic,
results come back as netrefs) and plain ``rpyc.classic.connect``.  The fake runs
in its own process; the test process never has a ``MetaTrader5`` module.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from typing import Any

import pytest
import rpyc
from mt5linux import MetaTrader5

from tests.fake_mt5.conftest import LOGIN
from tests.fake_mt5.harness import REPO_ROOT, FakeMT5, close_client, running


def wait_for(predicate: Any, timeout: float = 10.0) -> Any:
    """Bounded poll (not a speed assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not met within {timeout}s: {predicate}")
        time.sleep(0.05)


def connect_mt5(fake: FakeMT5, timeout: int = 10) -> Any:
    """A new mt5linux client once the bridge accepts connections again."""
    def attempt() -> Any:
        try:
            return MetaTrader5(host=fake.host, port=fake.port, timeout=timeout)
        except ConnectionRefusedError:
            return None
    return wait_for(attempt)


def test_initialize_login_and_account_info(fake_mt5: FakeMT5) -> None:
    mt5 = fake_mt5.mt5linux()
    try:
        assert mt5.account_info() is None
        assert mt5.last_error() == (-10004, "No IPC connection")
        assert mt5.initialize(login=str(LOGIN)) is False
        assert mt5.last_error() == (-2, 'Invalid "login" argument')
        assert mt5.initialize(login=LOGIN + 1) is False
        assert mt5.last_error() == (-6, "Terminal: Authorization failed")
        assert mt5.initialize(login=LOGIN, server="FakeBroker-Demo", timeout=5000) is True
        assert mt5.last_error() == (1, "Success")
        assert mt5.login(LOGIN) is True
        info = mt5.account_info()
        assert (info.login, info.margin_mode, info.currency, info.balance) == (
            LOGIN, mt5.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING, "USD", 100_000.0)
        assert list(info._asdict())[:3] == ["login", "trade_mode", "leverage"]
        assert mt5.version()[0] == 500 and mt5.terminal_info().connected is True
        mt5.shutdown()
        assert mt5.positions_get() is None and mt5.last_error()[0] == -10004
    finally:
        close_client(mt5)


def test_netting_account_reports_netting_margin_mode(netting_mt5: Any) -> None:
    assert netting_mt5.account_info().margin_mode == netting_mt5.ACCOUNT_MARGIN_MODE_RETAIL_NETTING


def test_symbol_info_reports_filling_flags_and_the_module_has_no_symbol_filling_names(
    fake_mt5: FakeMT5, mt5: Any
) -> None:
    flags = {s: mt5.symbol_info(s).filling_mode for s in ("EURUSD", "GBPUSD", "USDJPY", "AAPL")}
    assert flags == {"EURUSD": 3, "GBPUSD": 2, "USDJPY": 1, "AAPL": 0}
    info = mt5.symbol_info("EURUSD")
    assert (info.volume_min, info.volume_step, info.trade_contract_size, info.digits) == (
        0.01, 0.01, 100_000.0, 5)
    assert info.trade_exemode == mt5.SYMBOL_TRADE_EXECUTION_MARKET
    assert mt5.symbol_info("NOSUCH") is None and mt5.last_error()[0] == -1
    conn = fake_mt5.classic()
    try:
        module = conn.modules.MetaTrader5
        assert not hasattr(module, "SYMBOL_FILLING_FOK")
        assert (module.ORDER_FILLING_FOK, module.ORDER_FILLING_IOC, module.ORDER_FILLING_RETURN,
                module.ORDER_FILLING_BOC) == (0, 1, 2, 3)
    finally:
        conn.close()


def test_a_symbol_outside_market_watch_has_no_tick_until_selected(mt5: Any) -> None:
    assert mt5.symbol_info("GBPJPY").visible is False
    assert mt5.symbol_info_tick("GBPJPY") is None
    assert mt5.symbol_select("GBPJPY", True) is True
    assert mt5.symbol_info_tick("GBPJPY").bid == 191.5


def test_positions_get_on_hedging_shows_two_tickets_on_one_symbol(
    fake_mt5: FakeMT5, mt5: Any
) -> None:
    first = fake_mt5.add_position("EURUSD", "buy", 0.10, 1.08400, magic=7, comment="a")
    second = fake_mt5.add_position("EURUSD", "sell", 0.20, 1.08600, magic=8, comment="b")
    fake_mt5.add_position("GBPUSD", "buy", 0.10)

    got = {p.ticket: (p.type, p.volume, p.price_open, p.magic, p.comment, p.identifier)
           for p in mt5.positions_get(symbol="EURUSD")}

    assert got == {first: (0, 0.1, 1.084, 7, "a", first), second: (1, 0.2, 1.086, 8, "b", second)}
    assert mt5.positions_total() == 3
    assert [p.symbol for p in mt5.positions_get(group="*,!GBP*")] == ["EURUSD", "EURUSD"]
    assert mt5.positions_get(ticket=second)[0].price_current == 1.08512  # a sell closes at ask
    assert mt5.positions_get(symbol="AAPL") == ()
    assert mt5.positions_get("EURUSD") is None
    assert mt5.last_error() == (-2, "Unnamed arguments not allowed")


def test_records_arrive_as_netrefs_that_cannot_be_obtained_on_linux(
    fake_mt5: FakeMT5, mt5: Any
) -> None:
    ticket = fake_mt5.add_position("EURUSD", "buy", 0.10)
    positions = mt5.positions_get()
    pos = positions[0]
    # Scalars come by value; the tuple and its records are proxies to the fake's objects.
    assert type(pos.ticket) is int and pos.ticket == ticket
    assert isinstance(positions, tuple) and not isinstance(pos, tuple)
    as_dict = dict(pos._asdict())
    assert as_dict["ticket"] == ticket and type(as_dict) is dict
    assert tuple(pos)[0] == ticket
    with pytest.raises(ModuleNotFoundError, match="MetaTrader5"):
        rpyc.classic.obtain(pos)


def test_dropping_the_bridge_breaks_the_session_and_a_reconnect_works(
    fake_mt5: FakeMT5, mt5: Any
) -> None:
    ticket = fake_mt5.add_position("EURUSD", "buy", 0.10)
    old = mt5.positions_get()[0]
    fake_mt5.drop_bridge(refuse_for=3.0)

    with pytest.raises(EOFError):
        mt5.positions_get()
    with pytest.raises(EOFError):
        _ = old.ticket  # netrefs die with their connection
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((fake_mt5.host, fake_mt5.port), timeout=2).close()

    again = connect_mt5(fake_mt5)
    try:
        # A network drop leaves the bridge process's module initialized.
        assert [p.ticket for p in again.positions_get()] == [ticket]
    finally:
        close_client(again)
    assert fake_mt5.bridge_drops() == 1


def test_a_bridge_restart_needs_initialize_again(fake_mt5: FakeMT5, mt5: Any) -> None:
    fake_mt5.add_position("EURUSD", "buy", 0.10)
    fake_mt5.drop_bridge(reset_session=True)
    with pytest.raises(EOFError):
        mt5.positions_total()
    again = connect_mt5(fake_mt5)
    try:
        assert again.positions_get() is None
        assert again.last_error() == (-10004, "No IPC connection")
        assert again.initialize(login=LOGIN) is True
        assert again.positions_total() == 1
    finally:
        close_client(again)


def test_a_drop_after_the_close_executed_loses_only_the_reply(
    fake_mt5: FakeMT5, mt5: Any
) -> None:
    ticket = fake_mt5.add_position("EURUSD", "buy", 0.10)
    fake_mt5.drop_next_send()
    request = {"action": mt5.TRADE_ACTION_DEAL, "symbol": "EURUSD", "volume": 0.1,
               "type": mt5.ORDER_TYPE_SELL, "position": ticket, "type_filling": 0}

    with pytest.raises(EOFError):
        mt5.order_send(request)

    again = connect_mt5(fake_mt5)
    try:
        # The close happened: an adapter that resends blindly gets 10036, not a new trade.
        assert again.positions_get(ticket=ticket) == ()
        assert again.order_send(request).retcode == 10036
        assert [d.entry for d in again.history_deals_get(position=ticket)] == [0, 1]
    finally:
        close_client(again)


def test_a_stalled_reply_times_out_the_client_but_the_order_executed(
    fake_mt5: FakeMT5,
) -> None:
    ticket = fake_mt5.add_position("EURUSD", "buy", 0.10)
    mt5 = connect_mt5(fake_mt5, timeout=1)  # mt5linux's sync_request_timeout, seconds
    try:
        assert mt5.initialize(login=LOGIN) is True
        fake_mt5.stall_next_send(3.0)
        with pytest.raises(TimeoutError):
            mt5.order_send({"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 1,
                            "position": ticket, "type_filling": 0})
        wait_for(lambda: ticket not in {p["ticket"] for p in fake_mt5.snapshot()["positions"]})
    finally:
        close_client(mt5)


def test_history_by_dates_groups_and_tickets(fake_mt5: FakeMT5, mt5: Any) -> None:
    eur = fake_mt5.add_position("EURUSD", "buy", 0.10)
    fake_mt5.add_position("USDJPY", "sell", 0.10)
    now = datetime.now()
    # mt5linux sends datetimes as repr(...) literals; the fake compares epoch seconds.
    window = (now - timedelta(hours=1), now + timedelta(hours=1))
    assert mt5.history_deals_total(*window) == 2
    assert [d.symbol for d in mt5.history_deals_get(*window, group="*JPY*")] == ["USDJPY"]
    assert mt5.history_deals_get(now + timedelta(hours=1), now + timedelta(hours=2)) == ()
    (order,) = mt5.history_orders_get(ticket=eur)
    assert (order.state, order.position_id) == (mt5.ORDER_STATE_FILLED, eur)
    assert mt5.history_deals_get() is None and mt5.last_error()[0] == -2


def test_plain_rpyc_classic_client_reaches_the_same_module(fake_mt5: FakeMT5) -> None:
    ticket = fake_mt5.add_order("EURUSD", "sell_limit", 0.10, 1.09000, magic=5)
    conn = fake_mt5.classic()
    try:
        conn.execute("import MetaTrader5 as mt5")
        assert conn.eval(f"mt5.initialize(login={LOGIN})") is True
        assert conn.eval("mt5.orders_get()[0].ticket") == ticket
        remote = conn.modules.MetaTrader5
        # A request dict built here travels as a netref, which the C module refuses.
        assert remote.order_send({"action": 8, "order": ticket}) is None
        assert remote.last_error() == (-2, "Invalid arguments")
        assert conn.eval(f"mt5.order_send({{'action': 8, 'order': {ticket}}}).retcode") == 10009
    finally:
        conn.close()


def test_the_standalone_process_serves_what_its_arguments_set_up() -> None:
    with running(login=777, positions=["EURUSD:buy:0.1:1.084", "EURUSD:sell:0.2:1.086"],
                 orders=["USDJPY:buy_limit:0.3:150.0"], prices=["USDJPY=151.0"],
                 extra_args=["--server-time-offset", "7200"]) as fake:
        mt5 = fake.mt5linux()
        try:
            assert mt5.initialize(login=777) is True
            got = sorted((p.type, p.volume, p.price_open) for p in mt5.positions_get())
            assert got == [(0, 0.1, 1.084), (1, 0.2, 1.086)]
            (order,) = mt5.orders_get()
            assert (order.symbol, order.type, order.volume_current, order.price_open) == (
                "USDJPY", mt5.ORDER_TYPE_BUY_LIMIT, 0.3, 150.0)
            tick = mt5.symbol_info_tick("USDJPY")
            assert (tick.bid, tick.ask) == (151.0, 151.015)
            # Trade-server time, two hours ahead of UTC here, is what MT5 reports.
            assert mt5.positions_get()[0].time - time.time() == pytest.approx(7200, abs=120)
        finally:
            close_client(mt5)
        pid = fake.pid
        os.kill(pid, signal.SIGTERM)
        assert fake.proc.wait(10) == 0
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((fake.host, fake.port), timeout=2).close()


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--position", "EURUSD:long:0.1:1.08"], "side must be buy or sell"),
     (["--order", "EURUSD:buy_limit:0.1"], "expected SYMBOL:"),
     (["--order", "EURUSD:buy_limit:0.1:1.2"], "wrong side of EURUSD"),
     (["--price", "EURUSD"], "expected SYMBOL=PRICE")],
)
def test_bad_command_lines_exit_2_saying_what_was_expected(args: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fake_mt5", "--port", "0", "--login", "1", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr and "READY" not in proc.stdout
