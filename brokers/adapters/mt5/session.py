"""One session with one MetaTrader 5 terminal, for one of its accounts, and reads that
are checked against it.

- The link (bridge.py) is opened on first use and `initialize()`d; a terminal whose
  module lost its initialization (the bridge process restarted: every call answers
  None with "No IPC connection") is initialized again once, then the call repeated.
- A terminal is logged into one account at a time. The session acts only while it is
  logged into the adapter's account: checked after initialize, after every listing and
  before every order_send (a read of another account's book must never be taken for
  this one's). It logs in itself only when the terminal's `password_env` is set.
- A call answered None is a failure, never "nothing": its last_error is raised as a
  BrokerError with the code's name; a broken link is BrokerError(retryable=True), the
  terminal's state unknown until re-read (never flat).
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from ...config import MT5Terminal
from ..base import BrokerError
from .bridge import Link, LinkFailed, LinkLost, ModuleLink, open_link
from .retcodes import NO_IPC, terminal_error

logger = logging.getLogger("brokers.mt5")

ACCOUNT_TRADE_MODES = {0: "demo", 1: "contest", 2: "real"}

# The terminal path the MetaTrader5 module of this process was initialized with (the
# module is one IPC session per process: another terminal needs a shutdown first).
_native_path: list[str | None] = [None]


class ReplyLost(Exception):
    """order_send left, and its answer did not come back: it may have executed."""


class SessionMixin:
    """The connection half of MT5Adapter."""

    terminal: MT5Terminal
    account: str

    def _init_session(self, terminal: MT5Terminal, account: str) -> None:
        if account not in terminal.accounts:
            raise BrokerError(f"account {account} is not one of MT5 terminal {terminal.name}'s accounts",
                              retryable=False)
        self.terminal, self.account = terminal, account
        self._link_obj: Link | None = None
        self._symbols: dict[str, dict[str, Any]] = {}
        self._account_info: dict[str, Any] = {}

    @property
    def _where(self) -> str:
        return f"MT5 {self.terminal.name} (login {self.account})"

    # --- the link ----------------------------------------------------------------------
    def _link(self) -> Link:
        if self._link_obj is not None:
            return self._link_obj
        t = self.terminal
        try:
            link = open_link(transport=t.transport, host=t.host, port=t.port, timeout=t.timeout_seconds)
        except LinkLost as exc:
            raise BrokerError(f"{self._where}: {exc}", retryable=True) from None
        except LinkFailed as exc:
            raise BrokerError(f"{self._where}: {exc}", retryable=False) from None
        self._link_obj = link
        try:
            self._initialize(link)
        except BaseException:
            self.close()
            raise
        return link

    def _initialize(self, link: Link) -> None:
        """initialize() the module (logging in when a password is configured) and check
        that the terminal is logged into this account. Raises BrokerError."""
        t = self.terminal
        try:
            password = t.password()
        except ImproperlyConfigured as exc:
            raise BrokerError(f"{self._where}: {exc}", retryable=False) from None
        kwargs: dict[str, Any] = {}
        if password:
            kwargs = {"login": int(self.account), "password": password}
            if t.server:
                kwargs["server"] = t.server
        args: tuple[Any, ...] = ()
        if isinstance(link, ModuleLink):
            args = (t.path,) if t.path else ()
            if _native_path[0] is not None and _native_path[0] != t.path:
                self._raw(link.call, "shutdown")  # this process' module served another terminal
        if self._raw(link.call, "initialize", *args, **kwargs) is not True:
            raise self._failure("initialize", link)
        if isinstance(link, ModuleLink):
            _native_path[0] = t.path
        self._check_account(link, initialized=True)

    def _check_account(self, link: Link | None = None, *, initialized: bool = False) -> dict[str, Any]:
        """account_info(), which must be this account's. Raises BrokerError naming the
        login the terminal is on otherwise (not retryable: a person logs it in). A module
        that lost its initialization meanwhile is initialized again (once)."""
        link = link or self._link()
        info = self._raw(link.record, "account_info")
        if info is None and not initialized and int(self._raw(link.call, "last_error")[0]) == NO_IPC:
            self._initialize(link)
            return self._account_info
        if info is None:
            raise self._failure("account_info", link)
        if str(info.get("login")) != self.account:
            hint = "" if self.terminal.password_env else " (or set password_env so the kill switch logs it in)"
            raise BrokerError(f"{self._where}: the terminal is logged into account {info.get('login')}, not "
                              f"{self.account}; log it into {self.account}{hint}. Nothing was sent.",
                              retryable=False)
        self._account_info = info
        return info

    def _raw(self, method: Any, fn: str, *args: Any, **kwargs: Any) -> Any:
        """One link call; a broken link is BrokerError(retryable=True) and is dropped."""
        try:
            return method(fn, *args, **kwargs)
        except LinkLost as exc:
            self.close()
            raise BrokerError(f"{self._where}: connection lost during {fn} ({exc}); the terminal's state is "
                              "unknown until re-read", retryable=True) from None
        except LinkFailed as exc:
            raise BrokerError(f"{self._where}: {fn} failed: {exc}", retryable=True) from None

    def _failure(self, fn: str, link: Link) -> BrokerError:
        code, message = self._raw(link.call, "last_error")
        err = terminal_error(int(code), str(message))
        return BrokerError(f"{self._where}: {fn} failed: {err}, {message!r}", retryable=err.retryable)

    def _read(self, kind: str, fn: str, *args: Any, **kwargs: Any) -> Any:
        """A module call whose None answer is an error (raised with its last_error);
        initializes the module again once when it lost its initialization."""
        link = self._link()
        for attempt in (1, 2):
            found = self._raw(getattr(link, kind), fn, *args, **kwargs)
            if found is not None:
                return found
            code, message = self._raw(link.call, "last_error")
            if int(code) == NO_IPC and attempt == 1:
                logger.warning("%s: the module lost its initialization (bridge restarted?); initializing again",
                               self._where)
                self._initialize(link)
                continue
            err = terminal_error(int(code), str(message))
            raise BrokerError(f"{self._where}: {fn} failed: {err}, {message!r}", retryable=err.retryable)
        raise AssertionError("unreachable")

    def order_send(self, request: dict[str, Any]) -> dict[str, Any]:
        """order_send. Raises ReplyLost when the request may have executed without an answer,
        BrokerError when the terminal refused to take it (nothing executed)."""
        self._check_account()
        link = self._link()
        for attempt in (1, 2):
            try:
                result = link.record("order_send", request)
            except (LinkLost, LinkFailed) as exc:
                self.close()
                raise ReplyLost(str(exc)) from None
            if result is not None:
                return result
            code, message = self._raw(link.call, "last_error")
            err = terminal_error(int(code), str(message))
            if err.code == NO_IPC and attempt == 1:  # not initialized: nothing was sent
                self._initialize(link)
                continue
            raise BrokerError(f"{self._where}: order_send refused the request: {err}, {message!r}",
                              retryable=err.retryable)
        raise AssertionError("unreachable")

    # --- what every step needs --------------------------------------------------------------
    def account_mode(self) -> str:
        """demo, contest or real (account_info().trade_mode), read now."""
        return ACCOUNT_TRADE_MODES.get(int(self._check_account().get("trade_mode", -1)), "unknown")

    def symbol_info(self, symbol: str) -> dict[str, Any]:
        """symbol_info(symbol), read once per adapter. Raises BrokerError when the terminal
        does not know it."""
        if symbol not in self._symbols:
            self._symbols[symbol] = self._read("record", "symbol_info", symbol)
        return self._symbols[symbol]

    def quote(self, symbol: str) -> dict[str, Any]:
        """The current quote. A symbol outside Market Watch has none until selected."""
        link = self._link()
        tick = self._raw(link.record, "symbol_info_tick", symbol)
        if tick is None:
            self._raw(link.call, "symbol_select", symbol, True)
            tick = self._read("record", "symbol_info_tick", symbol)
        return tick

    def close(self) -> None:
        link, self._link_obj = self._link_obj, None
        if link is not None:
            link.close()
