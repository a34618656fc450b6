"""The kill switch client for trading processes. Needs only `redis` (no Django).

    from killswitch.client import KillSwitch, OrderRefused

    ks = KillSwitch("redis://localhost:6379/0", account="DU123", strategy="momo",
                    name="momo-1", on_kill=liquidate_all_positions)
    while True:
        status = ks.check()            # memory read: running / pause / halt / kill
        if status != "running":
            time.sleep(1); continue
        ks.gate("AAPL")                # raises OrderRefused naming level, scope, reason
        broker.place_order(...)

See docs/trading-loop.md for the rules (fail closed, kill exit, acknowledgements)
and the Redis contract for other languages.
"""

from __future__ import annotations

from killswitch.domain import HALT, KILL, LEVELS, PAUSE, RUNNING

from ._core import CAUSES, KillSwitchExit, OrderRefused, View
from .aio import AsyncKillSwitch
from .config import redis_url_from_env
from .sync import KillSwitch

__all__ = [
    "CAUSES", "HALT", "KILL", "LEVELS", "PAUSE", "RUNNING", "AsyncKillSwitch", "KillSwitch",
    "KillSwitchExit", "OrderRefused", "View", "redis_url_from_env",
]
