"""Test side: start the fake terminal as a process and steer it over its control port.

Typical use (see ``tests/fake_mt5/conftest.py`` for fixtures)::

    with FakeMT5.start(login=5012345, positions=["EURUSD:buy:0.1:1.085"]) as fake:
        mt5 = fake.mt5linux(timeout=5)          # the real mt5linux client
        mt5.initialize(login=5012345)
        fake.requote_next(3)
        ...
        assert fake.snapshot()["positions"] == []

Every control method forwards to :class:`~.control.Control` in the fake's
process and returns only when it took effect there; errors come back as the
``ValueError`` the control raised.  Nothing here imports a ``MetaTrader5`` module:
the only way to the terminal is the bridge, as on a Linux host.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import rpyc

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"


class FakeMT5:
    """A running ``python -m tests.fake_mt5`` process: its ports, pid and controls."""

    def __init__(self, proc: subprocess.Popen[str], port: int, control_port: int,
                 stderr_path: Path) -> None:
        self.proc = proc
        self.host = HOST
        self.port = port
        self.control_port = control_port
        self._stderr_path = stderr_path
        self._control = rpyc.connect(HOST, control_port, config={"sync_request_timeout": 30})

    @property
    def pid(self) -> int:
        return self.proc.pid

    # --- lifecycle ------------------------------------------------------------------------
    @classmethod
    def start(cls, *, login: int, netting: bool = False, positions: Iterable[str] = (),
              orders: Iterable[str] = (), prices: Iterable[str] = (),
              extra_args: Iterable[str] = (), ready_timeout: float = 30.0) -> FakeMT5:
        """Start the process and wait (bounded) for its READY line.

        ``positions``/``orders``/``prices`` use the command-line shapes
        (``EURUSD:buy:0.1:1.085``, ``EURUSD:buy_limit:0.1:1.07``, ``EURUSD=1.09``).

        Raises:
            RuntimeError: the process exited or did not print READY in time; the
                message carries its stderr.
        """
        argv = [sys.executable, "-m", "tests.fake_mt5", "--port", "0", "--login", str(login)]
        if netting:
            argv.append("--netting")
        for flag, values in (("--position", positions), ("--order", orders),
                             ("--price", prices)):
            for value in values:
                argv += [flag, value]
        argv += list(extra_args)
        stderr_file = tempfile.NamedTemporaryFile(prefix="fake_mt5-", suffix=".err",
                                                  delete=False)
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr_file,
                                stdin=subprocess.DEVNULL, text=True)
        stderr_file.close()
        stderr_path = Path(stderr_file.name)
        line = _read_line(proc, ready_timeout)
        if not line.startswith("READY "):
            proc.kill()
            proc.wait()
            raise RuntimeError(f"fake MT5 did not start ({argv!r}): stdout {line!r}, "
                               f"stderr {stderr_path.read_text()!r}")
        _, port, control_port = line.split()
        return cls(proc, int(port), int(control_port), stderr_path)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM the process by pid and wait for it (SIGKILL after ``timeout``)."""
        try:
            self._control.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
        self._stderr_path.unlink(missing_ok=True)
        return self.proc.returncode

    def __enter__(self) -> FakeMT5:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- clients ----------------------------------------------------------------------------
    def mt5linux(self, timeout: int = 10) -> Any:
        """A real ``mt5linux.MetaTrader5`` client connected to this fake's bridge."""
        from mt5linux import MetaTrader5

        return MetaTrader5(host=self.host, port=self.port, timeout=timeout)

    def classic(self) -> rpyc.Connection:
        """A plain ``rpyc.classic.connect`` to the bridge."""
        return rpyc.classic.connect(self.host, self.port)

    # --- controls (see tests.fake_mt5.control.Control for the semantics) -------------------
    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._control.root.call(name, args, tuple(kwargs.items()))

    def set_price(self, symbol: str, bid: float, ask: float | None = None) -> None:
        self._call("set_price", symbol, bid, ask)

    def set_market_closed(self, symbol: str, closed: bool = True) -> None:
        self._call("set_market_closed", symbol, closed)

    def set_partial_fill(self, symbol: str, fraction: float | None) -> None:
        self._call("set_partial_fill", symbol, fraction)

    def set_trade_mode(self, symbol: str, mode: str | int) -> None:
        self._call("set_trade_mode", symbol, mode)

    def set_symbol(self, symbol: str, **fields: Any) -> None:
        self._call("set_symbol", symbol, **fields)

    def requote_next(self, count: int = 1) -> None:
        self._call("requote_next", count)

    def fail_next(self, retcode: int, count: int = 1,
                  actions: Iterable[int] | None = None) -> None:
        self._call("fail_next", retcode, count, None if actions is None else tuple(actions))

    def set_no_money(self, enabled: bool = True) -> None:
        self._call("set_no_money", enabled)

    def set_autotrading(self, enabled: bool) -> None:
        self._call("set_autotrading", enabled)

    def set_connected(self, connected: bool) -> None:
        self._call("set_connected", connected)

    def stall_next_send(self, seconds: float) -> None:
        self._call("stall_next_send", seconds)

    def drop_next_send(self, refuse_for: float = 0.0, reset_session: bool = False) -> None:
        self._call("drop_next_send", refuse_for, reset_session)

    def drop_bridge(self, refuse_for: float = 0.0, reset_session: bool = False) -> None:
        self._call("drop_bridge", refuse_for, reset_session)

    def add_position(self, symbol: str, side: str, volume: float, price: float | None = None,
                     magic: int = 0, comment: str = "") -> int:
        return self._call("add_position", symbol, side, volume, price, magic, comment)

    def add_order(self, symbol: str, kind: str, volume: float, price: float, magic: int = 0,
                  comment: str = "") -> int:
        return self._call("add_order", symbol, kind, volume, price, magic, comment)

    def set_balance(self, balance: float) -> None:
        self._call("set_balance", balance)

    def set_account_mode(self, mode: str) -> None:
        self._call("set_account_mode", mode)

    def reset(self, netting: bool | None = None) -> None:
        self._call("reset", netting)

    def snapshot(self) -> dict[str, Any]:
        return json.loads(self._control.root.snapshot())

    def calls(self) -> list[list[str]]:
        return json.loads(self._control.root.calls())

    def bridge_drops(self) -> int:
        return self._control.root.bridge_drops()


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """First stdout line of ``proc``, or "" if it exits or stays silent for ``timeout`` s."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sel.select(timeout=0.1):
                return proc.stdout.readline().strip()
            if proc.poll() is not None:
                return ""
    return ""


@contextmanager
def running(**kwargs: Any) -> Iterator[FakeMT5]:
    """``with running(login=...) as fake:`` — :meth:`FakeMT5.start`, stopped on exit."""
    fake = FakeMT5.start(**kwargs)
    try:
        yield fake
    finally:
        fake.stop()


def close_client(mt5: Any) -> None:
    """Close an ``mt5linux.MetaTrader5`` client's connection.

    mt5linux has no close(); its connection (name-mangled ``__conn``) lives until
    the object is garbage collected, so tests close it explicitly.
    """
    conn = getattr(mt5, "_MetaTrader5__conn", None)
    if conn is not None:
        conn.close()
