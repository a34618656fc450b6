"""The automatic breakers' inputs at IB: connection state, P&L (reqPnL / reqPnLSingle),
priced positions and the orders the session sees (openOrder / orderStatus events).

Used by the breaker process through its own session (`breaker_client_id`), kept open
between rounds: subscriptions are made once per session and read in place each round
(no request per round); a dropped session is re-opened at most every
RECONNECT_SECONDS, and until then every figure is unknown, never zero.

- P&L is IB's daily P&L (`dailyPnL`: value now - the day's opening value - cash of the
  day's fills - commissions), which IB resets on its own schedule: set the breaker's
  `trading_day_start` to the account's reset time. IB keeps P&L per account and
  contract, not per strategy (`strategies` is None). An instrument whose reqPnLSingle
  has not answered yet is `pending`.
- A position's price is its reqPnLSingle value / (quantity x multiplier).
- Orders: the session sees every API client's orders only as the gateway's Master API
  client ID; orders already working when the session opened are not counted as new.
  A rejected order is one whose status becomes Inactive.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ..base import (
    CLOSE_REF_PREFIX,
    AccountPnL,
    BrokerError,
    MarkedPosition,
    OrderRecord,
    PnLLine,
    Position,
)
from .contracts import instrument_of
from .session import dec

RECONNECT_SECONDS = 2.0
PUMP_EVERY_SECONDS = 0.05
KEEP_ORDERS = timedelta(days=1)
BASIS = "IB daily P&L (reqPnL; reset on IB's schedule)"


@dataclass
class _Subscriptions:
    ib: Any = None
    pnl: dict[str, Any] = field(default_factory=dict)
    single: dict[tuple[str, int], Any] = field(default_factory=dict)
    orders: dict[str, OrderRecord] = field(default_factory=dict)
    known: set[str] = field(default_factory=set)
    currency: dict[str, str] = field(default_factory=dict)
    retry_at: float = 0.0
    error: str = ""
    pumped: float = 0.0


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or abs(number) >= 1.7e308 else number


def _order_key(trade: Any) -> str:
    return str(trade.order.permId or f"{trade.order.clientId}:{trade.order.orderId}")


class FiguresMixin:
    """The breaker-input half of IBAdapter."""

    def _subs(self) -> _Subscriptions:
        subs = getattr(self, "_figures", None)
        if subs is None:
            subs = self._figures = _Subscriptions()
        return subs

    def _live(self) -> Any:
        """The session with its subscriptions, re-opened when it dropped (rate limited)."""
        subs = self._subs()
        ib = self._ib if self._ib is not None and self._ib.isConnected() else None
        if ib is None:
            if time.monotonic() < subs.retry_at:
                raise BrokerError(subs.error, retryable=True)
            try:
                ib = self._session()
            except BrokerError as exc:
                subs.retry_at, subs.error = time.monotonic() + RECONNECT_SECONDS, exc.message
                raise
        if subs.ib is not ib:
            self._subscribe(ib)
        if time.monotonic() - subs.pumped >= PUMP_EVERY_SECONDS:
            try:
                ib.sleep(0.001)  # let ib_async read what the gateway sent since the last round
            except (ConnectionError, OSError):
                pass  # the socket dropped: _checked says so
            subs.pumped = time.monotonic()
        self._checked(ib, "breaker reads")
        return ib

    def _subscribe(self, ib: Any) -> None:
        old = self._subs()
        fresh = _Subscriptions(orders=old.orders, currency=old.currency)
        # Orders working when the session opens are not new: only what appears later counts.
        fresh.known = {_order_key(t) for t in self._request("reqAllOpenOrders", lambda i: i.reqAllOpenOrdersAsync())}
        self._request("reqPositions", lambda i: i.reqPositionsAsync())  # and their updates from now on
        fresh.ib = ib
        self._figures = fresh
        ib.openOrderEvent += self._seen_order
        ib.orderStatusEvent += self._order_status

    def _seen_order(self, trade: Any) -> None:
        subs, key = self._subs(), _order_key(trade)
        if key in subs.known or (trade.order.orderRef or "").startswith(CLOSE_REF_PREFIX):
            return
        subs.known.add(key)
        now = datetime.now(UTC)
        subs.orders[key] = OrderRecord(account=trade.order.account, order_id=key,
                                       instrument=instrument_of(trade.contract), submitted_at=now,
                                       strategy=trade.order.orderRef or "")
        for old in [k for k, r in subs.orders.items() if r.submitted_at < now - KEEP_ORDERS]:
            del subs.orders[old]

    def _order_status(self, trade: Any) -> None:
        self._seen_order(trade)
        record = self._subs().orders.get(_order_key(trade))
        if record is not None and trade.orderStatus.status == "Inactive" and record.rejected_at is None:
            self._subs().orders[record.order_id] = replace(record, rejected_at=datetime.now(UTC))

    # --- the optional reads of BrokerAdapter ------------------------------------------------

    def connection_state(self, *, account: str) -> tuple[bool, str]:
        try:
            self._live()
        except BrokerError as exc:
            return False, exc.message
        return True, ""

    def account_currency(self, *, account: str) -> str:
        subs = self._subs()
        if account not in subs.currency:
            try:
                values = self._request("reqAccountSummary", lambda ib: ib.accountSummaryAsync(account))
            except BrokerError:
                return ""
            subs.currency[account] = next((v.currency for v in values if v.account == account
                                           and v.tag == "NetLiquidation" and v.currency), "")
        return subs.currency[account]

    def _singles(self, ib: Any, account: str) -> list[tuple[Any, Any]]:
        subs = self._subs()
        found = []
        for position in ib.positions(account):
            key = (account, position.contract.conId)
            if key not in subs.single:
                subs.single[key] = ib.reqPnLSingle(account, "", position.contract.conId)
            if position.position:
                found.append((position, subs.single[key]))
        return found

    def pnl(self, *, account: str, day_start: datetime, marks: Any = None) -> AccountPnL:
        ib = self._live()
        subs = self._subs()
        if account not in subs.pnl:
            subs.pnl[account] = ib.reqPnL(account)
        lines, pending = [], []
        for position, single in self._singles(ib, account):
            amount = _number(single.dailyPnL)
            if amount is None:
                pending.append(instrument_of(position.contract))
            else:
                lines.append(PnLLine(instrument_of(position.contract), Decimal(str(amount))))
        total = _number(subs.pnl[account].dailyPnL)
        if total is None:
            raise BrokerError(f"IB {self.connection.name}: no P&L report for {account} yet (reqPnL)", retryable=True)
        basis = BASIS + (f"; waiting for {', '.join(i.label for i in pending)}" if pending else "")
        return AccountPnL(Decimal(str(total)), tuple(lines), None, basis, pending=tuple(pending))

    def marked_positions(self, *, account: str) -> list[MarkedPosition]:
        ib = self._live()
        found = []
        for position, single in self._singles(ib, account):
            instrument = instrument_of(position.contract)
            qty = dec(position.position)
            multiplier = _number(position.contract.multiplier) or 1.0
            value = _number(single.value)
            price = None if value is None or not qty else Decimal(str(value / (float(qty) * multiplier)))
            found.append(MarkedPosition(Position(account, instrument, qty, dec(position.avgCost)), abs(price)
                                        if price is not None else None))
        return found

    def orders_since(self, *, account: str, since: datetime) -> list[OrderRecord]:
        self._live()
        return [r for r in self._subs().orders.values() if r.account == account and (
            r.submitted_at >= since or (r.rejected_at is not None and r.rejected_at >= since))]
