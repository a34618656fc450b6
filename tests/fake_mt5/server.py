"""Serving the fake terminal: the mt5linux-style rpyc bridge and a control port.

**Security**: the bridge is an rpyc *classic* server (``SlaveService``), exactly
what mt5linux's ``mt5server.exe`` / ``python -m mt5linux`` runs: whoever can
connect may execute arbitrary Python in this process.  Both ports bind to
127.0.0.1 unless told otherwise; never expose them.

* :class:`BridgeServer` runs ``rpyc.utils.server.ThreadedServer(SlaveService)``
  in a process where ``sys.modules["MetaTrader5"]`` is the fake module, so
  ``conn.execute("import MetaTrader5 as mt5")`` and then ``conn.eval("mt5....")``
  (what mt5linux does) reach the fake unmodified.  :meth:`BridgeServer.drop`
  closes the listener and every connection, refuses connections for a while
  (the port is closed: connect gets ECONNREFUSED) and listens again on the same port.
* :class:`ControlServer` serves :class:`~.control.Control` on a second port over
  a plain (non-classic) rpyc service exposing only the control methods.  It is
  not affected by dropping the bridge, so a test can drop and restore it.

The server must run in its own process (``python -m tests.fake_mt5``, see
:mod:`.harness`): registering a fake ``MetaTrader5`` in the test process would
let code that tries ``import MetaTrader5`` first find it without the bridge,
and would make records unpicklable-on-Linux behaviour disappear.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any

import rpyc
from rpyc.core import SlaveService
from rpyc.utils.helpers import classpartial
from rpyc.utils.server import ThreadedServer

from .control import Control
from .terminal import FakeTerminal

log = logging.getLogger("tests.fake_mt5")
#: rpyc logs every connection dropped mid-request at ERROR; here that is the point.
_RPYC_LOG = logging.getLogger("tests.fake_mt5.rpyc")
_RPYC_LOG.setLevel(logging.CRITICAL)


def install_module(terminal: FakeTerminal) -> None:
    """Make ``import MetaTrader5`` in this process return the fake backed by ``terminal``."""
    sys.modules["MetaTrader5"] = terminal.module()


class BridgeServer:
    """The classic rpyc server mt5linux clients talk to; can be dropped and restored."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._lock = threading.Lock()
        self._server: ThreadedServer | None = None
        self._closed = False
        #: How many times the bridge was dropped (tests assert on it).
        self.drops = 0

    def start(self) -> int:
        """Start listening; returns the port (chosen by the OS when 0 was asked)."""
        with self._lock:
            self._listen()
        return self.port

    def _listen(self) -> None:
        # Called with self._lock held.  A restart after a drop rebinds the same port;
        # SO_REUSEADDR (reuse_addr) lets it despite connections in TIME_WAIT.
        deadline = time.monotonic() + 5.0
        while True:
            try:
                server = ThreadedServer(
                    SlaveService, hostname=self.host, port=self.port, reuse_addr=True,
                    logger=_RPYC_LOG, protocol_config={"allow_pickle": True})
                break
            except OSError:
                if self.port == 0 or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.port = server.port
        self._server = server
        # Listen before returning, so READY (or a restored bridge) is true at once;
        # ThreadedServer.start() would only listen inside its thread.
        server._listen()
        threading.Thread(target=server.start, name=f"mt5-bridge-{self.port}",
                         daemon=True).start()

    def drop(self, refuse_for: float = 0.0) -> None:
        """Close all connections and the listener; listen again after ``refuse_for`` s."""
        with self._lock:
            server, self._server = self._server, None
            self.drops += 1
        if server is not None:
            server.close()
        log.info("bridge dropped; refusing connections for %.2fs", refuse_for)

        def restore() -> None:
            time.sleep(refuse_for)
            with self._lock:
                if not self._closed and self._server is None:
                    self._listen()

        if refuse_for > 0:
            threading.Thread(target=restore, name="mt5-bridge-restore", daemon=True).start()
        else:
            restore()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            server, self._server = self._server, None
        if server is not None:
            server.close()


class ControlService(rpyc.Service):
    """Exposes :class:`Control` methods as ``conn.root.<name>(...)``.

    Arguments arrive by value when they are scalars or tuples; lists and dicts
    from the client arrive as netrefs and are copied here.  Snapshots and call
    logs go back as JSON text so the client gets plain values, not netrefs.
    """

    ALLOWED = {
        "set_price", "set_market_closed", "set_partial_fill", "set_trade_mode", "set_symbol",
        "requote_next", "fail_next", "set_no_money", "set_autotrading", "set_connected",
        "stall_next_send", "drop_next_send", "drop_bridge", "add_position", "add_order",
        "set_balance", "set_account_mode", "reset",
    }

    def __init__(self, control: Control) -> None:
        super().__init__()
        self._control = control

    def exposed_call(self, name: str, args: Any = (), kwargs: Any = ()) -> Any:
        """Run ``Control.<name>(*args, **kwargs)``; ``kwargs`` is a tuple of pairs."""
        if name not in self.ALLOWED:
            raise ValueError(f"unknown control {name!r}; available: {sorted(self.ALLOWED)}")
        plain_args = [_plain(a) for a in args]
        plain_kwargs = {str(k): _plain(v) for k, v in kwargs}
        return getattr(self._control, name)(*plain_args, **plain_kwargs)

    def exposed_snapshot(self) -> str:
        return json.dumps(self._control.snapshot())

    def exposed_calls(self) -> str:
        return json.dumps(self._control.calls())

    def exposed_bridge_drops(self) -> int:
        bridge = self._control.bridge
        return bridge.drops if isinstance(bridge, BridgeServer) else 0


def _plain(value: Any) -> Any:
    # A list or dict sent by the client is a netref; copy it into local values.
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value]


class ControlServer:
    """Serves one :class:`Control` on its own port, independent of the bridge."""

    def __init__(self, control: Control, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = ThreadedServer(
            classpartial(ControlService, control), hostname=host, port=port, reuse_addr=True,
            logger=_RPYC_LOG, protocol_config={"allow_public_attrs": False})
        self.port = self._server.port

    def start(self) -> int:
        self._server._listen()  # listening before start() returns, as for the bridge
        threading.Thread(target=self._server.start, name=f"mt5-control-{self.port}",
                         daemon=True).start()
        return self.port

    def close(self) -> None:
        self._server.close()
