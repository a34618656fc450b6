"""order_send through the real mt5linux client: fills, closes, retcodes, faults.

Every request goes over the rpyc bridge as mt5linux sends it (a dict literal
evaluated in the fake's process); every outcome is checked twice, in what the
client got back and in the terminal's own state (the control snapshot).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.fake_mt5.harness import FakeMT5

FOK, IOC, RETURN = 0, 1, 2


def market(mt5: Any, symbol: str, side: int, volume: float, *, filling: int = FOK,
           position: int = 0, price: float = 0.0, deviation: int = 20, magic: int = 4242,
           comment: str = "ks") -> Any:
    request = {"action": mt5.TRADE_ACTION_DEAL, "symbol": symbol, "volume": volume,
               "type": side, "type_filling": filling, "type_time": mt5.ORDER_TIME_GTC,
               "deviation": deviation, "magic": magic, "comment": comment}
    if position:
        request["position"] = position
    if price:
        request["price"] = price
    return mt5.order_send(request)


def close(mt5: Any, position: Any, *, filling: int = FOK, volume: float | None = None) -> Any:
    """The closing deal an adapter sends for one hedging position."""
    sell = position.type == mt5.POSITION_TYPE_BUY
    tick = mt5.symbol_info_tick(position.symbol)
    return market(mt5, position.symbol, mt5.ORDER_TYPE_SELL if sell else mt5.ORDER_TYPE_BUY,
                  position.volume if volume is None else volume, filling=filling,
                  position=position.ticket, price=tick.bid if sell else tick.ask)


def positions(fake: FakeMT5) -> dict[int, dict[str, Any]]:
    return {p["ticket"]: p for p in fake.snapshot()["positions"]}


def test_closing_a_hedging_position_by_ticket_removes_it_and_records_the_out_deal(
    fake_mt5: FakeMT5, mt5: Any
) -> None:
    keep = fake_mt5.add_position("EURUSD", "buy", 0.10, 1.08400, magic=7)
    gone = fake_mt5.add_position("EURUSD", "buy", 0.20, 1.08450, magic=7)
    target = mt5.positions_get(ticket=gone)[0]

    result = close(mt5, target, filling=IOC)

    assert (result.retcode, result.volume, result.price) == (10009, 0.2, 1.085)
    assert result.comment == "Request executed" and result.request.position == gone
    assert set(positions(fake_mt5)) == {keep}
    out = [d for d in mt5.history_deals_get(position=gone) if d.entry == mt5.DEAL_ENTRY_OUT]
    assert [(d.ticket, d.order, d.type, d.volume) for d in out] == [
        (result.deal, result.order, mt5.DEAL_TYPE_SELL, 0.2)]
    assert out[0].profit == pytest.approx((1.085 - 1.0845) * 0.2 * 100_000)


def test_a_deal_without_position_on_a_hedging_account_opens_another_ticket(
    fake_mt5: FakeMT5, mt5: Any
) -> None:
    first = fake_mt5.add_position("EURUSD", "buy", 0.10)

    result = market(mt5, "EURUSD", mt5.ORDER_TYPE_SELL, 0.10)

    assert result.retcode == 10009
    tickets = {p.ticket: p.type for p in mt5.positions_get(symbol="EURUSD")}
    assert tickets == {first: mt5.POSITION_TYPE_BUY, result.order: mt5.POSITION_TYPE_SELL}


def test_netting_deals_add_reduce_and_reverse_the_single_position(
    netting_fake_mt5: FakeMT5, netting_mt5: Any
) -> None:
    mt5 = netting_mt5
    opened = market(mt5, "EURUSD", mt5.ORDER_TYPE_BUY, 0.10)
    added = market(mt5, "EURUSD", mt5.ORDER_TYPE_BUY, 0.20)
    (pos,) = mt5.positions_get(symbol="EURUSD")
    assert (pos.ticket, pos.volume, pos.type) == (opened.order, 0.3, mt5.POSITION_TYPE_BUY)

    reversed_ = market(mt5, "EURUSD", mt5.ORDER_TYPE_SELL, 0.50)

    (pos,) = mt5.positions_get()
    assert (pos.ticket, pos.volume, pos.type) == (opened.order, 0.2, mt5.POSITION_TYPE_SELL)
    entries = [(d.order, d.entry) for d in mt5.history_deals_get(position=opened.order)]
    assert entries == [(opened.order, mt5.DEAL_ENTRY_IN), (added.order, mt5.DEAL_ENTRY_IN),
                       (reversed_.order, mt5.DEAL_ENTRY_INOUT)]
    closed = market(mt5, "EURUSD", mt5.ORDER_TYPE_BUY, 0.20)
    assert closed.retcode == 10009 and mt5.positions_total() == 0


def test_ioc_on_a_fok_only_symbol_is_refused_as_unsupported_filling(
    fake_mt5: FakeMT5, mt5: Any
) -> None:
    ticket = fake_mt5.add_position("USDJPY", "buy", 0.10)
    assert mt5.symbol_info("USDJPY").filling_mode == 1  # SYMBOL_FILLING_FOK only

    refused = close(mt5, mt5.positions_get(ticket=ticket)[0], filling=IOC)
    assert (refused.retcode, refused.comment, refused.deal) == (
        10030, "Unsupported filling mode", 0)
    assert ticket in positions(fake_mt5)

    done = close(mt5, mt5.positions_get(ticket=ticket)[0], filling=FOK)
    assert done.retcode == 10009 and ticket not in positions(fake_mt5)


def test_passing_the_symbol_filling_mask_as_type_filling_is_refused(
    fake_mt5: FakeMT5, mt5: Any
) -> None:
    # EURUSD allows FOK|IOC: mask 3, which as an ORDER_FILLING_* value means BOC.
    mask = mt5.symbol_info("EURUSD").filling_mode
    assert mask == 3
    result = market(mt5, "EURUSD", mt5.ORDER_TYPE_BUY, 0.10, filling=mask)
    assert result.retcode == 10030 and fake_mt5.snapshot()["positions"] == []


def test_a_requote_storm_fills_nothing_until_it_passes(fake_mt5: FakeMT5, mt5: Any) -> None:
    ticket = fake_mt5.add_position("EURUSD", "sell", 0.30)
    fake_mt5.requote_next(3)

    answers = [close(mt5, mt5.positions_get(ticket=ticket)[0]) for _ in range(4)]

    assert [a.retcode for a in answers] == [10004, 10004, 10004, 10009]
    assert all(a.deal == 0 and a.bid == 1.085 and a.ask == 1.08512 for a in answers[:3])
    assert positions(fake_mt5) == {}
    assert len([d for d in fake_mt5.snapshot()["deals"] if d["position_id"] == ticket]) == 2


def test_instant_execution_requotes_a_stale_price_beyond_the_deviation(
    fake_mt5: FakeMT5, mt5: Any
) -> None:
    fake_mt5.set_price("USDJPY", 152.000)  # the adapter's price below is now stale
    stale = market(mt5, "USDJPY", mt5.ORDER_TYPE_BUY, 0.10, price=151.215, deviation=20)
    no_price = market(mt5, "USDJPY", mt5.ORDER_TYPE_BUY, 0.10)
    fresh = market(mt5, "USDJPY", mt5.ORDER_TYPE_BUY, 0.10, price=152.010, deviation=20)
    assert (stale.retcode, no_price.retcode, fresh.retcode) == (10004, 10015, 10009)
    assert fresh.price == 152.015


def test_market_closed_refuses_deals_and_order_removal(fake_mt5: FakeMT5, mt5: Any) -> None:
    ticket = fake_mt5.add_position("EURUSD", "buy", 0.10)
    order = fake_mt5.add_order("EURUSD", "buy_limit", 0.10, 1.07000)
    fake_mt5.set_market_closed("EURUSD")

    closing = close(mt5, mt5.positions_get(ticket=ticket)[0])
    removal = mt5.order_send({"action": mt5.TRADE_ACTION_REMOVE, "order": order})

    assert (closing.retcode, removal.retcode) == (10018, 10018)
    snap = fake_mt5.snapshot()
    assert [p["ticket"] for p in snap["positions"]] == [ticket]
    assert [o["ticket"] for o in snap["orders"]] == [order]


def test_no_money_refuses_new_exposure_but_never_a_close(fake_mt5: FakeMT5, mt5: Any) -> None:
    ticket = fake_mt5.add_position("GBPUSD", "buy", 0.50)
    fake_mt5.set_no_money()

    opening = market(mt5, "GBPUSD", mt5.ORDER_TYPE_BUY, 0.10, filling=IOC)
    closing = close(mt5, mt5.positions_get(ticket=ticket)[0], filling=IOC)

    assert (opening.retcode, opening.comment, closing.retcode) == (10019, "No money", 10009)
    assert positions(fake_mt5) == {}


def test_real_margin_shortage_is_no_money_too(fake_mt5: FakeMT5, mt5: Any) -> None:
    fake_mt5.set_balance(500.0)  # 1 lot EURUSD at 1:100 needs about 1085 USD
    assert mt5.order_check({"action": mt5.TRADE_ACTION_DEAL, "symbol": "EURUSD",
                            "volume": 1.0, "type": 0, "type_filling": FOK}).retcode == 10019
    assert market(mt5, "EURUSD", mt5.ORDER_TYPE_BUY, 1.0).retcode == 10019
    assert market(mt5, "EURUSD", mt5.ORDER_TYPE_BUY, 0.3).retcode == 10009


def test_an_ioc_partial_fill_closes_part_and_leaves_the_remainder(
    fake_mt5: FakeMT5, mt5: Any
) -> None:
    ticket = fake_mt5.add_position("EURUSD", "buy", 1.00)
    fake_mt5.set_partial_fill("EURUSD", 0.4)

    result = close(mt5, mt5.positions_get(ticket=ticket)[0], filling=IOC)

    assert (result.retcode, result.volume) == (10010, 0.4)
    (left,) = mt5.positions_get(ticket=ticket)
    assert left.volume == pytest.approx(0.6)
    assert mt5.orders_total() == 0  # IOC: the unfilled rest is cancelled, not working
    fok = close(mt5, left, filling=FOK)
    assert fok.retcode == 10006 and mt5.positions_get(ticket=ticket)[0].volume == 0.6


def test_a_return_partial_fill_on_an_exchange_symbol_leaves_a_working_order(
    fake_mt5: FakeMT5, mt5: Any
) -> None:
    ticket = fake_mt5.add_position("AAPL", "buy", 10.0)
    fake_mt5.set_partial_fill("AAPL", 0.5)
    assert close(mt5, mt5.positions_get(ticket=ticket)[0], filling=IOC).retcode == 10030

    result = close(mt5, mt5.positions_get(ticket=ticket)[0], filling=RETURN)

    assert (result.retcode, result.volume) == (10010, 5.0)
    (working,) = mt5.orders_get(symbol="AAPL")
    assert (working.ticket, working.type, working.volume_current, working.state) == (
        result.order, mt5.ORDER_TYPE_SELL, 5.0, mt5.ORDER_STATE_PARTIAL)
    assert mt5.positions_get(ticket=ticket)[0].volume == 5.0


def test_pending_orders_are_removed_with_trade_action_remove(
    fake_mt5: FakeMT5, mt5: Any
) -> None:
    mine = fake_mt5.add_order("EURUSD", "buy_limit", 0.10, 1.07000, magic=11, comment="s1")
    placed = mt5.order_send({
        "action": mt5.TRADE_ACTION_PENDING, "symbol": "EURUSD", "volume": 0.2,
        "type": mt5.ORDER_TYPE_SELL_STOP, "price": 1.08000, "type_filling": RETURN,
        "type_time": mt5.ORDER_TIME_GTC, "magic": 12, "comment": "s2"})
    assert placed.retcode == 10008
    assert {(o.ticket, o.magic, o.comment) for o in mt5.orders_get()} == {
        (mine, 11, "s1"), (placed.order, 12, "s2")}

    for order in mt5.orders_get():
        result = mt5.order_send({"action": mt5.TRADE_ACTION_REMOVE, "order": order.ticket})
        assert (result.retcode, result.order) == (10009, order.ticket)

    assert mt5.orders_total() == 0 and fake_mt5.snapshot()["orders"] == []
    states = {o.ticket: o.state for o in mt5.history_orders_get(0, 2**31 * 2)}
    assert states[mine] == states[placed.order] == mt5.ORDER_STATE_CANCELED
    again = mt5.order_send({"action": mt5.TRADE_ACTION_REMOVE, "order": mine})
    assert again.retcode == 10013


def test_a_pending_order_fills_when_the_quote_reaches_it(fake_mt5: FakeMT5, mt5: Any) -> None:
    order = fake_mt5.add_order("EURUSD", "buy_limit", 0.10, 1.08000)
    fake_mt5.set_price("EURUSD", 1.07990)  # ask 1.08002: not yet
    assert mt5.orders_total() == 1
    fake_mt5.set_price("EURUSD", 1.07985)  # ask 1.07997: a buy limit at 1.08 fills
    assert mt5.orders_total() == 0
    (pos,) = mt5.positions_get()
    assert (pos.ticket, pos.price_open, pos.volume) == (order, 1.08, 0.1)


@pytest.mark.parametrize(
    ("symbol", "mode", "opening", "closing"),
    [("US30", "closeonly", 10044, 10009), ("BTCUSD", "disabled", 10017, 10017)],
)
def test_close_only_and_disabled_symbols(fake_mt5: FakeMT5, mt5: Any, symbol: str, mode: str,
                                         opening: int, closing: int) -> None:
    fake_mt5.set_trade_mode(symbol, "full")
    ticket = fake_mt5.add_position(symbol, "buy", 1.0)
    fake_mt5.set_trade_mode(symbol, mode)
    assert mt5.symbol_info(symbol).trade_mode == {"closeonly": 3, "disabled": 0}[mode]
    assert market(mt5, symbol, mt5.ORDER_TYPE_BUY, 1.0).retcode == opening
    assert close(mt5, mt5.positions_get(ticket=ticket)[0]).retcode == closing
    assert (ticket in positions(fake_mt5)) == (closing != 10009)


def test_terminal_switches_answer_every_request(fake_mt5: FakeMT5, mt5: Any) -> None:
    fake_mt5.set_autotrading(False)
    assert mt5.terminal_info().trade_allowed is False
    assert market(mt5, "EURUSD", mt5.ORDER_TYPE_BUY, 0.1).retcode == 10027
    fake_mt5.set_autotrading(True)
    fake_mt5.set_connected(False)
    assert market(mt5, "EURUSD", mt5.ORDER_TYPE_BUY, 0.1).retcode == 10031
    fake_mt5.set_connected(True)
    fake_mt5.fail_next(10024, 2)
    codes = [market(mt5, "EURUSD", mt5.ORDER_TYPE_BUY, 0.1).retcode for _ in range(3)]
    assert codes == [10024, 10024, 10009]


def test_wrong_tickets_and_volumes_get_their_retcodes(fake_mt5: FakeMT5, mt5: Any) -> None:
    ticket = fake_mt5.add_position("EURUSD", "buy", 0.10)
    sell = mt5.ORDER_TYPE_SELL
    assert market(mt5, "EURUSD", sell, 0.20, position=ticket).retcode == 10038
    assert market(mt5, "EURUSD", sell, 0.10, position=ticket + 999).retcode == 10036
    assert market(mt5, "GBPUSD", sell, 0.10, position=ticket, filling=IOC).retcode == 10013
    assert market(mt5, "EURUSD", sell, 0.015).retcode == 10014
    assert market(mt5, "NOSUCH", sell, 0.10).retcode == 10013
    assert list(positions(fake_mt5)) == [ticket]


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"action": 1, "symbol": "EURUSD", "volume": 1, "type": 0}, 'Invalid "volume" argument'),
        ({"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0, "filling": 1},
         'Invalid "filling" argument'),
        ({"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0, "comment": "x" * 32},
         'Invalid "comment" argument'),
        ({"action": 1, "symbol": "EURUSD", "volume": 0.1, "type": 0, "sl": None},
         'Invalid "sl" argument'),
    ],
)
def test_a_malformed_request_returns_none_with_last_error(
    fake_mt5: FakeMT5, mt5: Any, request_: dict[str, Any], error: str
) -> None:
    assert mt5.order_send(request_) is None
    assert mt5.last_error() == (-2, error)
    assert fake_mt5.snapshot()["deals"] == []
