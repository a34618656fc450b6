"""Leadership leases on the real Redis: one holder at a time, nobody renews or deletes
a lease it does not hold, a follower takes over when the leader stops, lets go, or is
stuck in a round. (The process-level drills, SIGSTOP included, are in tests/faults.)"""

from __future__ import annotations

import threading
import time

import pytest

from killswitch.runtime.leadership import KEY_PREFIX, Lease, run_as_leader
from tests.conftest import wait_for


@pytest.fixture
def name(redis_client) -> str:
    return f"test-{time.monotonic_ns()}"


def test_one_holder_at_a_time_and_release_hands_it_over(name, redis_client):
    first, second = Lease(name), Lease(name)
    assert first.hold() and first.held()
    assert not second.hold() and not second.held()
    assert redis_client.get(KEY_PREFIX + name) == first.token == second.holder()
    assert first.hold()  # the holder renews
    first.release()
    assert redis_client.get(KEY_PREFIX + name) is None
    assert second.hold() and second.holder() == second.token


def test_nobody_renews_or_releases_a_lease_it_does_not_hold(name, redis_client):
    holder, other = Lease(name), Lease(name)
    assert holder.hold()
    assert not other.renew()
    other.release()
    assert redis_client.get(KEY_PREFIX + name) == holder.token


def test_an_expired_lease_is_taken_and_its_old_holder_cannot_renew_it(name, redis_client):
    old, new = Lease(name, ttl=0.3), Lease(name, ttl=0.3)
    assert old.hold()
    wait_for(new.hold, timeout=3)  # the old holder stopped renewing
    assert not old.renew() and not old.held()
    assert redis_client.get(KEY_PREFIX + name) == new.token


def test_a_lease_needs_a_plain_name_and_a_positive_ttl():
    with pytest.raises(ValueError, match="expected letters, digits"):
        Lease("a b")
    with pytest.raises(ValueError, match="expected a positive number"):
        Lease("loop", ttl=0)


class Loop:
    """One singleton loop in a thread, recording the rounds it ran."""

    def __init__(self, name: str, *, ttl: float = 0.6, round_seconds: float = 0.0) -> None:
        self.lease = Lease(name, ttl=ttl)
        self.rounds: list[float] = []
        self.round_seconds = round_seconds
        self.stop = threading.Event()
        self.thread = threading.Thread(target=run_as_leader, args=(self.lease, self._round),
                                       kwargs={"interval": 0.05, "stop": self.stop, "max_round": 1.0},
                                       daemon=True)

    def _round(self) -> None:
        self.rounds.append(time.monotonic())
        if self.round_seconds:
            time.sleep(self.round_seconds)

    def start(self) -> Loop:
        self.thread.start()
        return self

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def test_only_the_leader_runs_rounds_and_a_follower_takes_over_when_it_stops(name):
    a = Loop(name).start()
    wait_for(lambda: len(a.rounds) >= 3)
    b = Loop(name).start()
    try:
        time.sleep(0.5)  # give b the chance to (wrongly) run rounds beside a
        assert b.rounds == [] and len(a.rounds) > 3
        a.halt()  # a clean stop releases the lease
        stopped = time.monotonic()
        wait_for(lambda: b.rounds, timeout=3)
        assert all(t < stopped for t in a.rounds)
    finally:
        a.halt()
        b.halt()


def test_a_leader_stuck_in_a_round_lets_the_lease_go(name):
    stuck = Loop(name, round_seconds=30).start()  # far longer than max_round (1 s)
    wait_for(lambda: stuck.rounds)
    follower = Loop(name).start()
    try:
        wait_for(lambda: follower.rounds, timeout=5)  # max_round 1 s + ttl 0.6 s + a poll
        assert len(stuck.rounds) == 1
    finally:
        follower.halt()
        stuck.stop.set()


def test_a_long_round_keeps_its_lease(name):
    slow = Loop(name, round_seconds=0.9).start()  # longer than the ttl, shorter than max_round
    wait_for(lambda: slow.rounds)
    follower = Loop(name).start()
    try:
        wait_for(lambda: len(slow.rounds) >= 3, timeout=10)
        assert follower.rounds == []  # the renewer kept the lease through every round
    finally:
        slow.halt()
        follower.halt()
