"""Closing positions at MetaTrader 5, and finding a closing deal again by its reference.

A closing deal is TRADE_ACTION_DEAL on the position's own symbol and ticket
(`position=<ticket>`: MT5 then only reduces that very position, never opens or
reverses one), the opposite type, the volume asked (never more than the ticket holds),
the current bid (closing a buy) or ask (closing a sell), the terminal's `deviation`,
its `magic`, the run's reference as the comment (at most 31 characters), and a filling
mode the symbol allows:
- request and instant execution take FOK only;
- otherwise the `symbol_info().filling_mode` mask (FOK=1, IOC=2) says which of
  ORDER_FILLING_IOC (preferred: a kill takes whatever liquidity there is, the runs
  send the rest again) and ORDER_FILLING_FOK are allowed, and exchange execution also
  takes ORDER_FILLING_RETURN; a symbol whose mask allows neither is sent RETURN, as
  MQL5's CTrade does. (The mask is not a type_filling value: sending it gives 10030.)

Answers: requote, price changed, no quotes (10004, 10020, 10021) are resent at once
with a fresh quote, up to the terminal's `requote_retries`; 10030 moves to the next
allowed filling mode; 10038 (the ticket holds less than asked) re-reads the ticket and
sends what it holds; 10036 (already closed) sends nothing more and reports it. A code
about the terminal rather than the ticket (AutoTrading off in the terminal or at the
server, no link to the trade server: 10026, 10027, 10031) is raised as BrokerError,
retryable or not by the table in retcodes.py, and stops the attempt. Any other code is
the ticket's outcome, on its own action row with the code's name: nothing executed,
`cancelled` when repeating can help (the run sends again for what is left), `rejected`
when it cannot (the run fails with an alert).

A reply lost on the way back (the bridge dropped or timed out after the request left)
is never answered by a second deal: the deal is looked for in the terminal's history
by its comment, and until it is found the outcome is unknown (BrokerError, retryable),
which the runs settle by the same reference before they send anything again.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

from ..base import (
    DONE_CANCELLED,
    DONE_REJECTED,
    FILLED,
    WORKING,
    BrokerError,
    OrderState,
    Position,
    Unclosable,
)
from .mapping import ORDER_TYPE_BUY, ORDER_TYPE_SELL, dec, is_trade_deal
from .retcodes import (
    DONE,
    INVALID_CLOSE_VOLUME,
    INVALID_FILL,
    PLACED,
    POSITION_CLOSED,
    REQUOTES,
    SUCCESS,
    TERMINAL_WIDE,
    retcode,
    trade_error,
)
from .session import ReplyLost

TRADE_ACTION_DEAL = 1
ORDER_FILLING_FOK, ORDER_FILLING_IOC, ORDER_FILLING_RETURN = 0, 1, 2
FILLING_NAMES = {0: "FOK", 1: "IOC", 2: "RETURN", 3: "BOC"}
SYMBOL_FILLING_FOK, SYMBOL_FILLING_IOC = 1, 2
EXECUTION_REQUEST, EXECUTION_INSTANT, EXECUTION_EXCHANGE = 0, 1, 3
SYMBOL_TRADE_MODE_DISABLED = 0
ORDER_TIME_GTC = 0
MAX_COMMENT = 31
# Order states (ENUM_ORDER_STATE) of a finished order that did not fill in full.
ORDER_STATE_CANCELED, ORDER_STATE_PARTIAL, ORDER_STATE_FILLED, ORDER_STATE_REJECTED, ORDER_STATE_EXPIRED = (
    2, 3, 4, 5, 6)
DAY = 86_400


def closing_fillings(info: dict[str, Any]) -> list[int]:
    """The filling modes a market deal on this symbol may use, the preferred first."""
    exemode = int(info.get("trade_exemode", -1))
    if exemode in (EXECUTION_REQUEST, EXECUTION_INSTANT):
        return [ORDER_FILLING_FOK]
    mask = int(info.get("filling_mode") or 0)
    modes = [m for m, flag in ((ORDER_FILLING_IOC, SYMBOL_FILLING_IOC), (ORDER_FILLING_FOK, SYMBOL_FILLING_FOK))
             if mask & flag]
    if exemode == EXECUTION_EXCHANGE or not modes:
        modes.append(ORDER_FILLING_RETURN)
    return modes


class TradingMixin:
    """The closing half of MT5Adapter (needs the session half)."""

    def close_position(self, position: Position, *, quantity: Decimal, client_ref: str) -> OrderState:
        symbol, label = position.symbol, position.instrument.label
        if not position.ticket:
            raise Unclosable(f"{label}: no position ticket to close by; nothing was sent")
        if len(client_ref) > MAX_COMMENT:
            raise BrokerError(f"closing reference {client_ref!r} is longer than MT5's {MAX_COMMENT}-character "
                              "comment", retryable=False)
        info = self.symbol_info(symbol)
        if int(info.get("trade_mode", -1)) == SYMBOL_TRADE_MODE_DISABLED:
            raise Unclosable(f"{label}: trading is disabled on {symbol} at this broker (SYMBOL_TRADE_MODE_DISABLED); "
                             "nothing was sent")
        if position.instrument.kind == "collateral":
            raise Unclosable(f"{label}: a collateral asset, not traded; nothing was sent")
        fillings = closing_fillings(info)
        side = ORDER_TYPE_SELL if position.quantity > 0 else ORDER_TYPE_BUY
        volume, filling, requotes, notes = quantity, 0, 0, []
        while True:
            tick = self.quote(symbol)
            request = {
                "action": TRADE_ACTION_DEAL, "symbol": symbol, "volume": float(volume), "type": side,
                "position": int(position.ticket),
                "price": float(tick["bid"] if side == ORDER_TYPE_SELL else tick["ask"]),
                "deviation": int(self.terminal.deviation), "magic": int(self.terminal.magic),
                "comment": client_ref, "type_time": ORDER_TIME_GTC, "type_filling": fillings[filling],
            }
            try:
                result = self.order_send(request)
            except ReplyLost as lost:
                return self._after_lost_reply(client_ref, str(lost))
            code = int(result["retcode"])
            if code in SUCCESS:
                return self._state(result, code, volume, client_ref, fillings[filling], notes)
            rc = retcode(code)
            if code in REQUOTES and requotes < self.terminal.requote_retries:
                requotes += 1
                notes.append(f"{code} {rc.name} at {request['price']}")
                time.sleep(min(0.05 * requotes, 0.5))  # let the quote move on
                continue
            if code == INVALID_FILL and filling + 1 < len(fillings):
                notes.append(f"{FILLING_NAMES[fillings[filling]]} refused (10030)")
                filling += 1
                continue
            if code == POSITION_CLOSED:
                return self._already_closed(position, client_ref, quantity)
            if code == INVALID_CLOSE_VOLUME and not any("10038" in n for n in notes):
                held = self._read("records", "positions_get", ticket=int(position.ticket))
                if not held:
                    return self._already_closed(position, client_ref, quantity)
                notes.append(f"10038: ticket holds {dec(held[0]['volume'])}, not {volume}")
                volume = min(volume, dec(held[0]["volume"]))
                continue
            resent = f" after {requotes} resend(s)" if requotes else ""
            if code in TERMINAL_WIDE:
                raise trade_error(code, f"{self._where}: closing deal for {label} ticket {position.ticket}"
                                        f"{resent}; nothing executed", str(result.get("comment") or ""))
            detail = "; ".join([f"{rc}{resent}", f"server comment {result.get('comment')!r}", *notes])
            # Nothing executed. Retryable: done without a fill, so the run sends again for
            # what is left (next round, then with backoff); otherwise rejected.
            return OrderState(order_id=str(result.get("order") or ""), client_ref=client_ref,
                              status=DONE_CANCELLED if rc.retryable else DONE_REJECTED, quantity=quantity,
                              detail=f"{detail}; nothing executed")

    def _state(self, result: dict[str, Any], code: int, volume: Decimal, client_ref: str, filling: int,
               notes: list[str]) -> OrderState:
        filled = Decimal(0) if code == PLACED else dec(result.get("volume"))
        detail = "; ".join([f"{retcode(code)}, filling {FILLING_NAMES[filling]}", *notes])
        if code == DONE and filled >= volume:
            return OrderState(order_id=str(result.get("order") or ""), client_ref=client_ref, status=FILLED,
                              quantity=volume, filled=filled, avg_price=dec(result.get("price")) or None,
                              detail=detail)
        # Placed, or partly done: the terminal's own record says whether the rest works on.
        found = self.find_order(account=self.account, client_ref=client_ref)
        if found is not None:
            return OrderState(found.order_id, client_ref, found.status, found.quantity, found.filled,
                              found.avg_price, "; ".join(filter(None, [detail, found.detail])))
        status = WORKING if code == PLACED or filling == ORDER_FILLING_RETURN else DONE_CANCELLED
        return OrderState(order_id=str(result.get("order") or ""), client_ref=client_ref, status=status,
                          quantity=volume, filled=filled, avg_price=dec(result.get("price")) or None, detail=detail)

    def _after_lost_reply(self, client_ref: str, why: str) -> OrderState:
        """The request left and no answer came back: settle it from the terminal's own
        record (reconnecting), never by sending it again."""
        try:
            found = self.find_order(account=self.account, client_ref=client_ref)
        except BrokerError as exc:
            found, why = None, f"{why}; re-reading failed too: {exc.message}"
        if found is not None:
            return OrderState(found.order_id, client_ref, found.status, found.quantity, found.filled,
                              found.avg_price, f"answer lost ({why}); settled from the terminal's history")
        raise BrokerError(f"{self._where}: the answer to closing deal {client_ref} was lost ({why}) and no deal "
                          "with that comment is in the history yet: its outcome is unknown; it is re-read by its "
                          "reference before anything is sent again", retryable=True)

    def _already_closed(self, position: Position, client_ref: str, quantity: Decimal) -> OrderState:
        """The answer was 10036 (or the ticket is gone): what is true at the terminal."""
        found = self.find_order(account=self.account, client_ref=client_ref)
        if found is not None:
            return found
        if self._read("records", "positions_get", ticket=int(position.ticket)):
            return OrderState(order_id="", client_ref=client_ref, status=DONE_CANCELLED, quantity=quantity,
                              detail=f"{retcode(POSITION_CLOSED)}, yet ticket {position.ticket} is still open; "
                                     "nothing executed")
        deals = self._read("records", "history_deals_get", position=int(position.ticket))
        outs = [d for d in deals if d.get("entry") in (1, 2, 3) and is_trade_deal(d)]
        by = ", ".join(f"deal {d['ticket']} {d.get('comment') or '(no comment)'}" for d in outs[-3:]) or "unknown"
        return OrderState(order_id="", client_ref=client_ref, status=DONE_CANCELLED, quantity=quantity,
                          detail=f"{retcode(POSITION_CLOSED)}: ticket {position.ticket} was closed already (by "
                                 f"{by}); nothing more was sent")

    def find_order(self, *, account: str, client_ref: str) -> OrderState | None:
        self._for(account)
        where = {"comment": client_ref}
        working = self._read("records", "orders_get", where=where)
        now = time.time()
        # Trade-server time may be a day either side of UTC; a wide window costs little
        # since only records with this comment come back.
        window = (int(now - self.terminal.history_days * DAY - DAY), int(now + DAY))
        deals = [d for d in self._read("records", "history_deals_get", *window, where=where) if is_trade_deal(d)]
        self._check_account()  # the history read was this account's
        filled = sum((dec(d["volume"]) for d in deals), Decimal(0))
        price = (sum((dec(d["volume"]) * dec(d["price"]) for d in deals), Decimal(0)) / filled) if filled else None
        if working:
            o = working[-1]
            initial = dec(o["volume_initial"])
            return OrderState(order_id=str(o["ticket"]), client_ref=client_ref, status=WORKING, quantity=initial,
                              filled=max(filled, initial - dec(o["volume_current"])), avg_price=price,
                              detail="working at the terminal")
        orders = self._read("records", "history_orders_get", *window, where=where)
        if not orders and not deals:
            return None
        order = orders[-1] if orders else None
        quantity = dec(order["volume_initial"]) if order else filled
        state = int(order["state"]) if order else ORDER_STATE_FILLED
        if filled >= quantity and filled > 0:
            status = FILLED
        elif state == ORDER_STATE_REJECTED:
            status = DONE_REJECTED
        elif state in (ORDER_STATE_CANCELED, ORDER_STATE_PARTIAL, ORDER_STATE_FILLED, ORDER_STATE_EXPIRED):
            status = DONE_CANCELLED
        else:
            status = WORKING
        return OrderState(order_id=str(order["ticket"]) if order else str(deals[-1]["order"]), client_ref=client_ref,
                          status=status, quantity=quantity, filled=filled, avg_price=price,
                          detail=f"{len(deals)} deal(s) in the terminal's history")
