"""Two breaker processes (`manage.py killswitch breakers run`, as `make run` starts it,
started twice): one leads through the lease, a breach trips once, the follower takes
over when the leader hangs (SIGSTOP) and the woken leader trips nothing; after a
person resumes, the breach that lasts trips once more — once, not twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from django.conf import settings

from brokers import demo as demo_data
from brokers.adapters import paper
from killswitch import services as ks
from killswitch.breakers import config as breaker_config
from killswitch.breakers import state
from tests.conftest import wait_for

from ..conftest import BASE_DIR, use_config, worker_env
from .conftest import trips

pytestmark = pytest.mark.django_db(transaction=True)

BROKERS = {"paper": {"accounts": ["DU111111", "DU222222"]}}
BREAKER = {"name": "desk-loss", "kind": "max_loss", "scope": "account:DU111111", "level": "halt", "limit": 500}


class BreakerProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "killswitch", "breakers", "run", "--interval", "0.1"], cwd=BASE_DIR,
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def leader_pid() -> int | None:
    snap = state.snapshot()
    return int(snap.leader.split(":")[1]) if snap.fresh and snap.leader else None


@pytest.fixture
def processes(monkeypatch, tmp_path, django_db_blocker, redis_client, set_policy):
    set_policy(cooldown_minutes=0)
    use_config(monkeypatch, BROKERS)
    parsed = breaker_config.parse_breakers([BREAKER])
    monkeypatch.setattr(breaker_config, "_cached", lambda: parsed)
    policy = yaml.safe_load(Path(settings.RISK_LIMITS_PATH).read_text())
    policy["kill_switch"]["cooldown_minutes"] = 0
    policy.update(brokers=BROKERS, breakers=[BREAKER])
    path = tmp_path / "risk_limits.yaml"
    path.write_text(yaml.safe_dump(policy, sort_keys=False))
    with django_db_blocker.unblock():
        env = worker_env(path, paper_only=True)
    started = [BreakerProcess(env, tmp_path / f"breakers-{i}.log") for i in range(2)]
    yield started
    for p in started:
        p.stop()


def test_two_breaker_processes_trip_once_even_when_the_leader_hangs(processes):
    demo_data.seed_demo_data()
    pids = {p.pid: p for p in processes}
    first = wait_for(lambda: leader_pid() in pids and leader_pid(), timeout=60)
    wait_for(lambda: state.snapshot().rows[0]["state"] == "armed", timeout=10)
    paper.set_price("AAPL", "184")
    wait_for(lambda: trips("desk-loss"), timeout=10)
    time.sleep(1.0)  # both processes keep evaluating the lasting breach
    [trip] = trips("desk-loss")
    assert trip.outcome == "applied" and "P&L -600.00 USD" in trip.reason

    pids[first].signal(signal.SIGSTOP)  # the leader hangs, lease and all
    follower = wait_for(lambda: (now := leader_pid()) not in (None, first) and now, timeout=15)
    assert follower in pids
    pids[first].signal(signal.SIGCONT)  # ... and wakes up in the middle of its round
    time.sleep(1.5)
    assert len(trips("desk-loss")) == 1
    assert state.snapshot().rows[0]["state"] == "tripped"

    # A person resumes; the loss is still there: the breaker trips again, once.
    ks.deactivate(scope="account:DU111111", actor="cli:rita", source="cli", reason="looked at it")
    wait_for(lambda: len(trips("desk-loss")) == 2, timeout=10)
    time.sleep(1.0)
    assert [t.outcome for t in trips("desk-loss")] == ["applied", "applied"]
    for p in processes:
        assert p.process.poll() is None, p.log.read_text()[-3000:]
