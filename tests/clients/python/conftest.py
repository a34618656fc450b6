"""Fixtures for the client library: a private redis-server per test (so a test may
stop, restart and flush it under a live client), a `service` that writes the Redis
contract with the service's own code (killswitch.distribution), and `make_switch`,
which builds the client in either flavour (`flavour` parametrizes a test over both)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from killswitch_client import AsyncKillSwitch, KillSwitch

from killswitch import domain as L
from killswitch.distribution import publish as D
from riskcontrol.embedded_redis import EmbeddedRedis


@pytest.fixture
def server() -> Iterator[EmbeddedRedis]:
    srv = EmbeddedRedis().start()
    yield srv
    srv.cleanup()


class Service:
    """Publishes state and heartbeats exactly as the service does, without a database."""

    def __init__(self, url: str, stale_after: float = 5.0) -> None:
        self.r = redis.Redis.from_url(url, decode_responses=True)
        self.version = 0
        self.stale_after = stale_after

    def publish(self, levels: dict[str, str] | None = None, *, reasons: dict[str, str] | None = None,
                event: dict | None = None) -> int:
        self.version += 1
        levels = {"global": "running", **(levels or {})}
        details = {scope: {"scope": scope, "level": level, "reason": (reasons or {}).get(scope, "")}
                   for scope, level in levels.items()}
        if event is None and reasons:
            # As the service does: the message carries the event that caused the change.
            scope, reason = next(iter(reasons.items()))
            event = {"action": "activate", "scope": scope, "reason": reason, "new_level": levels[scope]}
        # This stand-in has no reconciler: whatever a test wrote to trading_switch by hand
        # counts as audited and settled before the next publish (the real publisher keeps
        # an unaudited escalation for the reconciler; see tests/killswitch/test_distribution.py).
        self.r.set(L.KEY_GLOBAL, levels["global"])
        D.publish_state(D.Snapshot(self.version, levels, details), event=event, client=self.r, force=True)
        return self.version

    def heartbeat(self, *, ts_offset: float = 0.0, stale_after: float | None = None) -> None:
        if ts_offset:
            import time

            payload = json.dumps({"type": "heartbeat", "ts": time.time() + ts_offset,
                                  "version": self.version,
                                  "stale_after": stale_after or self.stale_after})
            self.r.set(L.KEY_HEARTBEAT, payload)
            return
        D.publish_heartbeat(self.version, stale_after=stale_after or self.stale_after, client=self.r)

    def registration(self, client_id: str) -> dict | None:
        """The newest registration the process appended to killswitch:clients, or None
        once it said goodbye (or never registered)."""
        for _, fields in self.r.xrevrange(L.KEY_CLIENTS, count=2000):
            if fields.get("client_id") == client_id:
                return json.loads(fields["registration"]) if "registration" in fields else None
        return None

    def running(self, levels: dict[str, str] | None = None, **kw) -> int:
        version = self.publish(levels, **kw)
        self.heartbeat()
        return version


@pytest.fixture
def service(server) -> Iterator[Service]:
    svc = Service(server.url)
    yield svc
    svc.r.close()


@pytest.fixture
def make_client(server) -> Iterator[Callable[..., KillSwitch]]:
    made: list[KillSwitch] = []

    def make(**kwargs) -> KillSwitch:
        kwargs.setdefault("exit_on_kill", False)
        kwargs.setdefault("backstop_interval", 0.1)
        client = KillSwitch(kwargs.pop("url", server.url), **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


class AsyncHandle:
    """An AsyncKillSwitch on its own event loop thread, driven from a synchronous test
    through the same calls as KillSwitch. Every call runs on the loop, as a trading
    coroutine's would; exceptions (OrderRefused, KillSwitchExit) come back to the caller."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-loop", daemon=True)
        self._thread.start()

        async def make() -> AsyncKillSwitch:
            return await AsyncKillSwitch(*args, **kwargs).start()

        self.switch: AsyncKillSwitch = self._await(make())

    def _await(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=15)

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async def run() -> tuple[bool, Any]:
            try:
                return True, fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 -- KillSwitchExit is a SystemExit
                return False, exc

        ok, value = self._await(run())
        if not ok:
            raise value
        return value

    def wait_ready(self, timeout: float = 5.0) -> bool:
        return self._await(self.switch.wait_ready(timeout))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._await(self.switch.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __getattr__(self, name: str) -> Any:
        value = self.call(getattr, self.switch, name)
        if callable(value):
            return lambda *a, **kw: self.call(value, *a, **kw)
        return value


FLAVOURS = ["sync", "asyncio"]


@pytest.fixture(params=FLAVOURS)
def flavour(request) -> str:
    return request.param


def build(flavour: str, *args: Any, **kwargs: Any) -> Any:
    """A client of `flavour` (`sync`, `asyncio`, or `asyncio-async-on_kill`, which wraps a
    plain on_kill into a coroutine function, the asyncio client's other kill path)."""
    if flavour == "asyncio-async-on_kill" and kwargs.get("on_kill") is not None:
        plain = kwargs["on_kill"]

        async def on_kill() -> None:
            await asyncio.sleep(0.01)
            plain()

        kwargs["on_kill"] = on_kill
    if flavour == "sync":
        return KillSwitch(*args, **kwargs)
    return AsyncHandle(*args, **kwargs)


@pytest.fixture
def make_switch(server, flavour) -> Iterator[Callable[..., Any]]:
    """make_switch(**kwargs): a client of the test's flavour on the test's server."""
    made: list[Any] = []

    def make(**kwargs: Any) -> Any:
        kwargs.setdefault("exit_on_kill", False)
        kwargs.setdefault("backstop_interval", 0.1)
        client = build(kwargs.pop("flavour", flavour), kwargs.pop("url", server.url), **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()
