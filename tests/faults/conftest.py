"""Fault drills: the real processes, faults injected one at a time. Each test records the
figures that matter; the run prints them at the end (and `.ci/run` shows them)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import figure  # noqa: F401  (re-exported for the drills)
from tests.stack import ROOT, Stack


class Probe:
    """A client-library process; `lines` holds what it printed."""

    def __init__(self, redis_url: str, account: str, *, orders: bool = False) -> None:
        args = [sys.executable, "-m", "tests.faults.probe", redis_url, account]
        if orders:
            args.append("--orders")
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        self.lines: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                pass

    def views(self) -> list[dict]:
        return [line for line in list(self.lines) if "level" in line and "order" not in line]

    def current(self) -> dict | None:
        views = self.views()
        return views[-1] if views else None

    def orders(self) -> list[dict]:
        return [line for line in list(self.lines) if "order" in line]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def stack(transactional_db, tmp_path: Path) -> Iterator[Stack]:
    s = Stack(tmp_path)
    yield s
    s.stop()


@pytest.fixture
def probes() -> Iterator[list[Probe]]:
    made: list[Probe] = []
    yield made
    for p in made:
        p.stop()


def since(t0: float) -> str:
    return f"{(time.time() - t0) * 1000:.0f} ms"
