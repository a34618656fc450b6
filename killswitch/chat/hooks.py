"""What other apps let the chat show, registered from their AppConfig.ready (the
brokers app registers its runs and positions), so killswitch imports nothing of them.

Each view returns plain text lines. A view that fails reads as one line saying so
(logged): a broken broker read must never stop a /kill prompt or a /runs answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from killswitch import domain as L

logger = logging.getLogger("killswitch.chat")


@dataclass(frozen=True)
class BrokerViews:
    # The latest `limit` broker runs, newest first, one line each.
    recent_runs: Callable[[int], list[str]]
    # What a kill in this scope would close at market (or why it closes nothing).
    kill_would_close: Callable[[L.ScopeRef], list[str]]
    # What is still open in this scope: positions and working orders (shown before a resume).
    still_open: Callable[[L.ScopeRef], list[str]]


_views: BrokerViews | None = None


def register(views: BrokerViews) -> None:
    """Set the broker views (the last registration wins). Idempotent."""
    global _views
    _views = views


def _read(name: str, *args: object) -> list[str] | None:
    """A view's lines; None when no app registered broker views."""
    if _views is None:
        return None
    try:
        return list(getattr(_views, name)(*args))
    except Exception as exc:  # any broker or database error: say so, never fail the reply
        logger.warning("chat broker view %s could not be read", name, exc_info=True)
        return [f"(could not be read: {type(exc).__name__}: {exc})"[:300]]


def recent_runs(limit: int) -> list[str] | None:
    return _read("recent_runs", limit)


def kill_would_close(scope: L.ScopeRef) -> list[str] | None:
    return _read("kill_would_close", scope)


def still_open(scope: L.ScopeRef) -> list[str] | None:
    return _read("still_open", scope)
