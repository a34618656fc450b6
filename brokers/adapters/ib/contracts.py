"""IB contracts as instruments, and the contract a closing order is sent on.

A position's contract, as IB reports it, carries only the listing exchange (empty for
derivatives, FX and crypto), so an order placed on it as it comes is refused (error
321). A closing order therefore goes on the contract qualified by conId alone
(`qualifyContracts(Contract(conId=...))`): IB fills in every field, the exchange
included, and the order can only be on that very contract. Nothing is ever looked up
again by symbol (a symbol names many instruments: the AAPL stock, its options, ...).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..base import Instrument, Position, Unclosable

#: What a closing market order is sent for, and in which unit the position (and so the
#: order) is counted. CASH is sized in the base currency on IDEALPRO.
CLOSABLE_SEC_TYPES: dict[str, str] = {
    "STK": "shares", "FUT": "contracts", "OPT": "contracts", "FOP": "contracts",
    "CASH": "units of the base currency", "CFD": "units", "CRYPTO": "coins", "BOND": "bonds",
}
#: Where IB wants FX orders routed (the only venue the API trades spot FX on).
FX_EXCHANGE = "IDEALPRO"
#: Security types IB's SMART router takes, should the qualified contract name no exchange.
SMART_ROUTED = frozenset({"STK", "OPT", "CFD", "BOND"})
#: Crypto at IB takes market orders as immediate-or-cancel only; what an IOC leaves
#: unfilled is sent again by the next close round (the run counts fills, not orders).
TIF = {"CRYPTO": "IOC"}


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if value == 0 or value >= 1.7e308:
            return ""
        return f"{value:g}"
    return str(value)


def instrument_of(contract: Any) -> Instrument:
    """The whole contract as an Instrument (conId as the broker key)."""
    return Instrument(
        kind=contract.secType or "", symbol=contract.symbol or "",
        broker_key=str(contract.conId) if contract.conId else "",
        exchange=contract.exchange or "", primary_exchange=contract.primaryExchange or "",
        currency=contract.currency or "", multiplier=_text(contract.multiplier),
        expiry=contract.lastTradeDateOrContractMonth or "", strike=_text(contract.strike),
        right=contract.right or "", local_symbol=contract.localSymbol or "",
        trading_class=contract.tradingClass or "",
    )


def refuse_before_qualifying(position: Position, *, today: str | None = None) -> None:
    """Raise Unclosable for what no closing order can be sent for, without asking IB."""
    inst = position.instrument
    if inst.kind not in CLOSABLE_SEC_TYPES:
        raise Unclosable(f"{inst.label}: security type {inst.kind or '(none)'} is not closed at market by the "
                         f"kill switch (it closes {', '.join(CLOSABLE_SEC_TYPES)}); close it by hand")
    if not inst.broker_key:
        raise Unclosable(f"{inst.label}: IB reported no conId for this position, so the contract cannot be "
                         "identified; it is not traded as another instrument")
    today = today or datetime.now(UTC).strftime("%Y%m%d")
    expiry = inst.expiry[:8]
    if inst.kind in ("FUT", "OPT", "FOP") and len(expiry) == 8 and expiry < today:
        raise Unclosable(f"{inst.label}: expired on {expiry}; it no longer trades (IB settles or "
                         "exercises it)")


def closing_contract(qualified: Any, position: Position) -> Any:
    """The qualified contract, checked to be the position's own, routed where it trades."""
    if qualified is None:
        raise Unclosable(f"{position.instrument.label}: IB has no security definition for conId "
                         f"{position.instrument.broker_key} (error 200); nothing was sent")
    if str(qualified.conId) != position.instrument.broker_key:
        raise Unclosable(f"{position.instrument.label}: IB qualified conId {qualified.conId} instead; "
                         "nothing was sent")
    if qualified.secType == "CASH":
        qualified.exchange = FX_EXCHANGE
    elif not qualified.exchange and qualified.secType in SMART_ROUTED:
        # Same contract (by conId), routed by IB's smart router: only the route is chosen here.
        qualified.exchange = "SMART"
    if not qualified.exchange:
        raise Unclosable(f"{position.instrument.label}: IB gave no exchange to route the closing order to")
    return qualified
