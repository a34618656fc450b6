"""The kill switch client for trading processes. Needs only `redis` (no Django).

    from killswitch_client import KillSwitch, OrderRefused

    ks = KillSwitch("redis://localhost:6379/0", account="DU123", strategy="momo",
                    name="momo-1", on_kill=liquidate_all_positions)
    while True:
        status = ks.check()            # memory read: running / pause / halt / kill
        if status != "running":
            time.sleep(1); continue
        ks.gate("AAPL")                # raises OrderRefused naming level, scope, reason
        broker.place_order(...)

`KillSwitch` runs a listener thread, `AsyncKillSwitch` a task on your event loop;
both drive the same `core.Core` (no I/O), so their rules cannot differ. See
clients/python/README.md (fail closed, kill exit, acknowledgements, trust rules) and
`contract` for the Redis keys and messages.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .contract import HALT, KILL, LEVELS, PAUSE, RUNNING
from .core import LIB_VERSION
from .views import CAUSES, KillSwitchExit, OrderRefused, View

if TYPE_CHECKING:
    from .aio import AsyncKillSwitch
    from .config import ConfigError, RedisTarget, resolve_target
    from .sync import KillSwitch

__version__ = LIB_VERSION

# The clients are imported on first use, so `killswitch_client.contract` (the service
# imports its facts from it) and the no-I/O core import without redis installed.
_LAZY = {"KillSwitch": ".sync", "AsyncKillSwitch": ".aio", "ConfigError": ".config",
         "RedisTarget": ".config", "resolve_target": ".config"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CAUSES", "HALT", "KILL", "LEVELS", "PAUSE", "RUNNING", "AsyncKillSwitch", "ConfigError",
    "KillSwitch", "KillSwitchExit", "OrderRefused", "RedisTarget", "View", "__version__",
    "resolve_target",
]
