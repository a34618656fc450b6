"""TWS API wire protocol of the fake gateway: message ids, framing, field encoding.

Written from the protocol as ib_async 2.1.0 encodes and decodes it at
:data:`SERVER_VERSION`; no client code is reused.  No library implements the
*server* side of the TWS protocol (ibapi and ib_async are clients), hence the
hand-written framing.

Framing: after the ``"API\\0"`` + length-prefixed ``"vMIN..MAX"`` handshake,
every message is a 4-byte big-endian length followed by NUL-terminated fields.
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

#: Protocol version announced in the handshake; the newest ib_async 2.1.0 speaks.
SERVER_VERSION = 178
#: Messages per second per connection that IB tolerates before error 100.
PACING_LIMIT = 50
#: Length of the sliding pacing window.  Slightly under a second because receive
#: times jitter by a few ms: ib_async's own throttle (45 msgs, then the next 45
#: exactly 1.000 s later by its clock) must never be flagged.
PACING_WINDOW = 0.95
#: IB's "unset double"; sent where TWS sends it (e.g. realizedPNL of an opening fill).
UNSET_DOUBLE = 1.7976931348623157e308

# Messages sent by the client (only the ones we understand).
IN_REQ_MKT_DATA = 1
IN_CANCEL_MKT_DATA = 2
IN_PLACE_ORDER = 3
IN_CANCEL_ORDER = 4
IN_REQ_OPEN_ORDERS = 5
IN_REQ_ACCOUNT_UPDATES = 6
IN_REQ_EXECUTIONS = 7
IN_REQ_IDS = 8
IN_REQ_CONTRACT_DETAILS = 9
IN_REQ_AUTO_OPEN_ORDERS = 15
IN_REQ_ALL_OPEN_ORDERS = 16
IN_REQ_MANAGED_ACCTS = 17
IN_REQ_CURRENT_TIME = 49
IN_REQ_GLOBAL_CANCEL = 58
IN_REQ_MARKET_DATA_TYPE = 59
IN_REQ_POSITIONS = 61
IN_REQ_ACCOUNT_SUMMARY = 62
IN_CANCEL_ACCOUNT_SUMMARY = 63
IN_CANCEL_POSITIONS = 64
IN_START_API = 71
IN_REQ_POSITIONS_MULTI = 74
IN_CANCEL_POSITIONS_MULTI = 75
IN_REQ_ACCOUNT_UPDATES_MULTI = 76
IN_CANCEL_ACCOUNT_UPDATES_MULTI = 77
IN_REQ_PNL = 92
IN_CANCEL_PNL = 93
IN_REQ_PNL_SINGLE = 94
IN_CANCEL_PNL_SINGLE = 95
IN_REQ_COMPLETED_ORDERS = 99

# Messages sent by the server.
OUT_TICK_PRICE = 1
OUT_ORDER_STATUS = 3
OUT_ERROR = 4
OUT_OPEN_ORDER = 5
OUT_ACCOUNT_VALUE = 6
OUT_PORTFOLIO_VALUE = 7
OUT_ACCOUNT_UPDATE_TIME = 8
OUT_NEXT_VALID_ID = 9
OUT_CONTRACT_DATA = 10
OUT_EXECUTION_DATA = 11
OUT_MANAGED_ACCOUNTS = 15
OUT_BOND_CONTRACT_DATA = 18
OUT_CURRENT_TIME = 49
OUT_CONTRACT_DATA_END = 52
OUT_OPEN_ORDER_END = 53
OUT_ACCOUNT_DOWNLOAD_END = 54
OUT_EXECUTION_DATA_END = 55
OUT_TICK_SNAPSHOT_END = 57
OUT_MARKET_DATA_TYPE = 58
OUT_COMMISSION_REPORT = 59
OUT_POSITION = 61
OUT_POSITION_END = 62
OUT_ACCOUNT_SUMMARY = 63
OUT_ACCOUNT_SUMMARY_END = 64
OUT_POSITION_MULTI = 71
OUT_POSITION_MULTI_END = 72
OUT_ACCOUNT_UPDATE_MULTI = 73
OUT_ACCOUNT_UPDATE_MULTI_END = 74
OUT_PNL = 94
OUT_PNL_SINGLE = 95
OUT_COMPLETED_ORDER = 101
OUT_COMPLETED_ORDERS_END = 102

#: Tick types sent for market data (ib_async maps them to bid/ask/last/close).
TICK_BID, TICK_ASK, TICK_LAST, TICK_CLOSE = 1, 2, 4, 9

NO_SECURITY_DEFINITION = "No security definition has been found for the request"


class ParseError(ValueError):
    """A client message did not have the field layout of SERVER_VERSION."""


class Reader:
    """Sequential reader over the fields of one client message (field 0 is the message id)."""

    def __init__(self, fields: list[str], start: int = 1) -> None:
        self._fields = fields
        self._pos = start

    def text(self) -> str:
        """The next field as it is; raises ParseError past the end."""
        if self._pos >= len(self._fields):
            raise ParseError(f"message too short ({len(self._fields)} fields)")
        value = self._fields[self._pos]
        self._pos += 1
        return value

    def integer(self, default: int = 0) -> int:
        """The next field as an int (``default`` when empty); raises ParseError otherwise."""
        value = self.text()
        try:
            return int(value) if value else default
        except ValueError as exc:
            raise ParseError(f"field {self._pos - 1}: {value!r} is not an int") from exc

    def number(self) -> float | None:
        """The next field as a float, None when empty; ``Infinite`` is infinity."""
        value = self.text()
        if not value:
            return None
        if value == "Infinite":
            return float("inf")
        try:
            return float(value)
        except ValueError as exc:
            raise ParseError(f"field {self._pos - 1}: {value!r} is not a float") from exc

    def flag(self) -> bool:
        return self.integer() != 0

    def skip(self, n: int) -> None:
        for _ in range(n):
            self.text()

    def left(self) -> int:
        return len(self._fields) - self._pos


def fmt(value: Any) -> str:
    """One field as TWS writes it: None empty, bools 0/1, numbers with str()."""
    if value is None:
        return ""
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "1" if value else "0"
    return str(value)


def qty_text(value: float) -> str:
    """A quantity as TWS writes a Decimal: ``5`` for whole numbers, ``0.75`` otherwise."""
    if math.isfinite(value) and value == int(value):
        return str(int(value))
    return repr(value)


def frame(fields: Iterable[Any]) -> bytes:
    payload = "".join(fmt(f) + "\0" for f in fields).encode()
    return struct.pack(">I", len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """One length-prefixed frame; raises ParseError on an absurd length."""
    (size,) = struct.unpack(">I", await reader.readexactly(4))
    if size > 10_000_000:
        raise ParseError(f"absurd message size {size}")
    return await reader.readexactly(size)


def version_ok(text: str) -> bool:
    """Does the client's ``"vMIN..MAX[ options]"`` range include SERVER_VERSION?"""
    try:
        lo, hi = text.split()[0].lstrip("v").split("..")
        return int(lo) <= SERVER_VERSION <= int(hi)
    except (ValueError, IndexError):
        return False


def ib_time(t: float | None = None) -> str:
    """``yyyymmdd hh:mm:ss UTC``: the fake's TWS runs in UTC; ib_async parses the zone."""
    return time.strftime("%Y%m%d %H:%M:%S", time.gmtime(t)) + " UTC"


def parse_filter_time(text: str) -> float:
    """Epoch seconds of an ExecutionFilter time.

    Accepts ``yyyymmdd hh:mm:ss`` (UTC, the fake TWS's zone), the same followed by
    an IANA zone (``US/Eastern``), and ``yyyymmdd-hh:mm:ss`` (UTC).  Raises
    ValueError naming the accepted forms otherwise.
    """
    text = text.strip()
    formats = ("%Y%m%d-%H:%M:%S", "%Y%m%d %H:%M:%S")
    parts = text.split(" ")
    zone: Any = UTC
    if len(parts) == 3:
        text = " ".join(parts[:2])
        try:
            zone = ZoneInfo(parts[2]) if parts[2] != "UTC" else UTC
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {parts[2]!r} in execution filter time") from exc
    for form in formats:
        try:
            return datetime.strptime(text, form).replace(tzinfo=zone).timestamp()
        except ValueError:
            continue
    raise ValueError(
        f"execution filter time {text!r} is not 'yyyymmdd hh:mm:ss [zone]' or 'yyyymmdd-hh:mm:ss'"
    )


class Conn:
    """One client connection; only touched on the gateway loop."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.client_id: int | None = None
        self.recent: deque[float] = deque()  # receive times of accepted messages, last second
        self.positions_subscribed = False
        self.account_updates: str | None = None
        self.mkt_data: dict[int, int] = {}  # reqId -> conId of streaming subscriptions
        self.pnl: dict[int, str] = {}  # reqId -> account
        self.pnl_single: dict[int, tuple[str, int]] = {}  # reqId -> (account, conId)
        self.closed = False

    def send(self, *fields: Any) -> None:
        if not self.closed:
            self.writer.write(frame(fields))

    def error(self, req_id: int, code: int, message: str) -> None:
        # version 2; advancedOrderRejectJson is present from server version 166.
        self.send(OUT_ERROR, 2, req_id, code, message, "")

    def abort(self) -> None:
        """Drop the socket at once (unsent data is lost), like a crashed gateway."""
        self.closed = True
        self.writer.transport.abort()

    def close(self) -> None:
        """Close after flushing what was already written."""
        self.closed = True
        self.writer.close()
