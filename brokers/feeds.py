"""The brokers' feed for the automatic breakers (killswitch.breakers.feeds), registered
from BrokersConfig.ready.

One feed serves every configured account through the adapters' optional reads
(brokers.adapters.base: connection_state, pnl, marked_positions, orders_since). It
keeps one adapter per broker session for the breaker process's lifetime (IB: the
connection's own `breaker_client_id`, never the runs' or the sweep's) and turns every
broker failure into an unknown fact with its message, never into a zero.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from killswitch.breakers import feeds as F

from .adapters import BREAKER, adapter_for, session_key
from .adapters.base import BrokerAdapter, BrokerError, NotSupported
from .config import brokers_config

logger = logging.getLogger("brokers")


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


class BrokerFeed(F.Feed):
    name = "brokers"

    def __init__(self) -> None:
        self._adapters: dict[str, BrokerAdapter] = {}

    def accounts(self) -> tuple[str, ...]:
        return tuple(brokers_config().accounts)

    def _adapter(self, account: str) -> BrokerAdapter:
        key = session_key(account)
        if key not in self._adapters:
            self._adapters[key] = adapter_for(account, purpose=BREAKER)
        return self._adapters[key]

    def read(self, account: str, request: F.FeedRequest) -> F.AccountFacts:
        try:
            adapter = self._adapter(account)
        except BrokerError as exc:  # an unknown account, or a broker PAPER_ONLY refuses
            return F.AccountFacts(account, brokers_config().accounts.get(account, "?"), connected=False,
                                  connection_known=False, why={"connection": exc.message, F.PNL: exc.message, F.POSITIONS: exc.message,
                                       F.ORDERS: exc.message})
        known = True
        try:
            connected, why = adapter.connection_state(account=account)
        except NotSupported as exc:  # the other facts may still be readable
            connected, why, known = True, exc.message, False
        facts = F.AccountFacts(account, adapter.kind, connected=connected, connection_known=known,
                               why={"connection": why} if why else {})
        if not connected:
            facts.why.update({F.PNL: why, F.POSITIONS: why, F.ORDERS: why})
            return facts
        facts.currency = adapter.account_currency(account=account)
        if request.day_starts:
            facts.pnl = {}
            for day in request.day_starts:
                try:
                    pnl = adapter.pnl(account=account, day_start=day, marks=self._marks(day))
                except BrokerError as exc:
                    facts.pnl, facts.why[F.PNL] = None, exc.message
                    break
                facts.pnl[day] = F.PnL(
                    total=float(pnl.total),
                    instruments=tuple(F.InstrumentPnL(x.instrument.symbol, x.instrument.local_symbol, float(x.amount))
                                      for x in pnl.lines),
                    strategies=None if pnl.strategies is None else {k: float(v) for k, v in pnl.strategies.items()},
                    basis=pnl.basis, pending=tuple((i.symbol, i.local_symbol) for i in pnl.pending))
        if request.positions:
            try:
                facts.positions = [
                    F.PositionFact(symbol=m.position.instrument.symbol, quantity=float(m.position.quantity),
                                   price=_float(m.price), local_symbol=m.position.instrument.local_symbol,
                                   kind=m.position.instrument.kind,
                                   multiplier=float(m.position.instrument.multiplier or 1),
                                   currency=m.position.instrument.currency)
                    for m in adapter.marked_positions(account=account)]
            except BrokerError as exc:
                facts.why[F.POSITIONS] = exc.message
        if request.orders_since is not None:
            try:
                facts.orders = [
                    F.OrderFact(order_id=o.order_id, symbol=o.instrument.symbol, submitted_at=o.submitted_at.timestamp(),
                                strategy=o.strategy, local_symbol=o.instrument.local_symbol,
                                rejected_at=o.rejected_at.timestamp() if o.rejected_at else None)
                    for o in adapter.orders_since(account=account, since=request.orders_since)]
            except BrokerError as exc:
                facts.why[F.ORDERS] = exc.message
        return facts

    @staticmethod
    def _marks(day):
        def marks(prices: dict[str, Decimal]) -> dict[str, Decimal]:
            try:
                found = F.day_marks(day, {k: float(v) for k, v in prices.items()})
            except Exception as exc:  # Redis: the P&L is unknown this round
                raise BrokerError(f"the day's opening marks cannot be read: {type(exc).__name__}: {exc}",
                                  retryable=True) from None
            return {k: Decimal(str(v)) for k, v in found.items()}

        return marks

    def close(self) -> None:
        for adapter in self._adapters.values():
            try:
                adapter.close()
            except Exception:
                logger.warning("breaker feed: closing an adapter failed", exc_info=True)
        self._adapters.clear()
