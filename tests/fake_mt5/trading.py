"""``order_send`` / ``order_check`` of the fake terminal: validation, fills, faults.

Written from the MQL5 trade-request rules (no library models an MT5 trade
server).  What the engine guarantees, in the order a request is judged:

1. Malformed requests (not a plain ``dict``, unknown keys, a value of the wrong
   Python type, ``int`` where the terminal wants ``float``, a comment over 31
   characters) raise :class:`RequestError`: the module returns ``None`` and
   ``last_error()`` is ``(-2, 'Invalid "<key>" argument')``, as the C module does.
2. AutoTrading switched off in the terminal answers 10027 to every action, a
   terminal cut off from its trade server 10031.
3. Per action, local checks: unknown symbol / wrong order type / unknown ticket
   10013, volume outside min/max/step 10014, filling mode the symbol does not
   allow 10030, symbol trade mode disabled 10017 (close-only 10044, long-only
   10042, short-only 10043 for exposure-increasing requests), market closed 10018
   (also for removing and modifying orders, as MT5 does outside the session),
   closing a position that is gone 10036 or with more than it holds 10038,
   instant-execution price beyond ``deviation`` points 10004, missing price 10015,
   exposure-increasing deals without free margin 10019 (closing deals never
   need margin).
4. Injected faults (``fail_next``: requote storms, 10021, 10031, ...) are answered
   after the local checks, as a trade server would.
5. Fills: market orders fill at ask (buy) / bid (sell).  With a partial-fill
   share set on the symbol, IOC fills what it can (10010, the rest is cancelled),
   FOK fills nothing (10006), RETURN fills what it can and leaves the rest as a
   working order (10010).
6. Hedging accounts hold one position per opening deal; a deal with
   ``position=<ticket>`` closes (part of) that one.  Netting accounts hold one
   position per symbol: deals add, reduce, close or reverse it (entry IN, OUT,
   INOUT); ``position=<ticket>`` there may only reduce or close.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import constants as c
from .fills import BUY_SIDE, PENDING_TYPES, Ledger
from .records import REQUEST_FIELD_TYPES, OrderCheckResult, OrderSendResult, TradeRequest
from .state import Book, Order, Position, RequestError, Symbol, now_msc, round_volume

MAX_COMMENT = 31


class Rejected(Exception):
    """The trade request is refused with ``retcode`` (carried in the result, not raised)."""

    def __init__(self, retcode: int) -> None:
        super().__init__(retcode)
        self.retcode = retcode


@dataclass
class Faults:
    """Conditions a test switches on; see the control API in :mod:`.terminal`."""

    #: Each entry: [retcode, remaining count, actions it applies to].
    queued: list[list[Any]] = field(default_factory=list)
    no_money: bool = False
    autotrading: bool = True
    #: The terminal's link to the trade server (not the rpyc bridge).
    connected: bool = True

    def take(self, action: int) -> int | None:
        for entry in self.queued:
            if action in entry[2] and entry[1] > 0:
                entry[1] -= 1
                if entry[1] == 0:
                    self.queued.remove(entry)
                return entry[0]
        return None


def pending_price_ok(sym: Symbol, kind: int, price: float, stoplimit: float) -> bool:
    """Whether a pending order of ``kind`` at ``price`` sits on the right side of the quote."""
    return {
        c.ORDER_TYPE_BUY_LIMIT: 0 < price < sym.ask, c.ORDER_TYPE_SELL_LIMIT: price > sym.bid,
        c.ORDER_TYPE_BUY_STOP: price > sym.ask, c.ORDER_TYPE_SELL_STOP: 0 < price < sym.bid,
        c.ORDER_TYPE_BUY_STOP_LIMIT: price > sym.ask and 0 < stoplimit < price,
        c.ORDER_TYPE_SELL_STOP_LIMIT: 0 < price < sym.bid and stoplimit > price,
    }.get(kind, False)


def parse_request(raw: object) -> dict[str, Any]:
    """Validate a request dict the way the C module does and fill the defaults.

    Raises:
        RequestError: not a plain dict (an rpyc netref to a client-side dict is not
            one either), an unknown key, a value of the wrong type, or a comment
            longer than 31 characters.
    """
    if type(raw) is not dict:
        raise RequestError("Invalid arguments")
    request: dict[str, Any] = {
        name: ("" if kind is str else kind()) for name, kind in REQUEST_FIELD_TYPES.items()
    }
    for key, value in raw.items():
        kind = REQUEST_FIELD_TYPES.get(key) if type(key) is str else None
        if kind is None or type(value) is not kind:
            raise RequestError(f'Invalid "{key}" argument')
        request[key] = value
    if len(request["comment"]) > MAX_COMMENT:
        raise RequestError('Invalid "comment" argument')
    return request


class Trader:
    """Judges and executes trade requests against a :class:`Book` (caller holds the lock)."""

    def __init__(self, book: Book, faults: Faults) -> None:
        self.book = book
        self.faults = faults
        self.ledger = Ledger(book)
        self.request_id = 0

    # --- entry points ---------------------------------------------------------------
    def send(self, raw: object) -> OrderSendResult:
        """Execute one request; raises :class:`RequestError` when it is malformed."""
        req = parse_request(raw)
        self.request_id += 1
        try:
            if not self.faults.autotrading:
                raise Rejected(c.TRADE_RETCODE_CLIENT_DISABLES_AT)
            if not self.faults.connected:
                raise Rejected(c.TRADE_RETCODE_CONNECTION)
            handler = {
                c.TRADE_ACTION_DEAL: self._deal,
                c.TRADE_ACTION_PENDING: self._pending,
                c.TRADE_ACTION_REMOVE: self._remove,
                c.TRADE_ACTION_MODIFY: self._modify,
                c.TRADE_ACTION_SLTP: self._sltp,
                c.TRADE_ACTION_CLOSE_BY: self._close_by,
            }.get(req["action"])
            if handler is None:
                raise Rejected(c.TRADE_RETCODE_INVALID)
            return handler(req, execute=True)
        except Rejected as rej:
            return self._result(rej.retcode, req)

    def check(self, raw: object) -> OrderCheckResult:
        """``order_check``: the local checks only; retcode 0 when the request would pass."""
        req = parse_request(raw)
        retcode, margin_needed = 0, 0.0
        try:
            if req["action"] == c.TRADE_ACTION_DEAL:
                margin_needed = self._deal(req, execute=False)
            elif req["action"] == c.TRADE_ACTION_PENDING:
                self._pending(req, execute=False)
            elif req["action"] not in (c.TRADE_ACTION_REMOVE, c.TRADE_ACTION_MODIFY,
                                       c.TRADE_ACTION_SLTP, c.TRADE_ACTION_CLOSE_BY):
                raise Rejected(c.TRADE_RETCODE_INVALID)
        except Rejected as rej:
            retcode = rej.retcode
        book = self.book
        equity = book.equity()
        margin = book.margin_used() + margin_needed
        return OrderCheckResult(
            retcode, book.account.balance, equity, round(equity - book.account.balance, 2),
            round(margin, 2), round(equity - margin, 2),
            round(equity / margin * 100, 2) if margin else 0.0,
            c.RETCODE_COMMENTS.get(retcode, ""), TradeRequest(**req))

    # --- actions ----------------------------------------------------------------------
    def _deal(self, req: dict[str, Any], *, execute: bool) -> Any:
        sym = self._symbol(req)
        side = req["type"]
        if side not in (c.ORDER_TYPE_BUY, c.ORDER_TYPE_SELL):
            raise Rejected(c.TRADE_RETCODE_INVALID)
        volume = req["volume"]
        if sym.volume_error(volume):
            raise Rejected(c.TRADE_RETCODE_INVALID_VOLUME)
        if req["type_filling"] not in self._market_fillings(sym):
            raise Rejected(c.TRADE_RETCODE_INVALID_FILL)
        target = self._target_position(req, sym)
        opening = self._opening_volume(sym, side, volume, target)
        self._check_trade_mode(sym, side, opening)
        if not sym.market_open:
            raise Rejected(c.TRADE_RETCODE_MARKET_CLOSED)
        market = sym.ask if side == c.ORDER_TYPE_BUY else sym.bid
        if sym.exemode in (c.SYMBOL_TRADE_EXECUTION_INSTANT, c.SYMBOL_TRADE_EXECUTION_REQUEST):
            # Instant execution deals at the requested price or requotes; market and
            # exchange execution ignore the price field.
            if req["price"] <= 0:
                raise Rejected(c.TRADE_RETCODE_INVALID_PRICE)
            if abs(req["price"] - market) > req["deviation"] * sym.point + sym.point / 10:
                raise Rejected(c.TRADE_RETCODE_REQUOTE)
        margin_needed = self.book.margin_for(sym, opening, market) if opening else 0.0
        if opening and (self.faults.no_money or margin_needed > self._free_margin()):
            raise Rejected(c.TRADE_RETCODE_NO_MONEY)
        if not execute:
            return margin_needed
        self._injected(c.TRADE_ACTION_DEAL)
        filled = volume
        if sym.partial_fill is not None and sym.partial_fill < 1.0:
            if req["type_filling"] == c.ORDER_FILLING_FOK:
                raise Rejected(c.TRADE_RETCODE_REJECT)
            filled = min(volume, sym.floor_to_step(volume * sym.partial_fill))
        order = self.ledger.market_order(req, sym, filled, market)
        deal = self.ledger.fill(order, filled, market, target)
        if filled < volume:
            if req["type_filling"] == c.ORDER_FILLING_RETURN:
                # The unfilled rest stays on the book as a working market order.
                order.volume_current = round_volume(volume - filled)
                order.state = c.ORDER_STATE_PARTIAL
                order.time_done_msc = 0
                self.book.history_orders.remove(order)
                self.book.orders[order.ticket] = order
            else:
                order.state = c.ORDER_STATE_PARTIAL
            return self._result(c.TRADE_RETCODE_DONE_PARTIAL, req, deal=deal.ticket,
                                order=order.ticket, volume=filled, price=market)
        return self._result(c.TRADE_RETCODE_DONE, req, deal=deal.ticket, order=order.ticket,
                            volume=filled, price=market)

    def _pending(self, req: dict[str, Any], *, execute: bool) -> Any:
        sym = self._symbol(req)
        kind = req["type"]
        if kind not in PENDING_TYPES:
            raise Rejected(c.TRADE_RETCODE_INVALID)
        if sym.volume_error(req["volume"]):
            raise Rejected(c.TRADE_RETCODE_INVALID_VOLUME)
        if req["type_filling"] not in self._pending_fillings(sym, kind):
            raise Rejected(c.TRADE_RETCODE_INVALID_FILL)
        self._check_trade_mode(sym, c.ORDER_TYPE_BUY if kind in BUY_SIDE else c.ORDER_TYPE_SELL,
                               req["volume"])
        if not sym.market_open:
            raise Rejected(c.TRADE_RETCODE_MARKET_CLOSED)
        self._check_pending_price(sym, kind, req["price"], req["stoplimit"])
        if req["type_time"] in (c.ORDER_TIME_SPECIFIED, c.ORDER_TIME_SPECIFIED_DAY) and (
            req["expiration"] * 1000 <= now_msc()
        ):
            raise Rejected(c.TRADE_RETCODE_INVALID_EXPIRATION)
        if not execute:
            return None
        self._injected(c.TRADE_ACTION_PENDING)
        order = Order(
            ticket=self.book.new_order_ticket(), symbol=sym.name, type=kind,
            volume_initial=req["volume"], volume_current=req["volume"],
            price_open=req["price"], time_setup_msc=now_msc(), magic=req["magic"],
            comment=req["comment"], sl=req["sl"], tp=req["tp"],
            price_stoplimit=req["stoplimit"], type_filling=req["type_filling"],
            type_time=req["type_time"], expiration=req["expiration"])
        self.book.orders[order.ticket] = order
        return self._result(c.TRADE_RETCODE_PLACED, req, order=order.ticket,
                            volume=req["volume"])

    def _remove(self, req: dict[str, Any], *, execute: bool) -> OrderSendResult:
        order = self.book.orders.get(req["order"])
        if order is None:
            raise Rejected(c.TRADE_RETCODE_INVALID)
        sym = self.book.symbols[order.symbol]
        if sym.trade_mode == c.SYMBOL_TRADE_MODE_DISABLED:
            raise Rejected(c.TRADE_RETCODE_TRADE_DISABLED)
        if not sym.market_open:
            raise Rejected(c.TRADE_RETCODE_MARKET_CLOSED)
        self._injected(c.TRADE_ACTION_REMOVE)
        self.ledger.retire(order, c.ORDER_STATE_CANCELED)
        return self._result(c.TRADE_RETCODE_DONE, req, order=order.ticket)

    def _modify(self, req: dict[str, Any], *, execute: bool) -> OrderSendResult:
        order = self.book.orders.get(req["order"])
        if order is None or order.type not in PENDING_TYPES:
            raise Rejected(c.TRADE_RETCODE_INVALID)
        sym = self.book.symbols[order.symbol]
        if not sym.market_open:
            raise Rejected(c.TRADE_RETCODE_MARKET_CLOSED)
        self._check_pending_price(sym, order.type, req["price"], req["stoplimit"])
        new = (req["price"], req["sl"], req["tp"], req["stoplimit"])
        if new == (order.price_open, order.sl, order.tp, order.price_stoplimit):
            raise Rejected(c.TRADE_RETCODE_NO_CHANGES)
        self._injected(c.TRADE_ACTION_MODIFY)
        order.price_open, order.sl, order.tp, order.price_stoplimit = new
        return self._result(c.TRADE_RETCODE_DONE, req, order=order.ticket)

    def _sltp(self, req: dict[str, Any], *, execute: bool) -> OrderSendResult:
        pos = self.book.positions.get(req["position"])
        if pos is None:
            raise Rejected(c.TRADE_RETCODE_POSITION_CLOSED)
        if not self.book.symbols[pos.symbol].market_open:
            raise Rejected(c.TRADE_RETCODE_MARKET_CLOSED)
        if (req["sl"], req["tp"]) == (pos.sl, pos.tp):
            raise Rejected(c.TRADE_RETCODE_NO_CHANGES)
        self._injected(c.TRADE_ACTION_SLTP)
        pos.sl, pos.tp, pos.time_update_msc = req["sl"], req["tp"], now_msc()
        return self._result(c.TRADE_RETCODE_DONE, req)

    def _close_by(self, req: dict[str, Any], *, execute: bool) -> OrderSendResult:
        if not self.book.account.hedging:
            raise Rejected(c.TRADE_RETCODE_INVALID)
        pos = self.book.positions.get(req["position"])
        by = self.book.positions.get(req["position_by"])
        if pos is None or by is None:
            raise Rejected(c.TRADE_RETCODE_POSITION_CLOSED)
        if pos.symbol != by.symbol or pos.type == by.type:
            raise Rejected(c.TRADE_RETCODE_INVALID)
        sym = self.book.symbols[pos.symbol]
        if not sym.market_open:
            raise Rejected(c.TRADE_RETCODE_MARKET_CLOSED)
        self._injected(c.TRADE_ACTION_CLOSE_BY)
        volume = min(pos.volume, by.volume)
        order = Order(ticket=self.book.new_order_ticket(), symbol=sym.name,
                      type=c.ORDER_TYPE_CLOSE_BY, volume_initial=volume, volume_current=0.0,
                      price_open=0.0, time_setup_msc=now_msc(), magic=req["magic"],
                      comment=req["comment"], state=c.ORDER_STATE_FILLED,
                      time_done_msc=now_msc(), position_id=pos.ticket, position_by_id=by.ticket)
        self.book.history_orders.append(order)
        deal = None
        for first, second in ((pos, by), (by, pos)):
            # Each leg closes at the other's open price, as MT5 books a close-by.
            deal = self.ledger.reduce(first, volume, second.price_open, order, c.DEAL_ENTRY_OUT_BY)
        assert deal is not None
        return self._result(c.TRADE_RETCODE_DONE, req, deal=deal.ticket, order=order.ticket,
                            volume=volume)

    # --- checks -------------------------------------------------------------------------
    def _symbol(self, req: dict[str, Any]) -> Symbol:
        sym = self.book.symbols.get(req["symbol"])
        if sym is None:
            raise Rejected(c.TRADE_RETCODE_INVALID)
        return sym

    def _target_position(self, req: dict[str, Any], sym: Symbol) -> Position | None:
        if not req["position"]:
            return None
        pos = self.book.positions.get(req["position"])
        if pos is None:
            raise Rejected(c.TRADE_RETCODE_POSITION_CLOSED)
        if pos.symbol != sym.name or pos.type == req["type"]:
            # A closing deal must be on the position's own symbol, other direction.
            raise Rejected(c.TRADE_RETCODE_INVALID)
        if req["volume"] > pos.volume + 1e-9:
            raise Rejected(c.TRADE_RETCODE_INVALID_CLOSE_VOLUME)
        return pos

    def _opening_volume(self, sym: Symbol, side: int, volume: float,
                        target: Position | None) -> float:
        """How much of a deal adds exposure (needs margin, barred in close-only)."""
        if target is not None:
            return 0.0
        if self.book.account.hedging:
            return volume
        net = next((p for p in self.book.positions.values() if p.symbol == sym.name), None)
        if net is None or net.type == side:
            return volume
        return max(0.0, round_volume(volume - net.volume))

    def _check_trade_mode(self, sym: Symbol, side: int, opening: float) -> None:
        mode = sym.trade_mode
        if mode == c.SYMBOL_TRADE_MODE_DISABLED:
            raise Rejected(c.TRADE_RETCODE_TRADE_DISABLED)
        if opening and mode == c.SYMBOL_TRADE_MODE_CLOSEONLY:
            raise Rejected(c.TRADE_RETCODE_CLOSE_ONLY)
        if opening and mode == c.SYMBOL_TRADE_MODE_LONGONLY and side == c.ORDER_TYPE_SELL:
            raise Rejected(c.TRADE_RETCODE_LONG_ONLY)
        if opening and mode == c.SYMBOL_TRADE_MODE_SHORTONLY and side == c.ORDER_TYPE_BUY:
            raise Rejected(c.TRADE_RETCODE_SHORT_ONLY)

    @staticmethod
    def _market_fillings(sym: Symbol) -> set[int]:
        if sym.exemode in (c.SYMBOL_TRADE_EXECUTION_INSTANT, c.SYMBOL_TRADE_EXECUTION_REQUEST):
            return {c.ORDER_FILLING_FOK}
        allowed = set()
        if sym.filling_mode & c.SYMBOL_FILLING_FOK:
            allowed.add(c.ORDER_FILLING_FOK)
        if sym.filling_mode & c.SYMBOL_FILLING_IOC:
            allowed.add(c.ORDER_FILLING_IOC)
        if sym.exemode == c.SYMBOL_TRADE_EXECUTION_EXCHANGE:
            allowed.add(c.ORDER_FILLING_RETURN)
        return allowed

    @classmethod
    def _pending_fillings(cls, sym: Symbol, kind: int) -> set[int]:
        allowed = cls._market_fillings(sym) | {c.ORDER_FILLING_RETURN}
        if sym.filling_mode & c.SYMBOL_FILLING_BOC and kind in (
            c.ORDER_TYPE_BUY_LIMIT, c.ORDER_TYPE_SELL_LIMIT):
            allowed.add(c.ORDER_FILLING_BOC)
        return allowed

    @staticmethod
    def _check_pending_price(sym: Symbol, kind: int, price: float, stoplimit: float) -> None:
        if not pending_price_ok(sym, kind, price, stoplimit):
            raise Rejected(c.TRADE_RETCODE_INVALID_PRICE)

    def _free_margin(self) -> float:
        return self.book.equity() - self.book.margin_used()

    def _injected(self, action: int) -> None:
        retcode = self.faults.take(action)
        if retcode is not None:
            raise Rejected(retcode)

    def _result(self, retcode: int, req: dict[str, Any], *, deal: int = 0, order: int = 0,
                volume: float = 0.0, price: float = 0.0) -> OrderSendResult:
        sym = self.book.symbols.get(req["symbol"])
        bid, ask = (sym.bid, sym.ask) if sym else (0.0, 0.0)
        return OrderSendResult(retcode, deal, order, volume, price, bid, ask,
                               c.RETCODE_COMMENTS.get(retcode, ""), self.request_id, 0,
                               TradeRequest(**req))
