"""The hot path shared by the sync and asyncio clients: memory reads only."""

from __future__ import annotations

import logging
import threading
from typing import Any

from killswitch import domain as L

from ._core import (
    OnKill,
    OrderRefused,
    View,
    _monotonic,
    _Tracker,
    closed_view,
    order_decision,
)

logger = logging.getLogger("killswitch.client")

LIB_VERSION = "1"


class _ClientBase:
    """check(), allows_signals(), allows_order(), gate(): no network, no locks on the
    fast path. The listener swaps in a new View on every change."""

    def __init__(self, *, account: str | None, strategy: str | None,
                 stale_after: float | None, on_kill: OnKill | None, exit_on_kill: bool) -> None:
        self.account = account or None
        self.strategy = strategy or None
        self.on_kill = on_kill
        self.exit_on_kill = exit_on_kill
        self._tracker = _Tracker(account=self.account, strategy=self.strategy,
                                 stale_after=stale_after)
        self._view: View = closed_view("connecting", stale_after=self._tracker.stale_after)
        self._swap = threading.Lock()
        self._kill_lock = threading.Lock()
        self._kill_handled = False

    # --- publishing views (listener side) -----------------------------------------------

    def _publish(self, view: View | None = None) -> View:
        with self._swap:
            self._view = view or self._tracker.view()
            if not self._view.is_kill and self._view.cause is None:
                # Only a known, lifted kill re-arms on_kill: the fail-closed halt of a Redis
                # blip must not make the same kill run the liquidation hook twice.
                self._kill_handled = False
            return self._view

    def _current(self) -> View:
        view = self._view
        if view.fresh_until < _monotonic():
            with self._swap:
                # Re-check under the lock: the listener may have just published a fresh view.
                if self._view.fresh_until < _monotonic():
                    self._view = closed_view("heartbeat_stale", self._view)
                view = self._view
        return view

    # --- the hot path ---------------------------------------------------------------------

    def check(self) -> str:
        """The effective level for this process: `running`, `pause`, `halt` or `kill`.

        Reads memory only. Reads `halt` while the state is unknown (see `cause`).
        On `kill`: runs on_kill once, then raises SystemExit(1) (KillSwitchExit)
        when exit_on_kill is set; otherwise returns `kill`.
        """
        view = self._view
        if view.fresh_until < _monotonic():
            view = self._current()
        if view.is_kill:
            self._deliver_kill(view)
        return view.level

    def allows_signals(self) -> bool:
        """True only at `running`: pause and above stop new signals."""
        return self.check() == L.RUNNING

    def allows_order(self, symbol: str, reduce_only: bool = False) -> bool:
        """Whether a new order for `symbol` may be sent. running: yes; pause: only
        reduce-only orders (exits, stop changes); halt, kill, unknown state: no."""
        view = self._current()
        if view.is_kill:
            self._deliver_kill(view)
        return order_decision(view, symbol, reduce_only)[0]

    def gate(self, symbol: str, *, reduce_only: bool = False) -> None:
        """Raise OrderRefused (naming level, scope, reason or cause) unless the order
        is allowed; return None when it is."""
        view = self._current()
        if view.is_kill:
            self._deliver_kill(view)
        allowed, level, scope = order_decision(view, symbol, reduce_only)
        if not allowed:
            raise OrderRefused(symbol=symbol, reduce_only=reduce_only, level=level, scope=scope,
                               reason=view.reasons.get(scope, ""), cause=view.cause)

    def _deliver_kill(self, view: View) -> None:
        from ._core import KillSwitchExit

        with self._kill_lock:
            first = not self._kill_handled
            self._kill_handled = True
        if first:
            logger.critical("kill switch KILL: %s", view.describe())
            if self.on_kill is not None:
                try:
                    self._run_on_kill()
                except Exception:  # the exit must happen even if liquidation failed
                    logger.exception("on_kill raised; exiting anyway")
        if self.exit_on_kill:
            # Acknowledge the kill before leaving, so the service sees that this process
            # obeyed even when the loop exits without close().
            self._flush_ack()
            raise KillSwitchExit(view.describe())

    def _flush_ack(self) -> None:
        """Write the acknowledgement of the applied version now, if the flavour can
        without waiting on an event loop (the sync client does)."""

    def _run_on_kill(self) -> None:
        assert self.on_kill is not None
        self.on_kill()

    # --- introspection --------------------------------------------------------------------

    @property
    def level(self) -> str:
        """The effective level without delivering kill (for display)."""
        return self._current().level

    @property
    def cause(self) -> str | None:
        """Why the client is failing closed (a CAUSES code), or None when the state is known."""
        return self._current().cause

    @property
    def version(self) -> int | None:
        """The state version applied (the one acknowledged to the service)."""
        return self._view.version

    @property
    def view(self) -> View:
        return self._current()

    def status(self) -> dict[str, Any]:
        view = self._current()
        return {"level": view.level, "scope": view.scope, "reason": view.reason,
                "cause": view.cause, "version": view.version, "stale_after": view.stale_after}
