"""Interactive Brokers through ib_async (the maintained continuation of ib_insync).

Split by concern: `session` (one API session, checked requests, pacing),
`contracts` (IB contracts as instruments; the qualified contract a closing order
goes on), `trades` (reads and closing orders), `cancels` (global and order-by-order
cancels), `figures` (the automatic breakers' inputs: P&L, priced positions, orders). Guarantees, in short:
- every read is fresh and checked against the connection: a dropped session is
  "unknown", never "flat";
- a closing order is a market order on the position's own contract, qualified by
  conId (STK, FUT, OPT, FOP, CASH on IDEALPRO in base currency, CFD, CRYPTO, BOND);
  anything else is Unclosable, never traded as another instrument;
- reqGlobalCancel is not sent while the kill switch's own closing orders are working
  on the gateway (cancels.py).
"""

from __future__ import annotations

from typing import Any

from ...config import IBConnection
from ..base import BrokerAdapter
from .cancels import CancelMixin
from .figures import FiguresMixin
from .session import SessionMixin
from .trades import TradesMixin


class IBAdapter(FiguresMixin, TradesMixin, CancelMixin, SessionMixin, BrokerAdapter):
    """One API session to one TWS / IB Gateway (opened on first use, closed by close())."""

    kind = "ib"

    def __init__(self, connection: IBConnection, *, client_id: int | None = None,
                 persistent: bool = True) -> None:
        self._init_session(connection, client_id, persistent)
        self._last_open: tuple[float, list[Any]] | None = None

    def close(self) -> None:
        SessionMixin.close(self)


__all__ = ["IBAdapter"]
