"""The fake broker's books: accounts, quotes, orders, fills, positions and P&L.

Pure state, no I/O: :class:`Book` changes and reads it; the engine tells the
clients.  Used on the gateway loop thread only.

Units, as at IB: quantities in contracts (futures, options), shares, bonds,
coins or base currency (FX); prices per unit (bonds in percent of par); money =
quantity x price x :attr:`ContractSpec.factor`.  ``avg_cost`` is IB's figure,
average price x factor (an ES long at 5000 has avgCost 250000).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from .contracts import ContractRegistry, ContractSpec
from .protocol import ib_time

#: Price used for a market fill when the test never set one.
DEFAULT_PRICE = 100.0
WORKING_STATES = frozenset({"PendingSubmit", "PreSubmitted", "Submitted"})


@dataclass
class Quote:
    last: float
    bid: float
    ask: float
    close: float | None = None  # the prior close, when set explicitly


@dataclass
class Order:
    perm_id: int
    order_id: int
    client_id: int
    account: str
    contract: ContractSpec
    exchange: str
    action: str
    qty: float
    order_type: str
    limit_price: float | None
    aux_price: float | None
    tif: str
    order_ref: str
    outside_rth: bool = False
    status: str = "Submitted"
    filled: float = 0.0
    avg_fill_price: float = 0.0
    last_fill_price: float = 0.0
    completed_time: str = ""
    completed_status: str = ""

    @property
    def remaining(self) -> float:
        return max(self.qty - self.filled, 0.0)

    @property
    def working(self) -> bool:
        return self.status in WORKING_STATES

    def as_dict(self) -> dict[str, Any]:
        c = self.contract
        return {
            "perm_id": self.perm_id, "order_id": self.order_id, "client_id": self.client_id,
            "account": self.account, "symbol": c.symbol, "con_id": c.con_id,
            "sec_type": c.sec_type, "local_symbol": c.local_symbol, "exchange": self.exchange,
            "action": self.action, "qty": self.qty, "order_type": self.order_type,
            "limit_price": self.limit_price, "aux_price": self.aux_price, "tif": self.tif,
            "order_ref": self.order_ref, "outside_rth": self.outside_rth, "status": self.status,
            "filled": self.filled, "avg_fill_price": self.avg_fill_price,
            "last_fill_price": self.last_fill_price, "remaining": self.remaining,
        }


@dataclass
class Position:
    account: str
    contract: ContractSpec
    qty: float = 0.0
    avg_price: float = 0.0  # per unit of price; avg_cost = avg_price * factor
    realized: float = 0.0  # today, net of the commissions of closing fills
    start_qty: float = 0.0  # the day's opening position and its mark, for daily P&L
    start_mark: float = 0.0
    day_cash: float = 0.0  # sum of signed fill qty x price x factor today
    day_commission: float = 0.0
    # What position reports say: equal to qty/avg_cost unless reports lag fills.
    shown_qty: float = 0.0
    shown_avg_cost: float = 0.0
    shown_seq: int = 0

    @property
    def avg_cost(self) -> float:
        return self.avg_price * self.contract.factor


@dataclass
class Execution:
    exec_id: str
    time: float
    order: Order
    venue: str
    side: str
    shares: float
    price: float
    cum_qty: float
    avg_price: float
    commission: float
    realized_pnl: float | None  # net of commission; None for an opening fill


def commission_for(spec: ContractSpec, qty: float, price: float) -> float:
    """A plausible IB-like commission (currency of the contract), rounded to cents."""
    notional = qty * price * spec.factor
    per = {
        "STK": max(1.0, 0.005 * qty), "CFD": max(1.0, 0.005 * qty),
        "OPT": max(1.0, 0.65 * qty), "FUT": 0.85 * qty, "FOP": 0.85 * qty,
        "CASH": max(2.0, 0.00002 * notional), "CRYPTO": max(1.75, 0.0018 * notional),
        "BOND": max(5.0, 1.0 * qty),
    }
    return round(per[spec.sec_type], 2)


class Book:
    """Accounts, contracts, quotes, orders, executions and positions of the fake broker."""

    def __init__(self, accounts: tuple[str, ...]) -> None:
        self.accounts = accounts
        self.contracts = ContractRegistry()
        self.quotes: dict[int, Quote] = {}
        self.orders: dict[int, Order] = {}  # perm_id -> order, insertion ordered
        self.by_key: dict[tuple[int, int], int] = {}  # (client_id, order_id) -> perm_id
        self.positions: dict[tuple[str, int], Position] = {}
        self.executions: list[Execution] = []
        self.next_order_id = 1
        self.next_perm_id = 1_000_001
        self._exec_seq = 0

    # ---------------------------------------------------------------- lookups

    def check_account(self, account: str) -> None:
        """Raises ValueError naming the gateway's accounts if ``account`` is not one."""
        if account not in self.accounts:
            raise ValueError(f"unknown account {account!r}; gateway has {self.accounts}")

    def contract(self, instrument: str | int) -> ContractSpec:
        """A conId (int) names a registered contract; a str is a US stock symbol (implicit)."""
        if isinstance(instrument, bool) or not isinstance(instrument, int | str):
            raise TypeError(f"instrument must be a conId (int) or stock symbol (str), not {instrument!r}")
        if isinstance(instrument, int):
            return self.contracts.require(instrument)
        return self.contracts.stock(instrument)

    def mark(self, spec: ContractSpec, pos: Position | None = None) -> float:
        """The price positions are valued at: the last price, else the position's average."""
        quote = self.quotes.get(spec.con_id)
        if quote is not None:
            return quote.last
        if pos is not None and pos.qty:
            return pos.avg_price
        return DEFAULT_PRICE

    def position(self, account: str, spec: ContractSpec) -> Position:
        key = (account, spec.con_id)
        if key not in self.positions:
            self.positions[key] = Position(account, spec)
        return self.positions[key]

    def find(self, order_id: int, client_id: int | None) -> Order:
        """The order with this id; raises KeyError if none, or several clients used the id."""
        matches = [
            o for o in self.orders.values()
            if o.order_id == order_id and (client_id is None or o.client_id == client_id)
        ]
        if not matches:
            raise KeyError(f"no order {order_id} (client_id={client_id})")
        if len(matches) > 1:
            raise KeyError(f"order id {order_id} is used by several clients; pass client_id")
        return matches[0]

    def fill_price(self, order: Order) -> float:
        """A resting limit order that gets hit trades at its limit; others at bid (sell) / ask (buy)."""
        if order.order_type in ("LMT", "STP LMT") and order.limit_price is not None:
            return order.limit_price
        quote = self.quotes.get(order.contract.con_id)
        if quote is None:
            return DEFAULT_PRICE
        return quote.ask if order.action == "BUY" else quote.bid

    # ---------------------------------------------------------------- changes

    def set_quote(self, spec: ContractSpec, last: float, bid: float | None, ask: float | None,
                  close: float | None) -> Quote:
        old = self.quotes.get(spec.con_id)
        keep_close = close if close is not None else (old.close if old else None)
        quote = Quote(last, last if bid is None else bid, last if ask is None else ask, keep_close)
        self.quotes[spec.con_id] = quote
        return quote

    def set_position(self, account: str, spec: ContractSpec, qty: float, avg_cost: float) -> Position:
        """Overwrite a position (IB avgCost, i.e. price x factor); it is the day's opening one."""
        self.check_account(account)
        pos = self.position(account, spec)
        pos.qty, pos.avg_price = qty, (avg_cost / spec.factor if qty else 0.0)
        quote = self.quotes.get(spec.con_id)
        pos.start_qty = qty
        pos.start_mark = quote.close if quote and quote.close is not None else self.mark(spec, pos)
        pos.day_cash = pos.day_commission = 0.0
        return pos

    def new_order(self, **kw: Any) -> Order:
        order = Order(perm_id=self.next_perm_id, **kw)
        self.next_perm_id += 1
        self.next_order_id = max(self.next_order_id, order.order_id + 1)
        self.orders[order.perm_id] = order
        self.by_key[(order.client_id, order.order_id)] = order.perm_id
        return order

    def apply_fill(self, order: Order, qty: float, price: float, venue: str) -> Execution:
        """Execute ``qty`` of ``order`` at ``price``: order, position and execution log."""
        order.avg_fill_price = (order.avg_fill_price * order.filled + price * qty) / (order.filled + qty)
        order.filled += qty
        order.last_fill_price = price
        if order.remaining <= 1e-9:
            order.status = "Filled"
            order.completed_time = ib_time()
            order.completed_status = "Filled Size: " + str(order.filled)
        spec = order.contract
        pos = self.position(order.account, spec)
        signed = qty if order.action == "BUY" else -qty
        realized = self._apply_to_position(pos, signed, price)
        commission = commission_for(spec, qty, price)
        net = None if realized is None else realized - commission
        pos.day_cash += signed * price * spec.factor
        pos.day_commission += commission
        if net is not None:
            pos.realized += net
        self._exec_seq += 1
        ex = Execution(
            exec_id=f"0000f4a1.{order.perm_id:08x}.{self._exec_seq:02d}.01", time=time.time(),
            order=order, venue=venue, side="BOT" if order.action == "BUY" else "SLD", shares=qty,
            price=price, cum_qty=order.filled, avg_price=order.avg_fill_price,
            commission=commission, realized_pnl=net,
        )
        self.executions.append(ex)
        return ex

    @staticmethod
    def _apply_to_position(pos: Position, signed_qty: float, price: float) -> float | None:
        """Update quantity/average price; return realized money if the fill reduced the position."""
        old = pos.qty
        new = old + signed_qty
        realized: float | None = None
        if old == 0 or (old > 0) == (signed_qty > 0):
            pos.avg_price = (abs(old) * pos.avg_price + abs(signed_qty) * price) / abs(new)
        else:
            closed = min(abs(old), abs(signed_qty))
            realized = closed * (price - pos.avg_price) * (1 if old > 0 else -1) * pos.contract.factor
            if abs(new) < 1e-9:
                new, pos.avg_price = 0.0, 0.0
            elif (new > 0) != (old > 0):  # flipped through zero
                pos.avg_price = price
        pos.qty = new
        return realized

    # ---------------------------------------------------------------- P&L

    def pnl_single(self, account: str, con_id: int) -> dict[str, float]:
        """position, dailyPnL, unrealizedPnL, realizedPnL, value of one position (true, not lagged).

        daily = value now - the day's opening value - cash paid for today's fills -
        today's commissions; unrealized = qty x (mark - avg price) x factor;
        realized = today's closing fills net of their commissions.
        """
        pos = self.positions.get((account, con_id))
        if pos is None:
            return {"position": 0.0, "daily": 0.0, "unrealized": 0.0, "realized": 0.0, "value": 0.0}
        f = pos.contract.factor
        mark = self.mark(pos.contract, pos)
        value = pos.qty * mark * f
        daily = value - pos.start_qty * pos.start_mark * f - pos.day_cash - pos.day_commission
        return {
            "position": pos.qty, "daily": round(daily, 6),
            "unrealized": round(pos.qty * (mark - pos.avg_price) * f, 6),
            "realized": round(pos.realized, 6), "value": round(value, 6),
        }

    def pnl(self, account: str) -> dict[str, float]:
        """dailyPnL, unrealizedPnL, realizedPnL summed over the account's positions."""
        total = {"daily": 0.0, "unrealized": 0.0, "realized": 0.0}
        for (acct, con_id) in self.positions:
            if acct == account:
                single = self.pnl_single(acct, con_id)
                for key in total:
                    total[key] += single[key]
        return {k: round(v, 6) for k, v in total.items()}
