"""Fixtures for broker work: a real Celery worker process on the real Redis broker and
the pytest file-backed test database, and the broker configuration both sides share.

No eager mode: tasks go through Redis to a `celery worker` subprocess, acknowledged
late, exactly as in production.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings

from brokers import config as broker_config
from brokers.models import TERMINAL_STATES, BrokerRun
from tests.conftest import wait_for

BASE_DIR = Path(settings.BASE_DIR)

# Fast retries and short leases so that failure scenarios finish in seconds.
FAST_RUNS = {"max_attempts": 5, "retry_backoff_seconds": 0.3, "retry_backoff_max_seconds": 1,
             "verify_rounds": 3, "lease_seconds": 4}


def write_policy(path: Path, brokers: dict[str, Any]) -> Path:
    """The project's policy file with `brokers` replaced (the worker reads it via RISK_LIMITS_PATH)."""
    base = yaml.safe_load(Path(settings.RISK_LIMITS_PATH).read_text())
    base["brokers"] = brokers
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


class Worker:
    """A `celery worker --pool=solo` subprocess consuming `queues` (the broker queue by
    default); kill() is a SIGKILL (a crashed worker), pause()/resume() a SIGSTOP/SIGCONT
    (a worker that hangs with its messages and leases)."""

    def __init__(self, env: dict[str, str], log_dir: Path, queues: str = settings.BROKER_QUEUE) -> None:
        self.env = env
        self.log_dir = log_dir
        self.queues = queues
        self.process: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def start(self, timeout: float = 60) -> Worker:
        self.log_path = self.log_dir / f"worker-{uuid.uuid4().hex[:6]}.log"
        log = self.log_path.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "riskcontrol", "worker", "--pool=solo", "--loglevel=INFO",
             "-Q", self.queues, "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-n", f"test-{uuid.uuid4().hex[:6]}@%h"],
            cwd=BASE_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while "ready." not in self.log():
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited with {self.process.returncode}:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"celery worker not ready within {timeout}s:\n{self.log()}")
            time.sleep(0.1)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)  # a paused worker cannot handle SIGTERM
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


def worker_env(policy_path: Path, *, paper_only: bool) -> dict[str, str]:
    from riskcontrol.env import current_database_url

    env = dict(os.environ)
    env.update({
        "DATABASE_URL": current_database_url(),  # the test database (SQLite file or PostgreSQL)
        "REDIS_URL": os.environ["REDIS_URL"],
        "RISK_LIMITS_PATH": str(policy_path),
        "PAPER_ONLY": "true" if paper_only else "false",
        "CELERY_VISIBILITY_TIMEOUT": "5",
        "LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def use_config(mp: pytest.MonkeyPatch, brokers: dict[str, Any]) -> broker_config.BrokersConfig:
    """Make this test process read the same brokers: section as the worker."""
    parsed = broker_config.parse_brokers_config(brokers)
    mp.setattr(broker_config, "_cached", lambda: parsed)
    return parsed


def wait_runs_finished(timeout: float = 30.0) -> list[BrokerRun]:
    """Bounded wait until every run is completed or failed; returns them oldest first."""
    def done() -> list[BrokerRun] | None:
        runs = list(BrokerRun.objects.order_by("id"))
        return runs if runs and all(r.state in TERMINAL_STATES for r in runs) else None

    return wait_for(done, timeout=timeout)


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("brokers")


class SweepLoop:
    """`manage.py killswitch sweep` as its own process, as in production (an ib_async
    session belongs to the thread and event loop that opened it)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        with log_path.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "killswitch", "sweep", "--interval", "0.3"], cwd=BASE_DIR,
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


@pytest.fixture
def start_sweep(django_db_blocker, tmp_path) -> Iterator[Callable[..., SweepLoop]]:
    """start_sweep(policy_path, paper_only=...) -> a running sweep loop, stopped after the test."""
    started: list[SweepLoop] = []

    def start(policy_path: Path, *, paper_only: bool = True) -> SweepLoop:
        with django_db_blocker.unblock():
            env = worker_env(policy_path, paper_only=paper_only)
        loop = SweepLoop(env, tmp_path / f"sweep-{len(started)}.log")
        started.append(loop)
        return loop

    yield start
    for loop in started:
        loop.stop()


@pytest.fixture(scope="module")
def start_worker(django_db_setup, django_db_blocker, module_tmp) -> Iterator[Callable[..., Worker]]:
    """start_worker(policy_path, paper_only=...) -> a running Worker, stopped at module end."""
    started: list[Worker] = []

    def start(policy_path: Path, *, paper_only: bool = True, queues: str = settings.BROKER_QUEUE,
              extra_env: dict[str, str] | None = None) -> Worker:
        with django_db_blocker.unblock():
            env = worker_env(policy_path, paper_only=paper_only)
        env.update(extra_env or {})
        worker = Worker(env, module_tmp, queues).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()
