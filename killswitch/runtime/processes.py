"""The long-running processes of the stack, contributed by each app.

`make run` (scripts/run.py) and the Procfile start exactly these. An app registers
its own from AppConfig.ready (killswitch: the web server, the reconciler, the Celery
worker; brokers: the sweep), so the list comes from the apps, not from guessing.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

PYTHON = "python"  # argv[0] placeholder: this interpreter


@dataclass(frozen=True)
class Process:
    name: str
    argv: tuple[str, ...]  # argv[0]: PYTHON, or a console script installed beside the interpreter
    description: str
    # Started only when this says so, asked when the list is read (at start): e.g. the
    # Telegram bot, only with telegram_enabled and a token.
    when: Callable[[], bool] | None = field(default=None, compare=False)

    def command(self, *, python: str | None = None) -> list[str]:
        """The argv to start it with this (or the given) interpreter and its scripts."""
        python = python or sys.executable
        first, *rest = self.argv
        if first == PYTHON:
            return [python, *rest]
        return [str(Path(python).parent / first), *rest]


_processes: dict[str, Process] = {}


def register(process: Process) -> None:
    """Add (or replace, by name) a process. Idempotent."""
    _processes[process.name] = process


def processes() -> list[Process]:
    """Every registered process whose condition holds now, in registration order."""
    return [p for p in _processes.values() if p.when is None or p.when()]
