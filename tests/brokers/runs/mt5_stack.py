"""The MT5 test stack: our fake terminal behind its mt5linux-style rpyc bridge (its own
process), and a real Celery worker configured with that terminal. The worker's
adapter reaches the fake only through the real mt5linux client over TCP.

Its fixtures (`mt5_stack`, `terminal`) are made available by this package's conftest.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from brokers.models import BrokerRun
from killswitch import services as ks
from tests.fake_mt5.harness import FakeMT5

from ..conftest import FAST_RUNS, use_config, wait_runs_finished, write_policy

LOGIN = 5012345
ACCOUNT = str(LOGIN)
MAGIC = 990099  # the kill switch's own closing deals
MOMENTUM, ARB = 4242, 7777


def brokers_section(port: int) -> dict[str, Any]:
    return {
        "paper": {"accounts": []},
        "mt5": {"terminals": [{
            "name": "fake", "host": "127.0.0.1", "port": port, "accounts": [LOGIN], "magic": MAGIC,
            "deviation": 20, "timeout_seconds": 3, "requote_retries": 5,
            "strategy_magics": {"momentum": MOMENTUM, "arb": ARB},
        }]},
        "runs": FAST_RUNS,
    }


class Stack:
    def __init__(self, fake: FakeMT5, start_worker, policy) -> None:
        self.fake, self._start, self._policy = fake, start_worker, policy
        self.worker = start_worker(policy, paper_only=False)

    def ensure_worker(self):
        if self.worker.process.poll() is not None:
            self.worker = self._start(self._policy, paper_only=False)
        return self.worker


@pytest.fixture(scope="module")
def mt5_stack(start_worker, module_tmp) -> Iterator[Stack]:
    fake = FakeMT5.start(login=LOGIN)
    try:
        policy = write_policy(module_tmp / "mt5.yaml", brokers_section(fake.port))
        yield Stack(fake, start_worker, policy)
    finally:
        fake.stop()


@pytest.fixture
def terminal(mt5_stack: Stack, monkeypatch, settings) -> Iterator[FakeMT5]:
    """The fake terminal, reset to a fresh hedging account; this process reads the same
    brokers: section as the worker."""
    mt5_stack.ensure_worker()
    mt5_stack.fake.reset(netting=False)
    use_config(monkeypatch, brokers_section(mt5_stack.fake.port))
    settings.PAPER_ONLY = False
    yield mt5_stack.fake
    if BrokerRun.objects.exists():
        wait_runs_finished(timeout=60)


def activate(scope: str, level: str) -> None:
    ks.activate(scope=scope, level=level, reason="test", actor="cli:tester", source="cli")


def positions(fake: FakeMT5) -> dict[int, dict[str, Any]]:
    return {p["ticket"]: p for p in fake.snapshot()["positions"]}


def orders(fake: FakeMT5) -> dict[int, dict[str, Any]]:
    return {o["ticket"]: o for o in fake.snapshot()["orders"]}


def closing_deals(fake: FakeMT5) -> list[dict[str, Any]]:
    """Deals the kill switch made: every one carries its closing reference as comment."""
    return [d for d in fake.snapshot()["deals"] if d["comment"].startswith("ks-close-")]


def sends(fake: FakeMT5, action: int) -> int:
    """order_send calls of `action` the terminal received."""
    return sum(1 for name, args in fake.calls() if name == "order_send" and f"'action': {action}," in args)
