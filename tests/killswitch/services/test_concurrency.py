"""50 threads activating and deactivating one scope at once (run on SQLite and, in CI,
on PostgreSQL): one consistent state, exactly one event per real transition."""

from __future__ import annotations

import random
import threading

import pytest
from django.db import connection

from killswitch import services
from killswitch.models import Event, Scope

pytestmark = pytest.mark.django_db(transaction=True)


def test_fifty_threads_leave_one_consistent_state(risk_officer, set_policy, redis_client):
    set_policy(cooldown_minutes=0)
    results: list[services.TransitionResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(50)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        try:
            start.wait()
            for _ in range(3):
                if rng.random() < 0.5:
                    r = services.activate(scope="account:DU1", level=rng.choice(["pause", "halt", "kill"]),
                                          reason=f"t{seed}", actor=risk_officer, source="api")
                else:
                    r = services.deactivate(scope="account:DU1", actor=risk_officer, source="api")
                with lock:
                    results.append(r)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert len(results) == 150

    applied = list(Event.objects.filter(scope_kind="account", outcome="applied").order_by("seq"))
    changed = [r for r in results if r.changed]
    assert len(applied) == len(changed)
    assert sorted(r.seq for r in changed) == [e.seq for e in applied]
    level = "running"
    for event in applied:
        assert event.previous_level == level, f"event #{event.seq} was based on a stale read"
        level = event.new_level
    assert Scope.objects.get(kind="account", key="DU1").level == level
    assert Event.objects.count() == 150
    assert services.verify_audit_chain().ok
    versions = [e.version for e in applied]
    assert versions == list(range(1, len(applied) + 1))
    assert redis_client.hget("killswitch:state", "account:DU1") == level
