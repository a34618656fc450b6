"""The link to one MetaTrader 5 terminal: the MetaTrader5 module where it imports
(Windows), else the mt5linux rpyc bridge (Linux: the terminal under Wine, an rpyc
classic server beside it on which `import MetaTrader5 as mt5` runs).

Both links offer the same three calls, and hand back plain Python values only:
- `call(fn, ...)`: a module function whose answer is a scalar or a tuple of scalars
  (initialize, last_error, ...);
- `record(fn, ...)`: one named tuple (account_info, symbol_info, a tick, an
  order_send result) as a dict, or None;
- `records(fn, ..., where=...)`: a tuple of named tuples (positions_get, orders_get,
  history_*_get) as dicts, optionally filtered by field equality, or None.

Over the bridge every record would come back as a netref (one network round trip per
field read; `rpyc.classic.obtain` cannot unpickle them on Linux, where no MetaTrader5
module exists), so each call is sent as one expression that converts the records on
the terminal's side into tuples of (field, value) pairs, which rpyc passes by value:
one round trip per call, 200 positions included. That is what mt5linux itself does
(it sends `mt5.<fn>(<repr of the arguments>)` as text), so arguments must be plain
int, float, str, bool or None (no Decimal, numpy or IntEnum, whose repr the far side
cannot evaluate or the C module refuses); anything else is refused here.

mt5linux 1.0.11's client has no close() and its timeout is rpyc's per-call timeout
(default 300 s): the link sets a short one and closes the connection itself. A call
that breaks (the bridge dropped, a timeout) raises LinkLost: its outcome is unknown,
and for an order_send the request may well have executed.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

logger = logging.getLogger("brokers.mt5")

PLAIN = (int, float, str, bool, type(None))


class LinkLost(Exception):
    """The link broke or timed out during a call: what the terminal did is unknown."""


class LinkFailed(Exception):
    """The far side raised (a bridge without the MetaTrader5 module, a bad expression)."""


def plain(value: Any, where: str = "argument") -> Any:
    """`value` if it is made of plain values only (dicts of them included). Raises
    TypeError naming the offending value: the terminal could not read it."""
    if type(value) in PLAIN:
        return value
    if type(value) is dict:
        return {plain(k, where): plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if type(value) is tuple:
        return tuple(plain(v, where) for v in value)
    raise TypeError(f"MT5 {where} {value!r} is a {type(value).__name__}; the terminal takes plain int, float, "
                    "str or bool only")


def _condition(where: dict[str, Any] | None) -> str:
    if not where:
        return "True"
    parts = []
    for name, value in where.items():
        if not name.isidentifier():
            raise ValueError(f"not a record field: {name!r}")
        parts.append(f"x.{name} == {plain(value, name)!r}")
    return " and ".join(parts)


class Link:
    """One terminal's module functions, answered with plain values."""

    def call(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def record(self, fn: str, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        raise NotImplementedError

    def records(self, fn: str, *args: Any, where: dict[str, Any] | None = None,
                **kwargs: Any) -> list[dict[str, Any]] | None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the link. Safe to call twice."""


class BridgeLink(Link):
    """The mt5linux client (rpyc classic) connected to host:port."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        from mt5linux import MetaTrader5

        self.where = f"{host}:{port}"
        try:
            # Connects in the constructor (rpyc's 3 s connect timeout), then imports the
            # module on the far side; `timeout` is every later call's limit.
            self._mt5 = MetaTrader5(host=host, port=port, timeout=timeout)
        except (EOFError, OSError) as exc:
            raise LinkLost(f"cannot reach the mt5linux bridge at {self.where}: {type(exc).__name__}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - a remote exception (e.g. no MetaTrader5 module there)
            raise LinkFailed(f"the bridge at {self.where} could not import MetaTrader5: "
                             f"{type(exc).__name__}: {exc}") from None

    def _eval(self, expression: str) -> Any:
        mt5 = self._mt5
        if mt5 is None:
            raise LinkLost(f"the link to the bridge at {self.where} is closed")
        try:
            return mt5.eval(expression)
        except (EOFError, OSError) as exc:  # TimeoutError is an OSError
            self.close()
            raise LinkLost(f"the mt5linux bridge at {self.where} broke off: {type(exc).__name__}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - rpyc re-raises the far side's exception types
            raise LinkFailed(f"the bridge at {self.where} raised {type(exc).__name__}: {exc}") from None

    @staticmethod
    def _expr(fn: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        if not fn.isidentifier():
            raise ValueError(f"not a MetaTrader5 function: {fn!r}")
        return f"mt5.{fn}(*{plain(args, fn)!r}, **{plain(kwargs, fn)!r})"

    def call(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        return _copied(self._eval(self._expr(fn, args, kwargs)))

    def record(self, fn: str, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        # An order_send result carries its request as a nested named tuple: left out,
        # so the rest travels by value.
        found = self._eval("(lambda r: None if r is None else tuple((k, v) for k, v in r._asdict().items() "
                           f"if k != 'request'))({self._expr(fn, args, kwargs)})")
        return None if found is None else dict(_copied(found))

    def records(self, fn: str, *args: Any, where: dict[str, Any] | None = None,
                **kwargs: Any) -> list[dict[str, Any]] | None:
        found = self._eval("(lambda r: None if r is None else tuple(tuple(x._asdict().items()) for x in r "
                           f"if {_condition(where)}))({self._expr(fn, args, kwargs)})")
        return None if found is None else [dict(row) for row in _copied(found)]

    def close(self) -> None:
        mt5, self._mt5 = getattr(self, "_mt5", None), None
        conn = getattr(mt5, "_MetaTrader5__conn", None)  # mt5linux has no close()
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - closing a broken connection
                logger.debug("closing the bridge connection failed", exc_info=True)


def _copied(value: Any) -> Any:
    """Plain values out of whatever the bridge answered: tuples of scalars come by value
    already; anything else (a netref) is copied item by item while the link is up."""
    if type(value) in PLAIN:
        return value
    return tuple(_copied(v) for v in value)


class ModuleLink(Link):
    """The MetaTrader5 module in this process (Windows)."""

    def __init__(self, module: Any) -> None:
        self._mt5 = module

    def call(self, fn: str, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._mt5, fn)(*plain(args, fn), **plain(kwargs, fn))

    def record(self, fn: str, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        found = self.call(fn, *args, **kwargs)
        if found is None:
            return None
        return {k: v for k, v in found._asdict().items() if k != "request"}

    def records(self, fn: str, *args: Any, where: dict[str, Any] | None = None,
                **kwargs: Any) -> list[dict[str, Any]] | None:
        found = self.call(fn, *args, **kwargs)
        if found is None:
            return None
        rows = [r._asdict() for r in found]
        return [r for r in rows if all(r.get(k) == v for k, v in (where or {}).items())]


def native_module() -> Any | None:
    """The MetaTrader5 package if it imports here (Windows only: pip has no Linux wheel)."""
    try:
        return importlib.import_module("MetaTrader5")
    except ImportError:
        return None


def open_link(*, transport: str, host: str, port: int, timeout: float) -> Link:
    """A link by the terminal's `transport` (auto: the module if it imports, else the
    bridge). Raises LinkLost (cannot connect) or LinkFailed (the far side is not a
    MetaTrader5 bridge), and LinkFailed for `module` where the package is missing."""
    if transport in ("auto", "module"):
        module = native_module()
        if module is not None:
            return ModuleLink(module)
        if transport == "module":
            raise LinkFailed("transport: module, but the MetaTrader5 package does not import here (it exists "
                             "for Windows only); use transport: bridge with the mt5linux server")
    return BridgeLink(host, port, timeout)
