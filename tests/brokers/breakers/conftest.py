"""Fixtures for the breakers against real brokers: the breaker loop (the real engine
with the real brokers feed, leading through its lease in Redis) in a thread of the test
process, and helpers to read what it did from the audit log and its Redis state."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from brokers.feeds import BrokerFeed
from killswitch.breakers import config as breaker_config
from killswitch.breakers import state
from killswitch.breakers.engine import Engine
from killswitch.models import Event
from killswitch.runtime.leadership import Lease
from tests.conftest import wait_for


@pytest.fixture
def run_breakers(monkeypatch, redis_client) -> Iterator[Callable[..., Engine]]:
    """run_breakers(*entries) -> the running Engine for those `breakers:` entries (also
    what the CLI, the API and the dead-man service of this process read)."""
    loops: list[tuple[threading.Event, threading.Thread, Engine]] = []

    def start(*entries: dict[str, Any], interval: float = 0.1) -> Engine:
        parsed = breaker_config.parse_breakers(list(entries))
        monkeypatch.setattr(breaker_config, "_cached", lambda: parsed)
        engine = Engine(breakers=parsed, feeds=[BrokerFeed()], interval=interval, lease=Lease("breakers", ttl=2))
        stop = threading.Event()
        thread = threading.Thread(target=engine.run_forever, args=(stop,), daemon=True)
        thread.start()
        loops.append((stop, thread, engine))
        return engine

    yield start
    for stop, thread, _ in loops:
        stop.set()
        thread.join(timeout=10)


def row(name: str) -> dict[str, Any] | None:
    """The breaker's row as the loop last published it (None before its first round)."""
    snap = state.snapshot()
    return next((r for r in snap.rows if r["name"] == name and snap.fresh), None)


def wait_state(name: str, wanted: str, timeout: float = 10.0) -> dict[str, Any]:
    """Bounded wait until the breaker's published row is in state `wanted`."""
    return wait_for(lambda: (r := row(name)) is not None and r["state"] == wanted and r, timeout=timeout)


def trips(name: str) -> list[Event]:
    return list(Event.objects.filter(actor=f"breaker:{name}", action="activate").order_by("seq"))


def wait_trip(name: str, timeout: float = 10.0) -> Event:
    return wait_for(lambda: (found := trips(name)) and found[0], timeout=timeout)
