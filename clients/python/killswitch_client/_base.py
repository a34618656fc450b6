"""The public surface shared by the sync and asyncio clients: settings, the hot path
(memory reads only), kill delivery, breaker inputs and introspection. The drivers add
only their I/O loop."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import contract as C
from .config import ConfigError, RedisTarget, max_stale_after_from_env, resolve_target
from .core import Core
from .views import Identity, KillSwitchExit, OrderRefused, View, default_name, order_decision

logger = logging.getLogger("killswitch_client")

OnKill = Callable[[], Any]
_monotonic = time.monotonic


def _seconds(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value <= 0:
        raise ConfigError(f"{name}={value!r} is invalid; expected a number of seconds > 0")
    return float(value)


class _ClientBase:
    """check(), allows_signals(), allows_order(), gate(): no network, no locks on the fast
    path. The driver swaps in a new View (through the Core) on every change."""

    def __init__(self, redis_url: str | None, *, sentinels: Sequence[tuple[str, int]] | None,
                 sentinel_master: str | None, account: str | None, strategy: str | None,
                 name: str | None, stale_after: float | None, max_stale_after: float | None,
                 backstop_interval: float, report_interval: float, on_kill: OnKill | None,
                 exit_on_kill: bool) -> None:
        if max_stale_after is None:
            max_stale_after = max_stale_after_from_env() or C.DEFAULT_MAX_STALE_AFTER
        max_stale_after = _seconds("max_stale_after", max_stale_after)
        if stale_after is not None:
            stale_after = _seconds("stale_after", stale_after)
            if stale_after > max_stale_after:
                raise ConfigError(
                    f"stale_after={stale_after:g} is above max_stale_after={max_stale_after:g}; "
                    f"pass max_stale_after={stale_after:g} (or set KILLSWITCH_MAX_STALE_AFTER) "
                    "to trust heartbeats that long")
        if on_kill is not None and not callable(on_kill):
            raise TypeError(f"on_kill must be callable, not {on_kill!r}")
        self.account = account or None
        self.strategy = strategy or None
        self.on_kill = on_kill
        self.exit_on_kill = exit_on_kill
        self.stale_after = stale_after
        self.max_stale_after = max_stale_after
        self.backstop_interval = _seconds("backstop_interval", backstop_interval)
        self.report_interval = _seconds("report_interval", report_interval)
        self.target: RedisTarget = resolve_target(redis_url, sentinels=sentinels,
                                                  sentinel_master=sentinel_master)
        self.redis_url = self.target.url
        self.identity = Identity(name=name or default_name(), account=self.account,
                                 strategy=self.strategy)
        self._core = Core(identity=self.identity, stale_after=stale_after,
                          max_stale_after=max_stale_after, backstop_interval=self.backstop_interval,
                          report_interval=self.report_interval)

    # --- the hot path ---------------------------------------------------------------------

    def check(self) -> str:
        """The effective level for this process: `running`, `pause`, `halt` or `kill`.

        Reads memory only. Reads `halt` while the state is unknown (see `cause`).
        On `kill`: runs on_kill once, then raises SystemExit(1) (KillSwitchExit)
        when exit_on_kill is set; otherwise returns `kill`.
        """
        view = self._core.view
        if view.fresh_until < _monotonic():
            view = self._core.current()
        if view.is_kill:
            self._deliver_kill(view)
        return view.level

    def allows_signals(self) -> bool:
        """True only at `running`: pause and above stop new signals."""
        return self.check() == C.RUNNING

    def allows_order(self, symbol: str, reduce_only: bool = False) -> bool:
        """Whether a new order for `symbol` may be sent. running: yes; pause: only
        reduce-only orders (exits, stop changes); halt, kill, unknown state: no."""
        view = self._core.current()
        if view.is_kill:
            self._deliver_kill(view)
        return order_decision(view, symbol, reduce_only)[0]

    def gate(self, symbol: str, *, reduce_only: bool = False) -> None:
        """Return None when the order is allowed; raise OrderRefused (naming level, scope,
        reason or cause) when not."""
        view = self._core.current()
        if view.is_kill:
            self._deliver_kill(view)
        allowed, level, scope = order_decision(view, symbol, reduce_only)
        if not allowed:
            raise OrderRefused(symbol=symbol, reduce_only=reduce_only, level=level, scope=scope,
                               reason=view.reasons.get(scope, ""), cause=view.cause)

    def _deliver_kill(self, view: View) -> None:
        if self._core.claim_kill():
            logger.critical("kill switch KILL: %s", view.describe())
            if self.on_kill is not None:
                try:
                    self.on_kill()
                except Exception:  # the exit must happen even if liquidation failed
                    logger.exception("on_kill raised; exiting anyway")
        if self.exit_on_kill:
            # Acknowledge the kill before leaving, so the service sees that this process
            # obeyed even when the loop exits without close().
            self._flush_report()
            raise KillSwitchExit(view.describe())

    def _flush_report(self) -> None:
        """Write a due acknowledgement now, when the flavour can without an event loop."""

    # --- breaker inputs -------------------------------------------------------------------

    def market_data(self, symbol: str, ts: float | None = None) -> None:
        """Note market data for `symbol` at `ts` (unix seconds; default now). An in-memory
        write, cheap enough per tick; carried in the registration at the next refresh
        (every report_interval) for the stale-data breaker.

        Raises TypeError/ValueError on a bad symbol or ts (see Core.note_market_data)."""
        self._core.note_market_data(symbol, ts)

    def heartbeat(self, name: str) -> None:
        """Renew the dead-man's switch `name`. Written to the registration at the
        listener's next wake-up (within ~0.25 s), not only at the periodic refresh."""
        self._core.renew(name)

    # --- introspection --------------------------------------------------------------------

    @property
    def level(self) -> str:
        """The effective level without delivering kill (for display)."""
        return self._core.current().level

    @property
    def cause(self) -> str | None:
        """Why the client is failing closed (a CAUSES code), or None when the state is known."""
        return self._core.current().cause

    @property
    def version(self) -> int | None:
        """The state version applied (the one acknowledged to the service)."""
        return self._core.view.version

    @property
    def view(self) -> View:
        return self._core.current()

    def status(self) -> dict[str, Any]:
        """The view as a dict: level, scope, reason, cause, version, stale_after (the bound
        applied to the heartbeat) and trading_switch (the raw key as last read)."""
        view = self._core.current()
        return {"level": view.level, "scope": view.scope, "reason": view.reason,
                "cause": view.cause, "version": view.version, "stale_after": view.stale_after,
                "trading_switch": view.trading_switch}
