"""MetaTrader 5 records (as the link's plain dicts) as the adapter interface's
instruments, positions, working orders and executions.

An MT5 instrument is a symbol of the terminal: its kind is the symbol's calculation
mode (forex, cfd, future, stock, option, bond), its key `kind:SYMBOL`. Positions carry
their ticket (hedging accounts hold several per symbol; netting accounts one, whose
ticket is kept too, so each close is sent `position=<ticket>` and can only reduce that
very position). Volumes are lots, as MT5 counts them.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ...config import MT5Terminal
from ..base import Execution, Instrument, Position, WorkingOrder

# ENUM_SYMBOL_CALC_MODE -> the instrument's kind.
CALC_KINDS = {
    0: "forex", 5: "forex", 1: "future", 33: "future", 2: "cfd", 3: "cfd", 4: "cfd",
    32: "stock", 38: "stock", 34: "option", 36: "option", 37: "bond", 39: "bond", 64: "collateral",
}
ORDER_TYPE_BUY, ORDER_TYPE_SELL = 0, 1
BUY_TYPES = frozenset({0, 2, 4, 6})  # BUY, BUY_LIMIT, BUY_STOP, BUY_STOP_LIMIT
POSITION_TYPE_BUY = 0
DEAL_TYPE_BUY, DEAL_TYPE_SELL = 0, 1
ORDER_TYPE_NAMES = {0: "buy", 1: "sell", 2: "buy limit", 3: "sell limit", 4: "buy stop", 5: "sell stop",
                    6: "buy stop limit", 7: "sell stop limit", 8: "close by"}


def dec(value: Any) -> Decimal:
    """An MT5 double as a Decimal, as written (0.1 -> 0.1, 100.0 -> 100)."""
    if value is None:
        return Decimal(0)
    result = Decimal(repr(float(value)))
    return result.quantize(Decimal(1)) if result == result.to_integral_value() else result.normalize()


def _number_text(value: Any) -> str:
    return format(dec(value), "f") if value else ""


def instrument_of(symbol: str, info: dict[str, Any]) -> Instrument:
    """The symbol as an Instrument, from its symbol_info record."""
    return Instrument(
        kind=CALC_KINDS.get(int(info.get("trade_calc_mode", -1)), "symbol"), symbol=symbol,
        exchange=str(info.get("exchange") or ""), currency=str(info.get("currency_profit") or ""),
        multiplier=_number_text(info.get("trade_contract_size")),
    )


def position_of(record: dict[str, Any], account: str, instrument: Instrument) -> Position:
    volume = dec(record["volume"])
    return Position(account=account, instrument=instrument,
                    quantity=volume if record["type"] == POSITION_TYPE_BUY else -volume,
                    avg_cost=dec(record["price_open"]), ticket=str(record["ticket"]))


def order_of(record: dict[str, Any], account: str, instrument: Instrument, terminal: MT5Terminal) -> WorkingOrder:
    initial = dec(record["volume_initial"])
    comment = str(record.get("comment") or "")
    magic = int(record.get("magic") or 0)
    return WorkingOrder(
        account=account, order_id=str(record["ticket"]), instrument=instrument,
        side="BUY" if record["type"] in BUY_TYPES else "SELL", quantity=initial,
        filled=initial - dec(record["volume_current"]), strategy=terminal.strategy_of(magic=magic, comment=comment),
        client_ref=comment, owner=str(magic), native_id=str(record["ticket"]),
    )


def is_trade_deal(record: dict[str, Any]) -> bool:
    """A buy or sell deal (not a balance, credit, commission, ... entry)."""
    return record["type"] in (DEAL_TYPE_BUY, DEAL_TYPE_SELL)


def execution_of(record: dict[str, Any], account: str, instrument: Instrument) -> Execution:
    # time: MT5 stamps deals in trade-server time, whose offset from UTC the API does
    # not tell (brokers use UTC+2/+3 and change it with DST): a guessed UTC time could
    # put a deal on the wrong side of a leg's start. None counts the deal as possibly
    # recent; the runs cap what such fills may start by the position report, which at
    # MT5 is the terminal's live state and does not trail the fills.
    return Execution(
        account=account, instrument_key=instrument.key, side="BUY" if record["type"] == DEAL_TYPE_BUY else "SELL",
        quantity=dec(record["volume"]), order_id=str(record["order"]), client_ref=str(record.get("comment") or ""),
        exec_id=str(record["ticket"]), time=None,
    )
