"""HALT and KILL at MetaTrader 5: the real mt5linux client, inside a real Celery worker,
against our fake terminal behind its rpyc bridge."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from brokers.models import BrokerAction, BrokerRun
from killswitch import services as ks
from killswitch.models import Event
from tests.conftest import wait_for

from ..conftest import wait_runs_finished
from .mt5_stack import (
    ACCOUNT,
    ARB,
    MAGIC,
    MOMENTUM,
    activate,
    closing_deals,
    orders,
    positions,
    sends,
)

pytestmark = pytest.mark.django_db(transaction=True)

DEAL, REMOVE = 1, 8
FOK, IOC, RETURN = 0, 1, 2


def test_halt_removes_every_pending_order_of_the_account_and_keeps_positions(terminal):
    held = terminal.add_position("EURUSD", "buy", 0.10)
    ids = [terminal.add_order("EURUSD", "buy_limit", 0.10, 1.07, magic=MOMENTUM),
           terminal.add_order("USDJPY", "sell_stop", 0.20, 150.0, magic=ARB),
           terminal.add_order("GBPUSD", "sell_limit", 0.30, 1.30)]
    activate(f"account:{ACCOUNT}", "halt")
    [run] = wait_runs_finished()
    assert (run.broker, run.state) == ("mt5", "completed")
    assert orders(terminal) == {}
    assert set(positions(terminal)) == {held}  # halt never closes
    cancels = {a.broker_order_id: a.outcome for a in run.actions.filter(action="cancel")}
    assert cancels == {str(i): "cancelled" for i in ids}
    assert sends(terminal, REMOVE) == 3


def test_a_strategy_halt_removes_only_the_orders_of_that_magic_number(terminal):
    mine = terminal.add_order("EURUSD", "buy_limit", 0.10, 1.07, magic=MOMENTUM)
    keep = terminal.add_order("EURUSD", "buy_limit", 0.10, 1.07, magic=ARB)
    manual = terminal.add_order("GBPUSD", "buy_limit", 0.10, 1.20)
    activate("strategy:momentum", "halt")
    [run] = wait_runs_finished()
    assert run.state == "completed"
    assert set(orders(terminal)) == {keep, manual}
    [action] = run.actions.filter(action="cancel")
    assert (action.broker_order_id, action.strategy, action.outcome) == (str(mine), "momentum", "cancelled")


def test_kill_on_a_hedging_account_closes_each_ticket_and_the_run_lists_every_one(terminal):
    long_eur = terminal.add_position("EURUSD", "buy", 0.10, 1.084, magic=MOMENTUM)
    short_eur = terminal.add_position("EURUSD", "sell", 0.20, 1.086, magic=ARB)
    fok_only = terminal.add_position("USDJPY", "sell", 0.30, 151.5)   # instant execution: FOK only
    ioc_only = terminal.add_position("GBPUSD", "buy", 0.40, 1.26)     # IOC only
    exchange = terminal.add_position("AAPL", "buy", 10, 180.0)        # exchange execution: RETURN only
    terminal.add_order("EURUSD", "buy_limit", 0.10, 1.07, magic=MOMENTUM)
    activate(f"account:{ACCOUNT}", "kill")
    [run] = wait_runs_finished()
    assert run.state == "completed"
    assert positions(terminal) == {} and orders(terminal) == {}
    closes = {a.position_key: a for a in run.actions.filter(action="close")}
    assert {key: (a.side, a.quantity, a.outcome) for key, a in closes.items()} == {
        f"forex:EURUSD#{long_eur}": ("SELL", Decimal("0.1"), "filled"),
        f"forex:EURUSD#{short_eur}": ("BUY", Decimal("0.2"), "filled"),
        f"forex:USDJPY#{fok_only}": ("BUY", Decimal("0.3"), "filled"),
        f"forex:GBPUSD#{ioc_only}": ("SELL", Decimal("0.4"), "filled"),
        f"stock:AAPL#{exchange}": ("SELL", Decimal("10"), "filled"),
    }
    # One closing deal per ticket, on that ticket, with the run's reference and magic.
    deals = {d["position_id"]: d for d in closing_deals(terminal)}
    assert set(deals) == {long_eur, short_eur, fok_only, ioc_only, exchange}
    assert {d["comment"] for d in deals.values()} == {a.client_ref for a in closes.values()}
    assert {d["magic"] for d in deals.values()} == {MAGIC}
    fillings = {o["position_id"]: o["type_filling"] for o in terminal.snapshot()["history_orders"]
                if o["comment"].startswith("ks-close-")}
    assert fillings == {long_eur: IOC, short_eur: IOC, fok_only: FOK, ioc_only: IOC, exchange: RETURN}


def test_kill_on_a_netting_account_closes_the_one_position_per_symbol(terminal):
    terminal.reset(netting=True)
    eur = terminal.add_position("EURUSD", "buy", 0.30)
    jpy = terminal.add_position("USDJPY", "sell", 0.10)
    activate(f"account:{ACCOUNT}", "kill")
    [run] = wait_runs_finished()
    assert run.state == "completed"
    assert positions(terminal) == {}
    assert sorted((a.position_key, a.quantity, a.outcome) for a in run.actions.filter(action="close")) == [
        (f"forex:EURUSD#{eur}", Decimal("0.3"), "filled"), (f"forex:USDJPY#{jpy}", Decimal("0.1"), "filled")]
    # Closing deals by ticket only reduce: nothing was reversed into a new position.
    assert [(d["position_id"], d["entry"]) for d in closing_deals(terminal)] == [(eur, 1), (jpy, 1)]


def test_a_symbol_scope_kill_closes_only_that_symbol(terminal):
    eur = terminal.add_position("EURUSD", "buy", 0.10)
    jpy = terminal.add_position("USDJPY", "buy", 0.10)
    activate("symbol:USDJPY", "kill")
    [run] = wait_runs_finished()
    assert run.state == "completed"
    assert set(positions(terminal)) == {eur}
    assert [d["position_id"] for d in closing_deals(terminal)] == [jpy]


def test_a_requote_storm_is_resent_with_fresh_prices_and_closes_once(terminal):
    ticket = terminal.add_position("USDJPY", "sell", 0.30)
    terminal.requote_next(4)  # within the terminal's requote_retries (5)
    activate(f"account:{ACCOUNT}", "kill")
    [run] = wait_runs_finished()
    assert run.state == "completed" and run.attempts == 1
    [close] = run.actions.filter(action="close")
    assert close.outcome == "filled" and close.detail.count("TRADE_RETCODE_REQUOTE") == 4
    assert sends(terminal, DEAL) == 5
    assert [d["position_id"] for d in closing_deals(terminal)] == [ticket]


def test_a_requote_storm_longer_than_the_resends_is_sent_again_each_round_and_closes_once(terminal):
    ticket = terminal.add_position("EURUSD", "buy", 0.50)
    terminal.requote_next(14)  # two attempts' worth of resends (6 each), then a fill
    activate(f"account:{ACCOUNT}", "kill")
    [run] = wait_runs_finished()
    assert run.state == "completed"
    assert positions(terminal) == {}
    assert [(d["position_id"], d["volume"]) for d in closing_deals(terminal)] == [(ticket, 0.5)]
    closes = list(BrokerAction.objects.filter(action="close").order_by("id"))
    # Each deal that never executed is on record, with the code and the resends.
    assert [a.outcome for a in closes] == ["cancelled", "cancelled", "filled"]
    assert all("10004 TRADE_RETCODE_REQUOTE" in a.detail and "after 5 resend(s)" in a.detail for a in closes[:2])
    assert sends(terminal, DEAL) == 15


def test_a_partial_fill_is_completed_by_a_second_deal_for_the_rest(terminal):
    ticket = terminal.add_position("EURUSD", "buy", 1.00)
    terminal.set_partial_fill("EURUSD", 0.4)
    activate(f"account:{ACCOUNT}", "kill")
    wait_for(lambda: closing_deals(terminal), timeout=30)
    terminal.set_partial_fill("EURUSD", None)
    [run] = wait_runs_finished()
    assert run.state == "completed" and positions(terminal) == {}
    deals = [d["volume"] for d in closing_deals(terminal) if d["position_id"] == ticket]
    assert sum(deals) == pytest.approx(1.0) and deals[0] == pytest.approx(0.4)
    first = BrokerAction.objects.filter(action="close").order_by("id").first()
    assert (first.outcome, first.filled_quantity) == ("cancelled", Decimal("0.4"))  # IOC: the rest cancelled


def test_a_lost_reply_is_settled_from_the_history_and_the_ticket_is_closed_once(terminal):
    ticket = terminal.add_position("EURUSD", "buy", 0.10)
    terminal.drop_next_send(refuse_for=1.0)  # the deal executes; the bridge drops before the answer
    activate(f"account:{ACCOUNT}", "kill")
    [run] = wait_runs_finished()
    assert run.state == "completed" and run.attempts >= 2
    assert positions(terminal) == {}
    assert [d["position_id"] for d in closing_deals(terminal)] == [ticket]
    assert sends(terminal, DEAL) == 1  # never resent: no 10036 from a second close
    [close] = run.actions.filter(action="close")
    assert (close.outcome, close.filled_quantity) == ("filled", Decimal("0.1"))
    assert terminal.bridge_drops() >= 1


def test_a_bridge_that_stays_down_is_unknown_never_flat_and_the_run_fails_with_an_alert(terminal):
    ticket = terminal.add_position("EURUSD", "buy", 0.10)
    terminal.drop_bridge(refuse_for=60)
    try:
        activate(f"account:{ACCOUNT}", "kill")
        [run] = wait_runs_finished(timeout=60)
    finally:
        terminal.drop_bridge(refuse_for=0)  # listening again for the next test
    assert run.state == "failed" and "mt5linux bridge" in run.error
    assert run.alert_event_seq and Event.objects.get(seq=run.alert_event_seq).action == "alert"
    assert set(positions(terminal)) == {ticket}


def test_the_bridge_dropping_mid_halt_resumes_and_every_order_is_removed_once(terminal):
    ids = [terminal.add_order("EURUSD", "buy_limit", 0.01, 1.07) for _ in range(40)]
    activate(f"account:{ACCOUNT}", "halt")
    dropped = threading.Event()

    def drop_after_some_removals() -> bool:
        if sends(terminal, REMOVE) >= 8:
            terminal.drop_bridge(refuse_for=1.0)
            dropped.set()
            return True
        return False

    wait_for(drop_after_some_removals, timeout=30)
    [run] = wait_runs_finished(timeout=60)
    assert dropped.is_set()
    assert run.state == "completed" and run.attempts >= 2  # the attempt that saw the drop did not say done
    assert orders(terminal) == {}
    actions = list(run.actions.filter(action="cancel"))
    assert sorted(int(a.broker_order_id) for a in actions) == sorted(ids)
    assert {a.outcome for a in actions} == {"cancelled"}


def test_autotrading_switched_off_fails_the_kill_at_once_naming_the_code(terminal):
    ticket = terminal.add_position("EURUSD", "buy", 0.10)
    terminal.set_autotrading(False)
    activate(f"account:{ACCOUNT}", "kill")
    [run] = wait_runs_finished()
    assert run.state == "failed" and run.attempts == 1 and run.alert_event_seq
    assert "10027 TRADE_RETCODE_CLIENT_DISABLES_AT" in run.error
    assert "10027 TRADE_RETCODE_CLIENT_DISABLES_AT" in Event.objects.get(seq=run.alert_event_seq).detail
    [close] = run.actions.filter(action="close")
    assert close.outcome == "error" and close.detail.startswith("not found at the broker")  # never executed
    assert set(positions(terminal)) == {ticket}


def test_a_disabled_symbol_is_unclosable_and_nothing_is_sent_for_it(terminal):
    terminal.add_position("EURUSD", "buy", 0.10)
    btc = terminal.add_position("BTCUSD", "buy", 0.10)  # trade mode disabled: add_position bypasses it
    activate(f"account:{ACCOUNT}", "kill")
    [run] = wait_runs_finished()
    assert run.state == "failed"
    stuck = BrokerAction.objects.get(position_key=f"cfd:BTCUSD#{btc}")
    assert stuck.outcome == "unclosable" and "SYMBOL_TRADE_MODE_DISABLED" in stuck.detail
    assert set(positions(terminal)) == {btc}
    assert [d["symbol"] for d in closing_deals(terminal)] == ["EURUSD"]


def test_the_market_closed_blocks_removal_and_the_halt_fails_with_the_order_still_working(terminal):
    order = terminal.add_order("EURUSD", "buy_limit", 0.10, 1.07)
    terminal.set_market_closed("EURUSD")
    activate(f"account:{ACCOUNT}", "halt")
    [run] = wait_runs_finished(timeout=60)
    assert run.state == "failed" and "working order" in run.error
    [cancel] = run.actions.filter(action="cancel")
    assert cancel.outcome == "rejected" and "10018 TRADE_RETCODE_MARKET_CLOSED" in cancel.detail
    assert set(orders(terminal)) == {order}


def test_while_halted_the_sweep_removes_an_order_an_ea_places_anyway(terminal, mt5_stack, start_sweep):
    activate(f"account:{ACCOUNT}", "halt")
    [run] = wait_runs_finished()
    assert run.state == "completed"
    loop = start_sweep(mt5_stack._policy, paper_only=False)
    rogue = terminal.add_order("GBPUSD", "buy_limit", 0.10, 1.20, magic=MOMENTUM)
    wait_for(lambda: rogue not in orders(terminal), timeout=30)
    loop.stop()
    sweep = BrokerRun.objects.get(kind="sweep")
    assert (sweep.broker, sweep.state) == ("mt5", "completed"), loop.log()
    [action] = sweep.actions.all()
    assert (action.broker_order_id, action.strategy, action.outcome) == (str(rogue), "momentum", "cancelled")


def test_with_the_worker_stopped_the_sweep_removes_the_orders_and_a_lifted_kill_is_superseded(
        terminal, mt5_stack, start_sweep, set_policy):
    set_policy(cooldown_minutes=0)
    ids = [terminal.add_order("EURUSD", "sell_limit", 0.10, 1.10) for _ in range(3)]
    ticket = terminal.add_position("EURUSD", "buy", 0.10)
    mt5_stack.worker.pause()
    try:
        loop = start_sweep(mt5_stack._policy, paper_only=False)
        activate(f"account:{ACCOUNT}", "kill")
        wait_for(lambda: not set(ids) & set(orders(terminal)), timeout=30)
        loop.stop()
        ks.deactivate(scope=f"account:{ACCOUNT}", actor="cli:tester", source="cli", reason="false alarm")
    finally:
        mt5_stack.worker.resume()
    runs = {r.kind: r for r in wait_runs_finished(timeout=60)}
    assert runs["sweep"].state == "completed" and runs["sweep"].actions.count() == len(ids)
    assert runs["switch"].state == "superseded"
    assert set(positions(terminal)) == {ticket} and closing_deals(terminal) == []  # the sweep never closes


def test_a_worker_killed_while_its_closing_deal_is_in_flight_never_closes_twice(terminal, mt5_stack, start_sweep):
    tickets = [terminal.add_position("EURUSD", "buy", 0.10), terminal.add_position("USDJPY", "sell", 0.20)]
    terminal.stall_next_send(3.0)  # the first closing deal executes; its answer is held back
    activate(f"account:{ACCOUNT}", "kill")
    wait_for(lambda: closing_deals(terminal), timeout=30)
    mt5_stack.worker.kill()  # dies before the answer: its action row says "sending"
    mt5_stack.ensure_worker()
    loop = start_sweep(mt5_stack._policy, paper_only=False)  # re-enqueues the run once its lease ends
    [run] = wait_runs_finished(timeout=90)
    loop.stop()
    assert run.state == "completed" and run.attempts >= 2
    assert positions(terminal) == {}
    assert sorted(d["position_id"] for d in closing_deals(terminal)) == sorted(tickets)  # one deal per ticket
    assert sends(terminal, DEAL) == 2
    assert {a.outcome for a in run.actions.filter(action="close")} == {"filled"}
