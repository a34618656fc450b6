"""Subcommands of `manage.py killswitch`, one module each.

A module defines NAME, HELP, `add_arguments(parser)` and `run(options, out, err) -> int`
(the exit code). Modules in killswitch.cli and brokers.cli are discovered, so each
app adds its own subcommands without touching the others.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

PACKAGES = ("killswitch.cli", "brokers.cli")


def discover() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for package_name in PACKAGES:
        try:
            package = importlib.import_module(package_name)
        except ModuleNotFoundError:
            continue
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{package_name}.{info.name}")
            if hasattr(module, "NAME") and hasattr(module, "run"):
                found[module.NAME] = module
    return dict(sorted(found.items()))
