"""Subcommands of `manage.py killswitch`, one module each.

A module defines NAME, HELP, `add_arguments(parser)` and `run(options, out, err) -> int`
(the exit code). The modules of killswitch.cli, and of every package another app
registers from its AppConfig.ready (`register_package("brokers.cli")`), are
discovered, so each app adds its own subcommands and killswitch imports none of them.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

_packages: list[str] = ["killswitch.cli"]


def register_package(name: str) -> None:
    """Add the subcommand modules of package `name` (idempotent)."""
    if name not in _packages:
        _packages.append(name)


def discover() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for package_name in _packages:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            if info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{package_name}.{info.name}")
            if hasattr(module, "NAME") and hasattr(module, "run"):
                found[module.NAME] = module
    return dict(sorted(found.items()))
