"""One API session to one TWS / IB Gateway, and requests that are checked against it.

ib_async empties its cached orders and positions when the socket drops, so an empty
answer on a dead connection would read as "flat": every request here is checked
against the connection afterwards and raises BrokerError(retryable=True) instead.
Messages are throttled by ib_async to `max_messages_per_second` (40 by default) over a
1.1 s window, under IB's 50 messages per second per session.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from decimal import Decimal
from typing import Any

from ...config import IBConnection
from ..base import BrokerError

logger = logging.getLogger("brokers.ib")

CLIENT_ID_IN_USE = 326

# Open sessions of this process by (host, port, client id); a Celery worker or the
# sweep loop reuses its session from run to run.
_SESSIONS: dict[tuple[str, int, int], Any] = {}


def dec(value: Any) -> Decimal:
    """An IB number as a Decimal: IB's "unset" double and None are 0; 10.0 -> 10."""
    try:
        if value is None or float(value) >= 1.7e308:  # IB's "unset" double
            return Decimal(0)
    except (TypeError, ValueError):
        return Decimal(0)
    result = Decimal(str(value))
    return result.quantize(Decimal(1)) if result == result.to_integral_value() else result.normalize()


class SessionMixin:
    """The connection half of IBAdapter."""

    connection: IBConnection
    client_id: int
    persistent: bool

    def _init_session(self, connection: IBConnection, client_id: int | None, persistent: bool) -> None:
        self.connection = connection
        self.client_id = connection.client_id if client_id is None else client_id
        # The process keeps its own sessions open between runs; a borrowed owner
        # session (another client's id) is always closed, so its owner can return.
        self.persistent = persistent
        self._ib: Any = None
        self._order_errors: dict[int, list[tuple[int, str]]] = defaultdict(list)
        self._session_errors: list[tuple[int, str]] = []

    def _on_error(self, req_id: int, code: int, message: str, contract: Any) -> None:
        if req_id > 0:
            self._order_errors[req_id].append((code, message))
        else:
            self._session_errors.append((code, message))

    def _session(self) -> Any:
        if self._ib is not None and self._ib.isConnected():
            return self._ib
        self.close()
        key = (self.connection.host, self.connection.port, self.client_id)
        cached = _SESSIONS.get(key) if self.persistent else None
        if cached is not None and cached.isConnected():
            self._ib = cached
            cached.errorEvent += self._on_error
            return cached
        from ib_async import IB
        from ib_async.ib import StartupFetchNONE

        # ib_async's sync calls run the event loop of the current thread; a worker thread
        # (the sweep loop in tests) has none yet.
        try:
            asyncio.get_event_loop()
        except RuntimeError:
            asyncio.set_event_loop(asyncio.new_event_loop())
        ib = IB()
        ib.client.MaxRequests = self.connection.max_messages_per_second
        # A 10% longer window: messages sent in one burst reach the gateway spread out,
        # and a gateway counting on arrival must still never see more than 50 in a second.
        ib.client.RequestsInterval = 1.1
        ib.errorEvent += self._on_error
        self._session_errors.clear()
        self.connection.secrets()  # a deployment that names secrets must provide them
        try:
            ib.connect(self.connection.host, self.connection.port, clientId=self.client_id,
                       timeout=self.connection.connect_timeout_seconds, fetchFields=StartupFetchNONE)
        except BaseException as exc:  # ConnectionRefused, TimeoutError, client id in use...
            try:
                ib.disconnect()
            except Exception:  # noqa: BLE001 - already broken
                pass
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            in_use = any(code == CLIENT_ID_IN_USE for code, _ in self._session_errors)
            what = "client id is in use" if in_use else f"{type(exc).__name__}: {exc}"
            raise BrokerError(
                f"cannot connect to IB {self.connection.name} at {self.connection.host}:"
                f"{self.connection.port} as client {self.client_id}: {what}", retryable=True
            ) from None
        if not ib.isConnected():
            raise BrokerError(f"IB {self.connection.name}: connection refused for client {self.client_id}",
                              retryable=True)
        self._ib = ib
        if self.persistent:
            _SESSIONS[key] = ib
        return ib

    def _checked(self, ib: Any, what: str) -> None:
        if not ib.isConnected():
            self.close()
            _SESSIONS.pop((self.connection.host, self.connection.port, self.client_id), None)
            raise BrokerError(f"IB {self.connection.name}: connection lost during {what}; "
                              "the broker's state is unknown until re-read", retryable=True)

    def _request(self, what: str, awaitable_factory, timeout: float | None = None) -> Any:
        ib = self._session()
        timeout = timeout or self.connection.confirm_timeout_seconds
        try:
            result = ib.run(asyncio.wait_for(awaitable_factory(ib), timeout))
        except (ConnectionError, OSError) as exc:
            self.close()
            raise BrokerError(f"IB {self.connection.name}: {what} failed: {exc}", retryable=True) from None
        except TimeoutError:
            self._checked(ib, what)
            raise BrokerError(f"IB {self.connection.name}: no answer to {what} within {timeout:g}s",
                              retryable=True) from None
        self._checked(ib, what)
        return result

    def _sleep(self, seconds: float) -> None:
        self._session().sleep(seconds)

    def close(self) -> None:
        ib, self._ib = self._ib, None
        if ib is not None:
            ib.errorEvent -= self._on_error
        if ib is not None and self.persistent and ib.isConnected():
            return  # kept for the next run in this process (connecting costs ~0.5 s)
        if ib is not None:
            _SESSIONS.pop((self.connection.host, self.connection.port, self.client_id), None)
            try:
                ib.disconnect()
            except Exception:  # noqa: BLE001 - closing a broken session
                logger.debug("disconnect failed", exc_info=True)
