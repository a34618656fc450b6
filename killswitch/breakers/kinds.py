"""Each kind's figure, computed from what one round read (pure: no I/O).

A figure is a "badness" in the unit of the breaker's limit — a loss, a drawdown, a
count of orders or rejects in a window, units or money of a position, seconds without
a connection, of stale data or since the last heartbeat — and the breaker is breached
when it is above its limit. `Reading.text` says the figure and its window as a person
reads it ("P&L -1,250.00 USD since 00:00 UTC"), for the reason of a trip.
What cannot be computed is `unknown` with the reason; a dead-man's switch that never
had a heartbeat (or none since it last tripped) is `idle`, like an exchange's
cancel-after timer that nobody set.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from killswitch import domain as L

from . import config as C
from .feeds import ORDERS, PNL, POSITIONS, AccountFacts, matches


@dataclass(frozen=True)
class ProcessInputs:
    """What one connected trading process reported (killswitch_client registration)."""

    client_id: str
    name: str
    account: str
    strategy: str
    market_data: dict[str, float]  # SYMBOL -> unix seconds, already bounded by the arrival time


@dataclass(frozen=True)
class Renewal:
    at: float  # unix seconds (Redis time)
    by: str


@dataclass
class World:
    """Everything one round read."""

    now: datetime
    facts: dict[str, AccountFacts] = field(default_factory=dict)
    accounts: tuple[str, ...] = ()  # every account some feed serves
    down_since: dict[str, datetime] = field(default_factory=dict)
    processes: list[ProcessInputs] | None = None
    processes_why: str = ""
    renewals: dict[str, Renewal] | None = None
    renewals_why: str = ""


@dataclass(frozen=True)
class Reading:
    value: float | None  # the figure in the limit's unit; None when unknown or idle
    text: str  # the figure and its window, for people
    limit_text: str
    unknown: str = ""  # why the figure cannot be computed
    idle: str = ""  # a dead-man's switch not armed
    display: float | None = None  # the figure as people read it (a P&L keeps its sign)
    memory: dict | None = None  # what the engine keeps for the next round (the day's peak)


class Unknown(Exception):
    """The figure cannot be computed; the message says why."""


def money(amount: float, currency: str) -> str:
    return f"{amount:,.2f} {currency}".strip()


def number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.4g}"


def accounts_in(breaker: C.Breaker, world: World) -> list[str]:
    return [breaker.scope.key] if breaker.scope.kind == L.ACCOUNT else list(world.accounts)


def _facts(breaker: C.Breaker, world: World, fact: str) -> list[AccountFacts]:
    found = []
    for account in accounts_in(breaker, world):
        facts = world.facts.get(account)
        if facts is None:
            raise Unknown(f"no broker feed serves account {account}")
        if getattr(facts, fact) is None:
            raise Unknown(f"{account} ({facts.broker}): {facts.why.get(fact) or facts.why.get('connection') or 'no ' + fact}")
        found.append(facts)
    return found


def _currency(breaker: C.Breaker, currencies: set[str]) -> str:
    if breaker.currency and currencies - {breaker.currency}:
        raise Unknown(f"figures in {', '.join(sorted(currencies))}, the limit is in {breaker.currency}")
    if len(currencies) > 1:
        raise Unknown(f"figures in {', '.join(sorted(currencies))} cannot be added without FX rates")
    return next(iter(currencies), breaker.currency or "")


def scope_pnl(breaker: C.Breaker, world: World) -> tuple[float, str, str]:
    """(P&L since the trading-day start, currency, how it is counted) of the scope."""
    day = breaker.trading_day.start_of_day(world.now)
    total, currencies, bases = 0.0, set(), set()
    ref = breaker.scope
    for facts in _facts(breaker, world, PNL):
        pnl = facts.pnl.get(day)
        if pnl is None:
            raise Unknown(f"{facts.account} ({facts.broker}): no P&L since {day:%Y-%m-%d %H:%M} UTC")
        currencies.add(facts.currency)
        if pnl.basis:
            bases.add(pnl.basis)
        if ref.kind == L.SYMBOL:
            waiting = [s for s, local in pnl.pending if matches(s, local, ref.key)]
            if waiting:
                raise Unknown(f"{facts.account} ({facts.broker}): no P&L report for {', '.join(waiting)} yet")
            total += sum(i.amount for i in pnl.instruments if matches(i.symbol, i.local_symbol, ref.key))
        elif ref.kind == L.STRATEGY:
            if pnl.strategies is None:
                raise Unknown(f"{facts.account} ({facts.broker}) does not attribute P&L to strategies")
            total += pnl.strategies.get(ref.key, 0.0)
        else:
            total += pnl.total
    return total, _currency(breaker, currencies), "; ".join(sorted(bases))


def _since(breaker: C.Breaker, world: World) -> str:
    day = breaker.trading_day.start_of_day(world.now)
    return f"since {breaker.trading_day.text} ({day:%Y-%m-%d})"


def max_loss(breaker: C.Breaker, world: World, memory: dict) -> Reading:
    pnl, ccy, basis = scope_pnl(breaker, world)
    note = f" [{basis}]" if basis else ""
    return Reading(-pnl, f"P&L {money(pnl, ccy)} {_since(breaker, world)}{note}", money(-breaker.limit, ccy),
                   display=pnl)


def max_drawdown(breaker: C.Breaker, world: World, memory: dict) -> Reading:
    pnl, ccy, basis = scope_pnl(breaker, world)
    day = breaker.trading_day.start_of_day(world.now).isoformat()
    # The day starts at 0: the peak is never below it, so a day that only lost has a
    # drawdown equal to its loss.
    peak = max(0.0, pnl, memory.get("peak", 0.0) if memory.get("day") == day else 0.0)
    drawdown = peak - pnl
    kept = {"day": day, "peak": peak}
    where = f"from the day's peak P&L {money(peak, ccy)} (P&L {money(pnl, ccy)}) {_since(breaker, world)}"
    if breaker.fractional:
        fraction = drawdown / peak if peak > 0 else 0.0
        return Reading(fraction, f"drawdown {fraction:.1%} {where}", f"{breaker.limit:.1%}", display=fraction,
                       memory=kept)
    return Reading(drawdown, f"drawdown {money(drawdown, ccy)} {where}", money(breaker.limit, ccy),
                   display=drawdown, memory=kept)


def _in_scope(breaker: C.Breaker, symbol: str, local_symbol: str, strategy: str) -> bool:
    ref = breaker.scope
    if ref.kind == L.SYMBOL:
        return matches(symbol, local_symbol, ref.key)
    if ref.kind == L.STRATEGY:
        return strategy == ref.key
    return True


def _count(breaker: C.Breaker, world: World, *, rejects: bool) -> Reading:
    since = world.now.timestamp() - breaker.window_seconds
    count = 0
    for facts in _facts(breaker, world, ORDERS):
        for order in facts.orders:
            when = order.rejected_at if rejects else order.submitted_at
            if when is not None and when >= since and _in_scope(breaker, order.symbol, order.local_symbol,
                                                                 order.strategy):
                count += 1
    what = "rejects" if rejects else "orders"
    return Reading(float(count), f"{count} {what} in the last {breaker.window_seconds:g} s",
                   f"{number(breaker.limit)} {what}", display=float(count))


def order_rate(breaker: C.Breaker, world: World, memory: dict) -> Reading:
    return _count(breaker, world, rejects=False)


def reject_rate(breaker: C.Breaker, world: World, memory: dict) -> Reading:
    return _count(breaker, world, rejects=True)


def _exposure(breaker: C.Breaker, world: World, *, notional: bool) -> Reading:
    if breaker.scope.kind == L.STRATEGY:
        raise Unknown("brokers keep positions per account and instrument, not per strategy")
    net: dict[str, float] = defaultdict(float)
    gross, currencies = 0.0, set()
    for facts in _facts(breaker, world, POSITIONS):
        for p in facts.positions:
            if breaker.symbols and not any(matches(p.symbol, p.local_symbol, s) for s in breaker.symbols):
                continue
            if not _in_scope(breaker, p.symbol, p.local_symbol, ""):
                continue
            if notional:
                if p.price is None:
                    raise Unknown(f"{facts.account}: no price for {p.symbol}")
                currencies.add(p.currency or facts.currency)
                amount = p.quantity * p.price * p.multiplier
            else:
                amount = p.quantity
            net[p.symbol.upper()] += amount
            gross += abs(amount)
    ccy = _currency(breaker, currencies) if notional else ""
    fmt: Callable[[float], str] = (lambda v: money(v, ccy)) if notional else number
    what = "notional" if notional else "position"
    if breaker.per == C.PER_ACCOUNT:
        return Reading(gross, f"gross {what} {fmt(gross)} in {breaker.scope_label}", fmt(breaker.limit),
                       display=gross)
    symbol, amount = max(net.items(), key=lambda kv: abs(kv[1]), default=("", 0.0))
    text = f"{symbol} {what} {fmt(amount)}" if symbol else f"no {what} in {breaker.scope_label}"
    return Reading(abs(amount), text, f"{fmt(breaker.limit)} per symbol", display=abs(amount))


def max_position(breaker: C.Breaker, world: World, memory: dict) -> Reading:
    return _exposure(breaker, world, notional=False)


def max_notional(breaker: C.Breaker, world: World, memory: dict) -> Reading:
    return _exposure(breaker, world, notional=True)


def broker_disconnect(breaker: C.Breaker, world: World, memory: dict) -> Reading:
    worst, worst_text = 0.0, "every broker connection in scope is up"
    for account in accounts_in(breaker, world):
        facts = world.facts.get(account)
        if facts is None:
            raise Unknown(f"no broker feed serves account {account}")
        if not facts.connection_known:
            raise Unknown(f"{account} ({facts.broker}): {facts.why.get('connection') or 'connection state unknown'}")
        if facts.connected:
            continue
        since = world.down_since.get(account, world.now)
        seconds = max(0.0, (world.now - since).total_seconds())
        if seconds >= worst:
            why = facts.why.get("connection", "")
            worst, worst_text = seconds, (f"{account} ({facts.broker}) disconnected for {seconds:.1f} s"
                                          + (f": {why}" if why else ""))
    return Reading(worst, worst_text, f"{breaker.limit:g} s grace", display=worst)


def stale_data(breaker: C.Breaker, world: World, memory: dict) -> Reading:
    if world.processes is None:
        raise Unknown(world.processes_why or "trading processes' reports cannot be read")
    ref, now = breaker.scope, world.now.timestamp()
    wanted = (ref.key,) if ref.kind == L.SYMBOL else breaker.symbols
    worst: tuple[float, str, str] | None = None
    for process in world.processes:
        if ref.kind == L.ACCOUNT and process.account != ref.key:
            continue
        if ref.kind == L.STRATEGY and process.strategy != ref.key:
            continue
        for symbol, ts in process.market_data.items():
            if wanted and not any(matches(symbol, "", w) for w in wanted):
                continue
            age = max(0.0, now - ts)
            if worst is None or age > worst[0]:
                worst = (age, symbol, process.name)
    if worst is None:
        which = f" for {', '.join(wanted)}" if wanted else ""
        raise Unknown(f"no connected trading process in {ref} reports market data{which}")
    age, symbol, name = worst
    return Reading(age, f"{symbol} market data {age:.1f} s old (at {name})", f"{breaker.limit:g} s", display=age)


def dead_man(breaker: C.Breaker, world: World, memory: dict) -> Reading:
    if world.renewals is None:
        raise Unknown(world.renewals_why or "dead-man renewals cannot be read")
    renewal = world.renewals.get(breaker.name)
    limit = f"{breaker.limit:g} s"
    last_trip = memory.get("last_trip_at", 0.0)
    if renewal is None or renewal.at <= last_trip:
        why = ("not armed: waiting for its first heartbeat" if renewal is None
               else "not armed since it tripped: waiting for a new heartbeat")
        return Reading(None, why, limit, idle=why)
    age = max(0.0, world.now.timestamp() - renewal.at)
    return Reading(age, f"no heartbeat for {age:.1f} s (last from {renewal.by})", limit, display=age)


FIGURES: dict[str, Callable[[C.Breaker, World, dict], Reading]] = {
    C.MAX_LOSS: max_loss, C.MAX_DRAWDOWN: max_drawdown, C.ORDER_RATE: order_rate, C.REJECT_RATE: reject_rate,
    C.MAX_POSITION: max_position, C.MAX_NOTIONAL: max_notional, C.BROKER_DISCONNECT: broker_disconnect,
    C.STALE_DATA: stale_data, C.DEAD_MAN: dead_man,
}


def read(breaker: C.Breaker, world: World, memory: dict) -> Reading:
    """The breaker's figure now. Never raises for missing data: that is `unknown`."""
    try:
        return FIGURES[breaker.kind](breaker, world, memory)
    except Unknown as exc:
        currencies = {f.currency for a in accounts_in(breaker, world) if (f := world.facts.get(a)) and f.currency}
        return Reading(None, "unknown", limit_text(breaker, next(iter(currencies)) if len(currencies) == 1 else ""),
                       unknown=str(exc))


def limit_text(breaker: C.Breaker, currency: str = "") -> str:
    """The limit as people read it, without a figure (an unknown one, or none yet)."""
    if breaker.kind in (C.ORDER_RATE, C.REJECT_RATE):
        return f"{number(breaker.limit)} in {breaker.window_seconds:g} s"
    if breaker.kind in (C.BROKER_DISCONNECT, C.STALE_DATA, C.DEAD_MAN):
        return f"{breaker.limit:g} s"
    if breaker.fractional:
        return f"{breaker.limit:.1%}"
    if breaker.kind == C.MAX_POSITION:
        return number(breaker.limit)
    return money(-breaker.limit if breaker.kind == C.MAX_LOSS else breaker.limit, breaker.currency or currency)


def needs(breakers: tuple[C.Breaker, ...], now: datetime) -> tuple[frozenset[datetime], bool, datetime | None]:
    """(trading-day starts for P&L, positions needed, orders since) for this round."""
    days = frozenset(b.trading_day.start_of_day(now) for b in breakers if b.kind in (C.MAX_LOSS, C.MAX_DRAWDOWN))
    positions = any(b.kind in (C.MAX_POSITION, C.MAX_NOTIONAL) for b in breakers)
    windows = [b.window_seconds for b in breakers if b.kind in (C.ORDER_RATE, C.REJECT_RATE)]
    return days, positions, (now - timedelta(seconds=max(windows)) if windows else None)
