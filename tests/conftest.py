"""Shared fixtures: the personas (viewer, trader, risk officer, superuser), real Redis,
a live reconciler, policy overrides and the service clock."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import Group

from killswitch import policy
from killswitch.runtime import background, clock

FIGURES: list[tuple[str, str, str]] = []


def figure(test: str, name: str, value: object) -> None:
    """Record a figure a fault drill measured; the run prints them all at the end."""
    FIGURES.append((test, name, str(value)))


def pytest_sessionfinish(session, exitstatus) -> None:
    """The SQLite test database runs in WAL mode; Django removes the database file but
    not its -wal and -shm companions when a connection of another thread outlived it."""
    from django.conf import settings

    name = settings.DATABASES["default"].get("TEST", {}).get("NAME")
    if name and settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
        for suffix in ("-wal", "-shm"):
            Path(f"{name}{suffix}").unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("fault drill figures")
    for test, name, value in FIGURES:
        terminalreporter.write_line(f"{test:<48} {name:<44} {value}")


def wait_for(predicate: Callable[[], object], timeout: float = 5.0, interval: float = 0.02):
    """Poll until predicate() is truthy; return its value or fail after `timeout`.

    A bound on waiting, not a speed assertion: speed is measured in bench/.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


@pytest.fixture(scope="session", autouse=True)
def _test_flush_may_truncate_the_audit_log():
    """PostgreSQL refuses TRUNCATE of the audit events (migration 0007) unless the
    transaction says it is deliberate; the test database's flush between tests is."""
    from django.db.backends.postgresql.operations import DatabaseOperations

    original = DatabaseOperations.execute_sql_flush

    def execute_sql_flush(self, sql_list):
        return original(self, ["SET LOCAL killswitch.allow_truncate = 'on'", *sql_list])

    DatabaseOperations.execute_sql_flush = execute_sql_flush
    yield
    DatabaseOperations.execute_sql_flush = original


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """The real Redis the service publishes to, emptied (db 0 only) before the test."""
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True, encoding_errors="replace")
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _no_refusals_counted_by_earlier_tests() -> Iterator[None]:
    """Identical refusals within a window are counted, not recorded again
    (services.refusals): a test's first refusal must not count as a repeat of another
    test's."""
    client = redis.Redis.from_url(settings.REDIS_URL, decode_responses=True)
    try:
        keys = list(client.scan_iter("killswitch:refusals*"))
        if keys:
            client.delete(*keys)
    except redis.RedisError:
        pass
    finally:
        client.close()
    yield


@pytest.fixture(autouse=True)
def _reset_clock() -> Iterator[None]:
    clock.reset()
    yield
    clock.reset()


@pytest.fixture(autouse=True)
def _drain_after_commit_lane(monkeypatch) -> Iterator[None]:
    """What a test queued on the after-commit lane (live pushes, Celery messages) runs
    before its monkeypatches are undone (this fixture depends on monkeypatch, so it is
    torn down first) and never spills into the next test."""
    yield
    assert background.flush(10), "the after-commit lane did not drain within 10 s"


@pytest.fixture
def set_policy(monkeypatch) -> Callable[..., policy.KillSwitchPolicy]:
    """Override kill_switch policy values for one test: set_policy(cooldown_minutes=0)."""

    def apply(**overrides) -> policy.KillSwitchPolicy:
        base = policy.get_policy()
        new = dataclasses.replace(base, kill_switch=dataclasses.replace(base.kill_switch, **overrides))
        monkeypatch.setattr(policy, "get_policy", lambda: new)
        return new.kill_switch

    return apply


def _user(django_user_model, username: str, group: str | None = None, **extra):
    user = django_user_model.objects.create_user(username=username, password=f"{username}-pass", **extra)
    if group:
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def viewer(django_user_model):
    return _user(django_user_model, "vera_viewer", "viewer")


@pytest.fixture
def trader(django_user_model):
    return _user(django_user_model, "tom_trader", "trader")


@pytest.fixture
def risk_officer(django_user_model):
    return _user(django_user_model, "rita_risk", "risk_officer")


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser(username="sam_super", password="sam_super-pass")


@pytest.fixture
def nobody(django_user_model):
    """An authenticated user in no role."""
    return _user(django_user_model, "nina_nobody")


@pytest.fixture
def reconciler(transactional_db, redis_client):
    """A live reconciler thread against the real database and Redis."""
    from killswitch.distribution.reconciler import Reconciler

    stop = threading.Event()
    worker = Reconciler(interval=0.05, heartbeat_interval=0.2)
    thread = threading.Thread(target=worker.run_forever, args=(stop,), daemon=True)
    thread.start()
    yield worker
    stop.set()
    thread.join(timeout=5)
