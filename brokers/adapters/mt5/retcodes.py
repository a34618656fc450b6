"""Every MetaTrader 5 trade return code (TRADE_RETCODE_*) and terminal error code
(last_error's RES_*), with its name and whether repeating the request can help.

Written out here because the MetaTrader5 package exists only for Windows (mt5linux's
copy of the constants has the values but not what they mean for a kill switch), and
the values are fixed by MetaQuotes (MQL5 reference, ENUM_TRADE_RETURN_CODES).

`retryable` is judged for the kill switch's own requests (removing a pending order,
a closing deal on one position ticket): True when the same request may succeed within
a run's retries (a requote, a busy server, a lost link), False when a person has to
act (AutoTrading switched off, the market closed, no money, a disabled symbol).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..base import BrokerError


@dataclass(frozen=True)
class Retcode:
    code: int
    name: str
    text: str
    retryable: bool

    def __str__(self) -> str:
        return f"{self.code} {self.name} ({self.text})"


def _codes(*rows: tuple[int, str, str, bool]) -> dict[int, Retcode]:
    return {code: Retcode(code, name, text, retryable) for code, name, text, retryable in rows}


TRADE_RETCODES: dict[int, Retcode] = _codes(
    (10004, "TRADE_RETCODE_REQUOTE", "requote", True),
    (10006, "TRADE_RETCODE_REJECT", "request rejected", False),
    (10007, "TRADE_RETCODE_CANCEL", "request canceled by trader", False),
    (10008, "TRADE_RETCODE_PLACED", "order placed", False),
    (10009, "TRADE_RETCODE_DONE", "request completed", False),
    (10010, "TRADE_RETCODE_DONE_PARTIAL", "only part of the request was completed", False),
    (10011, "TRADE_RETCODE_ERROR", "request processing error", True),
    (10012, "TRADE_RETCODE_TIMEOUT", "request canceled by timeout", True),
    (10013, "TRADE_RETCODE_INVALID", "invalid request", False),
    (10014, "TRADE_RETCODE_INVALID_VOLUME", "invalid volume in the request", False),
    (10015, "TRADE_RETCODE_INVALID_PRICE", "invalid price in the request", True),
    (10016, "TRADE_RETCODE_INVALID_STOPS", "invalid stops in the request", False),
    (10017, "TRADE_RETCODE_TRADE_DISABLED", "trade is disabled", False),
    (10018, "TRADE_RETCODE_MARKET_CLOSED", "market is closed", False),
    (10019, "TRADE_RETCODE_NO_MONEY", "there is not enough money to complete the request", False),
    (10020, "TRADE_RETCODE_PRICE_CHANGED", "prices changed", True),
    (10021, "TRADE_RETCODE_PRICE_OFF", "there are no quotes to process the request", True),
    (10022, "TRADE_RETCODE_INVALID_EXPIRATION", "invalid order expiration date in the request", False),
    (10023, "TRADE_RETCODE_ORDER_CHANGED", "order state changed", True),
    (10024, "TRADE_RETCODE_TOO_MANY_REQUESTS", "too frequent requests", True),
    (10025, "TRADE_RETCODE_NO_CHANGES", "no changes in request", False),
    (10026, "TRADE_RETCODE_SERVER_DISABLES_AT", "autotrading disabled by server", False),
    (10027, "TRADE_RETCODE_CLIENT_DISABLES_AT", "autotrading disabled by client terminal", False),
    (10028, "TRADE_RETCODE_LOCKED", "request locked for processing", True),
    (10029, "TRADE_RETCODE_FROZEN", "order or position frozen", True),
    (10030, "TRADE_RETCODE_INVALID_FILL", "invalid order filling type", False),
    (10031, "TRADE_RETCODE_CONNECTION", "no connection with the trade server", True),
    (10032, "TRADE_RETCODE_ONLY_REAL", "operation is allowed only for live accounts", False),
    (10033, "TRADE_RETCODE_LIMIT_ORDERS", "the number of pending orders has reached the limit", False),
    (10034, "TRADE_RETCODE_LIMIT_VOLUME", "the volume of orders and positions for the symbol has reached the limit",
     False),
    (10035, "TRADE_RETCODE_INVALID_ORDER", "incorrect or prohibited order type", False),
    (10036, "TRADE_RETCODE_POSITION_CLOSED", "position with the specified POSITION_IDENTIFIER has already been closed",
     False),
    (10038, "TRADE_RETCODE_INVALID_CLOSE_VOLUME", "a close volume exceeds the current position volume", False),
    (10039, "TRADE_RETCODE_CLOSE_ORDER_EXIST", "a close order already exists for a specified position", True),
    (10040, "TRADE_RETCODE_LIMIT_POSITIONS", "the number of open positions has reached the limit", False),
    (10041, "TRADE_RETCODE_REJECT_CANCEL", "the pending order activation request is rejected, the order is canceled",
     False),
    (10042, "TRADE_RETCODE_LONG_ONLY", "only long positions are allowed for the symbol", False),
    (10043, "TRADE_RETCODE_SHORT_ONLY", "only short positions are allowed for the symbol", False),
    (10044, "TRADE_RETCODE_CLOSE_ONLY", "only position closing is allowed for the symbol", False),
    # FIFO accounts close the oldest position of a symbol first: positions are listed
    # oldest first, so the next round closes the one this request had to wait for.
    (10045, "TRADE_RETCODE_FIFO_CLOSE", "position closing is allowed only by FIFO rule", True),
    (10046, "TRADE_RETCODE_HEDGE_PROHIBITED", "opposite positions on a single symbol are disabled", False),
)

PLACED, DONE, DONE_PARTIAL = 10008, 10009, 10010
SUCCESS = frozenset({PLACED, DONE, DONE_PARTIAL})
# Resent at once with a fresh quote (bounded by the terminal's requote_retries).
REQUOTES = frozenset({10004, 10020, 10021})
POSITION_CLOSED, INVALID_CLOSE_VOLUME, INVALID_FILL, INVALID = 10036, 10038, 10030, 10013
# About the terminal, not one order or ticket: every request would get the same answer.
TERMINAL_WIDE = frozenset({10026, 10027, 10031})

# last_error() codes of the MetaTrader5 module (a call answered None or False).
TERMINAL_ERRORS: dict[int, Retcode] = _codes(
    (1, "RES_S_OK", "generic success", False),
    (-1, "RES_E_FAIL", "generic fail", True),
    (-2, "RES_E_INVALID_PARAMS", "invalid arguments/parameters", False),
    (-3, "RES_E_NO_MEMORY", "no memory condition", True),
    (-4, "RES_E_NOT_FOUND", "no history", False),
    (-5, "RES_E_INVALID_VERSION", "invalid version", False),
    (-6, "RES_E_AUTH_FAILED", "authorization failed", False),
    (-7, "RES_E_UNSUPPORTED", "unsupported method", False),
    (-8, "RES_E_AUTO_TRADING_DISABLED", "auto-trading disabled", False),
    (-10000, "RES_E_INTERNAL_FAIL", "internal IPC general error", True),
    (-10001, "RES_E_INTERNAL_FAIL_SEND", "internal IPC send failed", True),
    (-10002, "RES_E_INTERNAL_FAIL_RECEIVE", "internal IPC recv failed", True),
    (-10003, "RES_E_INTERNAL_FAIL_INIT", "internal IPC initialization fail", True),
    (-10004, "RES_E_INTERNAL_FAIL_CONNECT", "internal IPC no ipc", True),
    (-10005, "RES_E_INTERNAL_FAIL_TIMEOUT", "internal timeout", True),
)
NO_IPC = -10004


def retcode(code: int) -> Retcode:
    """The trade return code `code`; an unknown one is reported as such, not retryable."""
    return TRADE_RETCODES.get(code) or Retcode(code, "TRADE_RETCODE_UNKNOWN", "a code this adapter does not know",
                                               False)


def terminal_error(code: int, message: str = "") -> Retcode:
    """A last_error() code; an unknown one is not retryable."""
    found = TERMINAL_ERRORS.get(code)
    if found is None:
        return Retcode(code, "RES_E_UNKNOWN", message or "an error code this adapter does not know", False)
    return found


def trade_error(code: int, what: str, comment: str = "") -> BrokerError:
    """The BrokerError for a trade request answered `code` (its name and meaning said)."""
    rc = retcode(code)
    server = f"; the server said {comment!r}" if comment and comment.lower() != rc.text.lower() else ""
    return BrokerError(f"{what}: MT5 answered {rc}{server}", retryable=rc.retryable)
