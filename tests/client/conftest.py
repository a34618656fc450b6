"""Fixtures for the client library: a private redis-server per test (so a test may
stop, restart and flush it under a live client), and a `service` that writes the
Redis contract with the service's own code (killswitch.distribution)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
import redis

from killswitch import domain as L
from killswitch.client import KillSwitch
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
