"""The paper broker's figures for the automatic breakers, and its simulated outage.

P&L since a day start D, per instrument, from the broker's own records:

    P&L = qty_now x last - qty_at_D x price_at_D - cash paid for the fills since D

where qty_at_D = qty_now - the signed fills since D: realized plus unrealized at the
last price, as IB counts its daily P&L. The paper broker keeps only the last price, so
the price at D comes from `marks` (killswitch.breakers.feeds.day_marks: the first price
the breakers saw on or after D). A strategy's P&L is that of its own fills since D,
marked at the last price (positions are kept per account and instrument, so a
strategy owns only what it traded). An instrument without a last price has no P&L:
the figure is unknown, never zero.

An account can be taken offline (`manage.py paper offline DU111111`): every read and
order of the adapter, and every order placed with the broker, is refused until it is
online again, as a lost connection to a real broker would.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal

from django.db.models import Q
from django.utils import timezone

from ..models import (
    PaperAccount,
    PaperFill,
    PaperOrder,
    PaperOrderStatus,
    PaperPosition,
    PaperPrice,
)
from .base import (
    CLOSE_REF_PREFIX,
    AccountPnL,
    BrokerError,
    BrokerScope,
    Instrument,
    MarkedPosition,
    OrderRecord,
    PnLLine,
)


def set_offline(code: str, offline: bool = True) -> PaperAccount:
    """Take the account's broker connection down (or bring it back)."""
    account = PaperAccount.objects.filter(code=code).first()
    if account is None:
        raise BrokerError(f"paper account {code!r} does not exist", retryable=False)
    account.offline_since = (account.offline_since or timezone.now()) if offline else None
    account.save(update_fields=["offline_since"])
    return account


def offline_message(code: str) -> str | None:
    """Why the account cannot be reached now, or None when it can."""
    since = PaperAccount.objects.filter(code=code).values_list("offline_since", flat=True).first()
    if since is None:
        return None
    return f"paper account {code} is offline since {since:%H:%M:%S} UTC (manage.py paper online {code})"


def require_online(code: str) -> None:
    """Raises BrokerError(retryable=True) while the account is offline."""
    message = offline_message(code)
    if message:
        raise BrokerError(message, retryable=True)


def _key(symbol: str, asset_class: str) -> str:
    return Instrument(kind=asset_class, symbol=symbol).key


class PaperFiguresMixin:
    """The breaker inputs of PaperAdapter (brokers.adapters.base: optional reads)."""

    def connection_state(self, *, account: str) -> tuple[bool, str]:
        try:
            message = offline_message(account)
        except Exception as exc:  # the paper broker is the database: unreachable is disconnected
            return False, f"paper broker unreachable: {type(exc).__name__}"
        return message is None, message or ""

    def pnl(self, *, account: str, day_start: datetime,
            marks: Callable[[dict[str, Decimal]], dict[str, Decimal]] | None = None) -> AccountPnL:
        require_online(account)
        prices = {_key(s, a): p for s, a, p in PaperPrice.objects.values_list("symbol", "asset_class", "price")}
        held = {_key(p.symbol, p.asset_class): (p.symbol, p.asset_class, p.quantity)
                for p in PaperPosition.objects.filter(account__code=account)}
        flows: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])  # signed qty, cash
        by_strategy: dict[str, dict[str, list[Decimal]]] = defaultdict(lambda: defaultdict(
            lambda: [Decimal(0), Decimal(0)]))
        names: dict[str, tuple[str, str]] = {k: (s, a) for k, (s, a, _) in held.items()}
        for symbol, asset_class, side, strategy, qty, price in (
                PaperFill.objects.filter(order__account__code=account, created_at__gte=day_start)
                .values_list("order__symbol", "order__asset_class", "order__side", "order__strategy",
                             "quantity", "price")):
            key = _key(symbol, asset_class)
            names[key] = (symbol, asset_class)
            signed = qty if side == "BUY" else -qty
            for bucket in (flows[key], by_strategy[strategy][key]):
                bucket[0] += signed
                bucket[1] += signed * price
        missing = [f"{names[k][0]} ({names[k][1]})" for k in names if k not in prices
                   and (held.get(k, (0, 0, Decimal(0)))[2] != 0 or k in flows)]
        if missing:
            raise BrokerError(f"no last price for {', '.join(sorted(missing))}: its P&L cannot be marked",
                              retryable=True)
        opening = {k: held[k][2] - flows[k][0] if k in flows else held[k][2] for k in held}
        need = {k: prices[k] for k, qty in opening.items() if qty != 0}
        marked = (marks(need) if marks else need) if need else {}
        lines, total = [], Decimal(0)
        for key, (symbol, asset_class) in sorted(names.items()):
            qty_now = held.get(key, (symbol, asset_class, Decimal(0)))[2]
            qty_open = qty_now - flows[key][0] if key in flows else qty_now
            amount = qty_now * prices[key] - qty_open * Decimal(str(marked.get(key, prices[key]))) - flows[key][1]
            lines.append(PnLLine(Instrument(kind=asset_class, symbol=symbol), amount))
            total += amount
        strategies = {name: sum((qty * prices[k] - cash for k, (qty, cash) in fills.items()), Decimal(0))
                      for name, fills in by_strategy.items() if name}
        return AccountPnL(total, tuple(lines), strategies, "paper: fills and last prices")

    def marked_positions(self, *, account: str) -> list[MarkedPosition]:
        require_online(account)
        prices = {_key(s, a): p for s, a, p in PaperPrice.objects.values_list("symbol", "asset_class", "price")}
        return [MarkedPosition(p, prices.get(p.instrument.key)) for p in self.positions(BrokerScope(account))]

    def orders_since(self, *, account: str, since: datetime) -> list[OrderRecord]:
        require_online(account)
        rows = (PaperOrder.objects.filter(account__code=account)
                .filter(Q(created_at__gte=since) | Q(status=PaperOrderStatus.REJECTED, updated_at__gte=since))
                .exclude(client_order_id__startswith=CLOSE_REF_PREFIX)
                .values_list("pk", "symbol", "asset_class", "strategy", "created_at", "status", "updated_at",
                             "reject_reason"))
        return [OrderRecord(account=account, order_id=str(pk), instrument=Instrument(kind=asset_class, symbol=symbol),
                            submitted_at=created, strategy=strategy,
                            rejected_at=updated if status == PaperOrderStatus.REJECTED else None, detail=reason)
                for pk, symbol, asset_class, strategy, created, status, updated, reason in rows]
