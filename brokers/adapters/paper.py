"""The paper broker: a persistent simulated broker in the database, and its adapter.

The module-level functions are the broker's own "servers" (what `manage.py paper`
and demos drive): accounts, orders (working, partially filled, filled, cancelled,
rejected), positions, and fills against a last price per symbol. They know nothing
of the kill switch: like a real broker, the paper broker accepts whatever it is
sent (so the sweep has something to catch) and never blocks a cancel or a close.

An instrument is a symbol and an asset class (stock by default): an AAPL stock and an
AAPL option are different instruments, with their own prices and positions.

Matching rules, kept simple and deterministic:
- a market order fills at once, in full, at the instrument's last price; with no last
  price it is rejected ("no price for SYM");
- a limit order rests; it fills when `fill()` is called or when `set_price()` moves
  the last price through its limit (at the limit price);
- placing an order with a `client_order_id` already used returns that order
  unchanged (idempotent placement, which the runs rely on);
- position reports can be held (`hold_position_reports`): the adapter then reports
  positions as they were at that moment, as IB's position reports trail its fills,
  while orders and fills are reported at once.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from ..models import (
    PAPER_WORKING,
    AssetClass,
    PaperAccount,
    PaperFill,
    PaperOrder,
    PaperOrderStatus,
    PaperPosition,
    PaperPrice,
)
from .base import (
    CANCELLED,
    DONE_CANCELLED,
    DONE_REJECTED,
    FILLED,
    FILLED_BEFORE_CANCEL,
    TOO_LATE,
    WORKING,
    BrokerAdapter,
    BrokerError,
    BrokerScope,
    CancelAllResult,
    CancelResult,
    Execution,
    Instrument,
    OrderState,
    Position,
    Unclosable,
    WorkingOrder,
)
from .paper_figures import PaperFiguresMixin, offline_message, require_online


class PaperError(ValueError):
    """A request the paper broker refuses outright (unknown account, bad quantity)."""


def _decimal(value: object, name: str) -> Decimal:
    try:
        result = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise PaperError(f"{name} {value!r} is not a number") from None
    if not result.is_finite():
        raise PaperError(f"{name} {value!r} is not a finite number")
    return result


# --- The broker ------------------------------------------------------------------------


def ensure_account(code: str) -> PaperAccount:
    account, _ = PaperAccount.objects.get_or_create(code=code)
    return account


def get_account(code: str) -> PaperAccount:
    account = PaperAccount.objects.filter(code=code).first()
    if account is None:
        raise PaperError(f"paper account {code!r} does not exist")
    return account


def asset_class_of(value: str | None) -> str:
    """A valid asset class (default stock). Raises PaperError naming the valid ones."""
    value = (value or AssetClass.STOCK).lower()
    if value not in AssetClass.values:
        raise PaperError(f"asset class {value!r} is not one of {', '.join(AssetClass.values)}")
    return value


def last_price(symbol: str, asset_class: str = AssetClass.STOCK) -> Decimal | None:
    row = PaperPrice.objects.filter(symbol=symbol.upper(), asset_class=asset_class).first()
    return row.price if row else None


def set_price(symbol: str, price: object, asset_class: str = AssetClass.STOCK) -> list[PaperOrder]:
    """Set the last price of an instrument; fills the resting limit orders it crosses.
    Returns the orders that filled."""
    symbol, asset_class = symbol.upper(), asset_class_of(asset_class)
    price = _decimal(price, "price")
    if price <= 0:
        raise PaperError(f"price {price} must be positive")
    filled: list[PaperOrder] = []
    with transaction.atomic():
        PaperPrice.objects.update_or_create(symbol=symbol, asset_class=asset_class,
                                            defaults={"price": price, "updated_at": timezone.now()})
        crossing = PaperOrder.objects.select_for_update().filter(
            symbol=symbol, asset_class=asset_class, order_type="LMT", status__in=PAPER_WORKING
        ).filter(Q(side="BUY", limit_price__gte=price) | Q(side="SELL", limit_price__lte=price))
        for order in crossing:
            _fill(order, order.remaining, order.limit_price)
            filled.append(order)
    return filled


def place_order(*, account: str, symbol: str, side: str, quantity: object, order_type: str = "LMT",
                limit_price: object | None = None, strategy: str = "",
                client_order_id: str | None = None, asset_class: str = AssetClass.STOCK) -> PaperOrder:
    """Accept an order. Raises PaperError for an unknown account or a malformed order;
    an order the market cannot take (market order without a price, a fund at market)
    is stored as rejected."""
    side, order_type, symbol = side.upper(), order_type.upper(), symbol.upper()
    asset_class = asset_class_of(asset_class)
    if side not in ("BUY", "SELL"):
        raise PaperError(f"side {side!r} must be BUY or SELL")
    if order_type not in ("LMT", "MKT"):
        raise PaperError(f"order type {order_type!r} must be LMT or MKT")
    qty = _decimal(quantity, "quantity")
    if qty <= 0:
        raise PaperError(f"quantity {qty} must be positive")
    limit = None
    if order_type == "LMT":
        if limit_price is None:
            raise PaperError("a limit order needs a limit price")
        limit = _decimal(limit_price, "limit price")
    if not symbol or " " in symbol:
        raise PaperError(f"symbol {symbol!r} is not valid")
    if client_order_id:
        existing = PaperOrder.objects.filter(client_order_id=client_order_id).first()
        if existing is not None:
            return existing
    acct = get_account(account)
    if acct.offline_since is not None:
        raise PaperError(offline_message(acct.code))
    try:
        with transaction.atomic():
            order = PaperOrder.objects.create(
                account=acct, client_order_id=client_order_id or None, strategy=strategy, symbol=symbol,
                asset_class=asset_class, side=side, order_type=order_type, quantity=qty, limit_price=limit,
            )
            if order_type == "MKT":
                price = last_price(symbol, asset_class)
                reason = ("funds trade at the end-of-day NAV, not at market" if asset_class == AssetClass.FUND
                          else f"no price for {symbol}" if price is None else "")
                if reason:
                    order.status = PaperOrderStatus.REJECTED
                    order.reject_reason = reason
                    order.save(update_fields=["status", "reject_reason"])
                else:
                    _fill(order, qty, price)
            elif (price := last_price(symbol, asset_class)) is not None and (
                (side == "BUY" and limit >= price) or (side == "SELL" and limit <= price)
            ):
                _fill(order, qty, limit)
    except IntegrityError:
        # Two placements with the same client_order_id raced: the other one won.
        existing = PaperOrder.objects.filter(client_order_id=client_order_id).first()
        if existing is None:
            raise
        return existing
    return order


def fill(order_id: int, quantity: object | None = None, price: object | None = None) -> PaperOrder:
    """Fill a working order (all of its remainder by default) at `price`, its limit, or the last price."""
    with transaction.atomic():
        order = PaperOrder.objects.select_for_update().filter(pk=order_id).first()
        if order is None:
            raise PaperError(f"order {order_id} does not exist")
        if order.status not in PAPER_WORKING:
            raise PaperError(f"order {order_id} is {order.status}, not working")
        qty = order.remaining if quantity is None else min(_decimal(quantity, "quantity"), order.remaining)
        if qty <= 0:
            raise PaperError(f"quantity {qty} must be positive")
        if price is None:
            price = (order.limit_price if order.limit_price is not None
                     else last_price(order.symbol, order.asset_class))
        if price is None:
            raise PaperError(f"no price for {order.symbol}; set one with `paper price`")
        _fill(order, qty, _decimal(price, "price"))
    return order


def cancel(order_id: int) -> tuple[str, PaperOrder]:
    """Cancel one order. Returns (outcome, order): cancelled, filled_before_cancel (part
    had filled, the rest is cancelled) or too_late (already filled or rejected)."""
    with transaction.atomic():
        order = PaperOrder.objects.select_for_update().filter(pk=order_id).first()
        if order is None:
            raise PaperError(f"order {order_id} does not exist")
        if order.status in PAPER_WORKING:
            order.status = PaperOrderStatus.CANCELLED
            order.updated_at = timezone.now()
            order.save(update_fields=["status", "updated_at"])
            return (FILLED_BEFORE_CANCEL if order.filled_quantity > 0 else CANCELLED), order
        if order.status == PaperOrderStatus.CANCELLED:
            return (FILLED_BEFORE_CANCEL if order.filled_quantity > 0 else CANCELLED), order
        return TOO_LATE, order


def _fill(order: PaperOrder, qty: Decimal, price: Decimal) -> None:
    """Execute `qty` of `order` at `price` (inside the caller's transaction)."""
    now = timezone.now()
    total = order.filled_quantity + qty
    order.avg_fill_price = ((order.avg_fill_price or 0) * order.filled_quantity + price * qty) / total
    order.filled_quantity = total
    order.status = PaperOrderStatus.FILLED if total >= order.quantity else PaperOrderStatus.PARTIALLY_FILLED
    order.updated_at = now
    order.save(update_fields=["avg_fill_price", "filled_quantity", "status", "updated_at"])
    PaperFill.objects.create(order=order, quantity=qty, price=price, created_at=now)
    position, _ = PaperPosition.objects.select_for_update().get_or_create(
        account_id=order.account_id, symbol=order.symbol, asset_class=order.asset_class
    )
    signed = qty if order.side == "BUY" else -qty
    old = position.quantity
    new = old + signed
    if old == 0 or (old > 0) == (signed > 0):
        position.avg_cost = (abs(old) * position.avg_cost + qty * price) / abs(new)
    elif new == 0:
        position.avg_cost = Decimal(0)
    elif (new > 0) != (old > 0):  # flipped through zero
        position.avg_cost = price
    position.quantity = new
    position.updated_at = now
    position.save()


def set_position(*, account: str, symbol: str, quantity: object, avg_cost: object,
                 asset_class: str = AssetClass.STOCK) -> PaperPosition:
    """Overwrite a position (demo seeding, tests): no fill is recorded."""
    acct = get_account(account)
    position, _ = PaperPosition.objects.update_or_create(
        account=acct, symbol=symbol.upper(), asset_class=asset_class_of(asset_class),
        defaults={"quantity": _decimal(quantity, "quantity"), "avg_cost": _decimal(avg_cost, "avg cost"),
                  "updated_at": timezone.now()},
    )
    return position


def hold_position_reports(account: str) -> None:
    """From now on the adapter reports `account`'s positions as they are at this moment
    (later fills are not in them) until release_position_reports()."""
    PaperAccount.objects.filter(pk=get_account(account).pk, reports_held_at__isnull=True).update(
        reports_held_at=timezone.now())


def release_position_reports(account: str) -> None:
    PaperAccount.objects.filter(pk=get_account(account).pk).update(reports_held_at=None)


def instrument(symbol: str, asset_class: str) -> Instrument:
    return Instrument(kind=asset_class, symbol=symbol)


# --- The adapter ------------------------------------------------------------------------


def _scoped_orders(scope: BrokerScope):
    # Paper instruments have no local symbol: a symbol scope is the symbol itself.
    qs = PaperOrder.objects.filter(account__code=scope.account, status__in=PAPER_WORKING)
    if scope.strategy is not None:
        qs = qs.filter(strategy=scope.strategy)
    if scope.symbol is not None:
        qs = qs.filter(symbol=scope.symbol.upper())
    return qs


def _working(order: PaperOrder, account: str) -> WorkingOrder:
    return WorkingOrder(
        account=account, order_id=str(order.pk), instrument=instrument(order.symbol, order.asset_class),
        side=order.side,
        quantity=order.quantity, filled=order.filled_quantity, strategy=order.strategy,
        client_ref=order.client_order_id or "",
    )


def _state(order: PaperOrder) -> OrderState:
    status = {
        PaperOrderStatus.FILLED: FILLED, PaperOrderStatus.CANCELLED: DONE_CANCELLED,
        PaperOrderStatus.REJECTED: DONE_REJECTED,
    }.get(order.status, WORKING)
    return OrderState(order_id=str(order.pk), client_ref=order.client_order_id or "", status=status,
                      quantity=order.quantity, filled=order.filled_quantity,
                      avg_price=order.avg_fill_price, detail=order.reject_reason)


class PaperAdapter(PaperFiguresMixin, BrokerAdapter):
    """The paper broker through the common interface. The database is the broker, so
    every read is authoritative and a global cancel is one UPDATE. While an account is
    offline (paper_figures.set_offline) everything is refused, retryably."""

    kind = "paper"
    atomic_cancels = True

    def _account(self, code: str) -> PaperAccount:
        try:
            account = get_account(code)
        except PaperError as exc:
            raise BrokerError(str(exc), retryable=False) from None
        require_online(code)
        return account

    def working_orders(self, scope: BrokerScope) -> list[WorkingOrder]:
        self._account(scope.account)
        return [_working(o, scope.account) for o in _scoped_orders(scope).order_by("id")]

    def positions(self, scope: BrokerScope) -> list[Position]:
        account = self._account(scope.account)
        qs = PaperPosition.objects.filter(account=account)
        if scope.symbol is not None:
            qs = qs.filter(symbol=scope.symbol.upper())
        rows = {(p.symbol, p.asset_class): (p.quantity, p.avg_cost) for p in qs}
        if account.reports_held_at is not None:
            # Held reports: the position as it was then (fills since are not reported yet).
            later = PaperFill.objects.filter(order__account=account, created_at__gt=account.reports_held_at)
            if scope.symbol is not None:
                later = later.filter(order__symbol=scope.symbol.upper())
            for symbol, asset_class, side, qty in later.values_list(
                    "order__symbol", "order__asset_class", "order__side", "quantity"):
                held, cost = rows.get((symbol, asset_class), (Decimal(0), Decimal(0)))
                rows[(symbol, asset_class)] = (held - (qty if side == "BUY" else -qty), cost)
        return [Position(scope.account, instrument(symbol, asset_class), qty, cost)
                for (symbol, asset_class), (qty, cost) in sorted(rows.items()) if qty != 0]

    def cancel_order(self, order: WorkingOrder) -> CancelResult:
        require_online(order.account)
        try:
            outcome, row = cancel(int(order.order_id))
        except PaperError as exc:
            raise BrokerError(str(exc), retryable=False) from None
        return CancelResult(order, outcome, row.filled_quantity,
                            "" if outcome != TOO_LATE else f"order was already {row.status}")

    def cancel_all(self, scope: BrokerScope, orders: list[WorkingOrder],
                   *, global_scope: bool = False) -> CancelAllResult:
        """One transaction: every listed order still working is cancelled in one UPDATE;
        the others are reported as they are now (filled -> too late)."""
        require_online(scope.account)
        ids = [int(o.order_id) for o in orders]
        results: list[CancelResult] = []
        now = timezone.now()
        with transaction.atomic():
            current: dict[int, tuple[str, Decimal]] = {}
            for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
                chunk = ids[start:start + 900]
                current.update({
                    pk: (status, filled) for pk, status, filled in PaperOrder.objects.select_for_update()
                    .filter(pk__in=chunk).values_list("pk", "status", "filled_quantity")
                })
                PaperOrder.objects.filter(pk__in=chunk, status__in=PAPER_WORKING).update(
                    status=PaperOrderStatus.CANCELLED, updated_at=now
                )
        for order in orders:
            status, filled = current.get(int(order.order_id), (PaperOrderStatus.CANCELLED, order.filled))
            if status in PAPER_WORKING or status == PaperOrderStatus.CANCELLED:
                results.append(CancelResult(order, FILLED_BEFORE_CANCEL if filled > 0 else CANCELLED, filled))
            else:
                results.append(CancelResult(order, TOO_LATE, filled, f"order was already {status}"))
        return CancelAllResult(results, global_cancel=global_scope)

    def settle(self, orders: list[WorkingOrder]) -> list[CancelResult]:
        for account in {o.account for o in orders}:
            require_online(account)
        rows = {str(o.pk): o for o in PaperOrder.objects.filter(pk__in=[int(x.order_id) for x in orders])}
        results = []
        for order in orders:
            row = rows.get(order.order_id)
            if row is None or row.status == PaperOrderStatus.CANCELLED:
                filled = row.filled_quantity if row else order.filled
                results.append(CancelResult(order, FILLED_BEFORE_CANCEL if filled > 0 else CANCELLED, filled))
            else:
                results.append(CancelResult(order, TOO_LATE, row.filled_quantity, f"order was already {row.status}"))
        return results

    def close_position(self, position: Position, *, quantity: Decimal, client_ref: str) -> OrderState:
        require_online(position.account)
        asset_class = position.instrument.kind
        if asset_class == AssetClass.FUND:
            raise Unclosable(f"{position.instrument.label}: fund shares are redeemed at the end-of-day NAV, "
                             "not sold at market; redeem them by hand")
        if asset_class not in AssetClass.values:
            raise Unclosable(f"{position.instrument.label}: unknown paper asset class {asset_class!r}")
        side = "SELL" if position.quantity > 0 else "BUY"
        try:
            order = place_order(account=position.account, symbol=position.symbol, side=side,
                                quantity=quantity, order_type="MKT", strategy="killswitch",
                                client_order_id=client_ref, asset_class=asset_class)
        except PaperError as exc:
            raise BrokerError(str(exc), retryable=False) from None
        return _state(order)

    def find_order(self, *, account: str, client_ref: str) -> OrderState | None:
        require_online(account)
        order = PaperOrder.objects.filter(client_order_id=client_ref, account__code=account).first()
        return _state(order) if order else None

    def executions(self, *, account: str, since: datetime) -> list[Execution]:
        require_online(account)
        fills = (PaperFill.objects.filter(order__account__code=account, created_at__gte=since)
                 .select_related("order").order_by("id"))
        return [Execution(account=account, instrument_key=instrument(f.order.symbol, f.order.asset_class).key,
                          side=f.order.side, quantity=f.quantity, order_id=str(f.order_id),
                          client_ref=f.order.client_order_id or "", exec_id=str(f.pk), time=f.created_at)
                for f in fills]
