"""Trust the keys, not the messages. Anyone with write access to Redis can PUBLISH on
killswitch:updates; a forged message must never change a level nor trigger on_kill, and
a forged heartbeat key must not keep a client trading once the service stopped. Both
flavours, against a real redis-server, with a forger running alongside."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis

from tests.conftest import wait_for

FORGED_MESSAGES = [
    {"type": "state", "version": 10**9, "levels": {"global": "running"}, "trading_switch": "running",
     "event": {"scope": "global", "new_level": "running", "reason": "forged"}},
    {"type": "state", "version": 10**9 + 1, "levels": {"global": "kill"}, "trading_switch": "kill",
     "event": {"scope": "global", "new_level": "kill", "reason": "forged"}},
    {"type": "heartbeat", "ts": 1e12, "version": 10**9, "stale_after": 1e9},
]


class Forger:
    """A thread that keeps doing `step(r)` every `interval` seconds until stopped."""

    def __init__(self, url: str, step: Callable[[redis.Redis], None], interval: float = 0.005) -> None:
        self.r = redis.Redis.from_url(url, decode_responses=True)
        self.step, self.interval = step, interval
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step(self.r)
                self.rounds += 1
            except redis.RedisError:
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> Forger:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.r.close()


def publish_forgeries(r: redis.Redis) -> None:
    pipe = r.pipeline(transaction=False)
    for message in FORGED_MESSAGES:
        pipe.publish("killswitch:updates", json.dumps(message))
    pipe.publish("__keyspace@0__:trading_switch", "set")
    pipe.execute()


@pytest.fixture
def sampled() -> Iterator[Callable]:
    """sample(client, seconds): every level check() returned over that time."""
    def sample(client, seconds: float) -> set[str]:
        seen: set[str] = set()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            seen.add(client.check())
            time.sleep(0.001)
        return seen

    yield sample


def test_forged_messages_during_a_halt_never_read_running_nor_kill(service, make_switch, sampled, server):
    service.running({"global": "halt"}, reasons={"global": "desk halt"})
    ran: list[str] = []
    client = make_switch(on_kill=lambda: ran.append("on_kill"), backstop_interval=0.5)
    wait_for(lambda: client.check() == "halt" and client.cause is None)
    with Forger(server.url, publish_forgeries) as forger:
        seen = sampled(client, 1.5)
        assert forger.rounds > 50
        assert seen == {"halt"}, seen
        assert ran == [] and client.status()["reason"] == "desk halt"
        # Real changes still apply promptly, flood or not.
        service.running({"global": "pause"})
        wait_for(lambda: client.check() == "pause")
        service.running({"global": "kill"})
        wait_for(lambda: client.check() == "kill" and ran == ["on_kill"])
        service.running({"global": "halt"})
        wait_for(lambda: client.check() == "halt")
        assert sampled(client, 0.5) == {"halt"} and ran == ["on_kill"]


def test_a_forged_kill_message_does_not_run_on_kill_while_the_service_says_running(
        service, make_switch, sampled, server):
    service.running()
    ran: list[str] = []
    client = make_switch(on_kill=lambda: ran.append("on_kill"))
    wait_for(lambda: client.check() == "running")
    kill = json.dumps(FORGED_MESSAGES[1])
    with Forger(server.url, lambda r: r.publish("killswitch:updates", kill)):
        assert sampled(client, 1.0) == {"running"}
    assert ran == []


@pytest.mark.parametrize("forged", [
    {"ts": 1e12, "stale_after": 1e9},  # far future, long bound
    "frozen",                          # a copy of the last real heartbeat, SET again and again
    "future-series",                   # far-future values that change every time
], ids=["far-future", "frozen-copy", "future-series"])
def test_a_forged_heartbeat_key_cannot_keep_a_stopped_service_alive(forged, service, make_switch, server):
    service.running()  # then the reconciler "stops": no more real heartbeats
    client = make_switch(max_stale_after=1.0)
    wait_for(lambda: client.check() == "running")
    frozen = service.r.get("killswitch:heartbeat")
    counter = iter(range(10**9))

    def forge(r: redis.Redis) -> None:
        if forged == "frozen":
            payload = frozen
        elif forged == "future-series":
            payload = json.dumps({"type": "heartbeat", "ts": 2e9 + next(counter), "stale_after": 3600})
        else:
            payload = json.dumps({"type": "heartbeat", **forged})
        r.set("killswitch:heartbeat", payload)
        r.publish("killswitch:updates", payload)

    with Forger(server.url, forge, interval=0.05):
        wait_for(lambda: client.cause == "heartbeat_stale", timeout=5)
        assert client.check() == "halt" and not client.allows_order("AAPL", reduce_only=True)
        assert client.status()["stale_after"] <= 1.0
    service.heartbeat()  # the service is back
    wait_for(lambda: client.check() == "running" and client.cause is None)


@pytest.mark.parametrize("payload", [
    '{"type": "heartbeat", "ts": "soon", "stale_after": 5}',
    '{"type": "heartbeat", "ts": NaN, "stale_after": 5}',
    '{"type": "heartbeat", "ts": true, "stale_after": 5}',
    '{"type": "heartbeat", "stale_after": 5}',
    "not json",
], ids=["text", "nan", "bool", "no-ts", "garbage"])
def test_an_unreadable_heartbeat_reads_stale(payload, service, make_switch):
    service.running()
    client = make_switch()
    wait_for(lambda: client.check() == "running")
    service.r.set("killswitch:heartbeat", payload)
    wait_for(lambda: client.cause == "heartbeat_stale")
    assert client.check() == "halt"


@pytest.mark.parametrize("claimed", ["1e9", "Infinity", '"long"', "-3", "null"])
def test_a_heartbeat_bound_beyond_the_cap_or_unreadable_counts_as_the_cap(claimed, service, make_switch):
    service.running()
    client = make_switch(max_stale_after=2.0)
    service.r.set("killswitch:heartbeat",
                  f'{{"type": "heartbeat", "ts": {time.time()}, "stale_after": {claimed}}}')
    wait_for(lambda: client.check() == "running" and client.status()["stale_after"] == 2.0)
    # A bound within the cap is the service's to choose.
    service.heartbeat(stale_after=1.5)
    wait_for(lambda: client.status()["stale_after"] == 1.5)
