"""Panels other apps add to the Risk page (the brokers app adds its broker runs).

A panel is a key in the page's state, a title and a function returning JSON-ready
data (or None when it cannot be read). The page draws the panels it knows by key;
the state endpoint and every reconnect carry their data. Registered from the
owning app's `AppConfig.ready`, so killswitch imports nothing of the apps it shows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("killswitch")


@dataclass(frozen=True)
class Panel:
    key: str
    title: str
    read: Callable[[], Any]


_panels: dict[str, Panel] = {}


def register(panel: Panel) -> None:
    """Add (or replace, by key) a panel. Idempotent."""
    _panels[panel.key] = panel


def panel_data() -> dict[str, Any]:
    """Every registered panel's data by key; a panel that fails reads as None (logged)."""
    data: dict[str, Any] = {}
    for key, panel in _panels.items():
        try:
            data[key] = panel.read()
        except Exception:
            logger.warning("Risk page panel %s could not be read", key, exc_info=True)
            data[key] = None
    return data
