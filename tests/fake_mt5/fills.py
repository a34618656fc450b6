"""Booking fills: orders into the history, deals, and the positions they open or close.

:class:`Ledger` applies an already-accepted fill to a :class:`~.state.Book` under
the terminal's lock: hedging accounts get one position per opening fill (ticket
= the opening order's ticket), netting accounts one per symbol that fills add
to, reduce, close or reverse (entry IN, OUT, INOUT; a reversal keeps the
position's ticket and identifier).  Realised profit goes to the balance.
"""

from __future__ import annotations

from typing import Any

from . import constants as c
from .state import Book, Deal, Order, Position, Symbol, now_msc, round_volume

BUY_SIDE = {c.ORDER_TYPE_BUY, c.ORDER_TYPE_BUY_LIMIT, c.ORDER_TYPE_BUY_STOP,
            c.ORDER_TYPE_BUY_STOP_LIMIT}
PENDING_TYPES = {c.ORDER_TYPE_BUY_LIMIT, c.ORDER_TYPE_SELL_LIMIT, c.ORDER_TYPE_BUY_STOP,
                 c.ORDER_TYPE_SELL_STOP, c.ORDER_TYPE_BUY_STOP_LIMIT, c.ORDER_TYPE_SELL_STOP_LIMIT}


class Ledger:
    """Books fills against one :class:`Book` (the caller holds the terminal's lock)."""

    def __init__(self, book: Book) -> None:
        self.book = book

    def fill(self, order: Order, volume: float, price: float,
             target: Position | None) -> Deal:
        """Book one fill of ``order`` and return its deal (hedging or netting rules)."""
        book = self.book
        side = c.ORDER_TYPE_BUY if order.type in BUY_SIDE else c.ORDER_TYPE_SELL
        if book.account.hedging:
            if target is not None:
                return self.reduce(target, volume, price, order, c.DEAL_ENTRY_OUT)
            return self.open(order, side, volume, price, order.ticket)
        net = target or next((p for p in book.positions.values() if p.symbol == order.symbol),
                             None)
        if net is None:
            return self.open(order, side, volume, price, order.ticket)
        if net.type == side:
            total = round_volume(net.volume + volume)
            net.price_open = (net.price_open * net.volume + price * volume) / total
            net.volume, net.time_update_msc = total, now_msc()
            return self.deal_record(order, side, c.DEAL_ENTRY_IN, net.ticket, volume, price)
        if volume <= net.volume + 1e-9:
            return self.reduce(net, volume, price, order, c.DEAL_ENTRY_OUT)
        # Reversal: the position closes and reopens the other way, same identifier.
        profit = book.deal_profit(book.symbols[net.symbol], net.type, net.volume,
                                  net.price_open, price)
        book.account.balance += profit
        excess = round_volume(volume - net.volume)
        net.type, net.volume, net.price_open = side, excess, price
        net.time_update_msc = now_msc()
        deal = self.deal_record(order, side, c.DEAL_ENTRY_INOUT, net.ticket, volume, price)
        deal.profit = profit
        return deal

    def open(self, order: Order, side: int, volume: float, price: float, ticket: int) -> Deal:
        when = now_msc()
        self.book.positions[ticket] = Position(
            ticket=ticket, symbol=order.symbol, type=side, volume=volume, price_open=price,
            time_msc=when, time_update_msc=when, magic=order.magic, comment=order.comment)
        order.position_id = ticket
        return self.deal_record(order, side, c.DEAL_ENTRY_IN, ticket, volume, price)

    def reduce(self, pos: Position, volume: float, price: float, order: Order,
                entry: int) -> Deal:
        book = self.book
        profit = book.deal_profit(book.symbols[pos.symbol], pos.type, volume, pos.price_open,
                                  price)
        book.account.balance += profit
        pos.volume = round_volume(pos.volume - volume)
        pos.time_update_msc = now_msc()
        if pos.volume <= 1e-9:
            del book.positions[pos.ticket]
        order.position_id = order.position_id or pos.ticket
        side = c.ORDER_TYPE_SELL if pos.type == c.POSITION_TYPE_BUY else c.ORDER_TYPE_BUY
        deal = self.deal_record(order, side, entry, pos.ticket, volume, price)
        deal.profit = profit
        return deal

    def deal_record(self, order: Order, side: int, entry: int, position_id: int,
                     volume: float, price: float) -> Deal:
        deal = Deal(ticket=self.book.new_deal_ticket(), order=order.ticket, time_msc=now_msc(),
                    type=c.DEAL_TYPE_BUY if side == c.ORDER_TYPE_BUY else c.DEAL_TYPE_SELL,
                    entry=entry, position_id=position_id, volume=volume, price=price,
                    symbol=order.symbol, magic=order.magic, comment=order.comment)
        self.book.deals.append(deal)
        return deal

    def market_order(self, req: dict[str, Any], sym: Symbol, filled: float,
                   price: float) -> Order:
        when = now_msc()
        order = Order(
            ticket=self.book.new_order_ticket(), symbol=sym.name, type=req["type"],
            volume_initial=req["volume"], volume_current=round_volume(req["volume"] - filled),
            price_open=price, time_setup_msc=when, magic=req["magic"], comment=req["comment"],
            sl=req["sl"], tp=req["tp"], type_filling=req["type_filling"],
            state=c.ORDER_STATE_FILLED, time_done_msc=when)
        self.book.history_orders.append(order)
        return order

    def retire(self, order: Order, state: int) -> None:
        """Move a working order to the history in ``state``."""
        del self.book.orders[order.ticket]
        order.state, order.time_done_msc = state, now_msc()
        self.book.history_orders.append(order)

    def trigger_pending(self, sym: Symbol) -> None:
        """Fill or convert the pending orders of ``sym`` that its new quote reached."""
        for order in [o for o in self.book.orders.values() if o.symbol == sym.name]:
            kind, price = order.type, order.price_open
            hit = {
                c.ORDER_TYPE_BUY_LIMIT: sym.ask <= price, c.ORDER_TYPE_SELL_LIMIT: sym.bid >= price,
                c.ORDER_TYPE_BUY_STOP: sym.ask >= price, c.ORDER_TYPE_SELL_STOP: sym.bid <= price,
                c.ORDER_TYPE_BUY_STOP_LIMIT: sym.ask >= price,
                c.ORDER_TYPE_SELL_STOP_LIMIT: sym.bid <= price,
            }.get(kind, False)
            if not hit:
                continue
            if kind in (c.ORDER_TYPE_BUY_STOP_LIMIT, c.ORDER_TYPE_SELL_STOP_LIMIT):
                order.type = (c.ORDER_TYPE_BUY_LIMIT if kind == c.ORDER_TYPE_BUY_STOP_LIMIT
                              else c.ORDER_TYPE_SELL_LIMIT)
                order.price_open, order.price_stoplimit = order.price_stoplimit, 0.0
                continue
            limit = kind in (c.ORDER_TYPE_BUY_LIMIT, c.ORDER_TYPE_SELL_LIMIT)
            fill_price = price if limit else (sym.ask if kind in BUY_SIDE else sym.bid)
            self.fill(order, order.volume_current, fill_price, None)
            order.volume_current = 0.0
            self.retire(order, c.ORDER_STATE_FILLED)
