"""The reconciler against live Redis: heals losses, audits out-of-band writes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from django.conf import settings

from killswitch import services
from killswitch.models import Event, Scope
from killswitch.runtime import clock
from riskcontrol.env import current_database_url
from tests.conftest import wait_for
from tests.events import event_of

pytestmark = pytest.mark.django_db(transaction=True)


def _events(**filters):
    return list(Event.objects.filter(**filters).order_by("seq"))


def test_flushall_is_healed_and_recorded(reconciler, redis_client, trader):
    services.activate(scope="global", level="halt", reason="Market crash", actor=trader, source="api")
    wait_for(lambda: redis_client.get("killswitch:heartbeat"))
    redis_client.flushall()
    wait_for(lambda: redis_client.get("trading_switch") == "halt", timeout=10)
    assert redis_client.hget("killswitch:state", "global") == "halt"
    # (The reconciler's own first round may also have recorded the "first start".)
    restored = wait_for(lambda: [e for e in _events(action="restored", version=1) if "lost" in e.detail])
    assert "lost the kill switch state; republished version 1 (global halt)" in restored[0].detail
    # the log is rebuilt from the database (right after the state), newest first
    wait_for(lambda: redis_client.llen("risk:kill_switch:log") == Event.objects.count())
    entries = [json.loads(e) for e in redis_client.lrange("risk:kill_switch:log", 0, -1)]
    seqs = [e["seq"] for e in entries]
    assert seqs == sorted(seqs, reverse=True) and len(entries) == Event.objects.count()
    assert "activate" in [e["action"] for e in entries]
    assert Scope.objects.get(kind="global").level == "halt"  # the DB was never touched


def test_out_of_band_escalation_is_applied_and_audited_with_source_redis(reconciler, redis_client):
    wait_for(lambda: redis_client.hget("killswitch:state", "version") is not None)
    redis_client.set("trading_switch", "kill")
    event = wait_for(lambda: _events(action="out_of_band"), timeout=10)[0]
    assert (event.outcome, event.source, event.actor) == ("applied", "redis", "redis-cli")
    assert (event.previous_level, event.new_level) == ("running", "kill")
    assert Scope.objects.get(kind="global").level == "kill"
    wait_for(lambda: redis_client.hget("killswitch:state", "global") == "kill")
    # it appears in the CLI history too
    out = subprocess.run([sys.executable, "manage.py", "killswitch", "history", "--source", "redis"],
                         capture_output=True, text=True, env=_cli_env(), timeout=60)
    assert "out_of_band" in out.stdout and "running -> kill" in out.stdout


def test_out_of_band_resume_during_cooldown_is_reverted_as_a_violation(reconciler, redis_client, trader):
    # The reconciler's first round (Redis empty: restore) is over before the test acts.
    wait_for(lambda: redis_client.get("killswitch:heartbeat"))
    services.activate(scope="global", level="halt", reason="r", actor=trader, source="api")
    wait_for(lambda: redis_client.get("trading_switch") == "halt")
    redis_client.set("trading_switch", "running")
    violation = wait_for(lambda: _events(action="cooldown_violation"), timeout=10)[0]
    assert (violation.outcome, violation.source) == ("reverted", "redis")
    assert "Kill switch cooldown active. 60 minutes remaining (cooldown: 60 minutes)." in violation.detail
    wait_for(lambda: redis_client.get("trading_switch") == "halt", timeout=10)
    assert Scope.objects.get(kind="global").level == "halt"


def test_out_of_band_resume_after_cooldown_is_applied(reconciler, redis_client, trader):
    wait_for(lambda: redis_client.get("killswitch:heartbeat"))
    services.activate(scope="global", level="halt", reason="r", actor=trader, source="api")
    wait_for(lambda: redis_client.get("trading_switch") == "halt")
    clock.advance(minutes=61)
    redis_client.set("trading_switch", "running")
    event = wait_for(lambda: _events(action="out_of_band", outcome="applied"), timeout=10)[0]
    assert (event.previous_level, event.new_level) == ("halt", "running")
    assert Scope.objects.get(kind="global").level == "running"


@pytest.mark.parametrize("garbage", ["banana", "", "halt; FLUSHALL", "x" * 500])
def test_a_value_that_is_not_a_level_is_reverted_and_recorded(reconciler, redis_client, garbage):
    wait_for(lambda: redis_client.get("trading_switch") == "running")
    redis_client.set("trading_switch", garbage)
    event = wait_for(lambda: _events(action="out_of_band"), timeout=10)[0]
    assert event.outcome == "reverted" and "is not a level" in event.detail
    wait_for(lambda: redis_client.get("trading_switch") == "running", timeout=10)


def test_seed_spelling_is_accepted_like_the_seed_reads_it(reconciler, redis_client):
    wait_for(lambda: redis_client.get("trading_switch") == "running")
    redis_client.set("trading_switch", " HALT\n")
    event = wait_for(lambda: _events(action="out_of_band"), timeout=10)[0]
    assert (event.outcome, event.new_level) == ("applied", "halt")
    wait_for(lambda: redis_client.get("trading_switch") == "halt", timeout=10)


def test_heartbeat_carries_version_and_staleness_bound(reconciler, redis_client):
    beat = json.loads(wait_for(lambda: redis_client.get("killswitch:heartbeat")))
    assert beat["type"] == "heartbeat" and beat["version"] == 0 and beat["stale_after"] > 0


def test_redis_restart_is_healed(transactional_db, trader, settings):
    """Redis killed and started empty on the same port, under a live reconciler."""
    import threading

    import redis

    from killswitch.distribution.reconciler import Reconciler
    from riskcontrol.embedded_redis import EmbeddedRedis

    server = EmbeddedRedis().start()
    settings.REDIS_URL = server.url
    stop = threading.Event()
    thread = threading.Thread(target=Reconciler(interval=0.05).run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        services.activate(scope="account:DU1", level="kill", reason="r", actor=trader, source="api")
        client = redis.Redis.from_url(server.url, decode_responses=True)
        wait_for(lambda: client.hget("killswitch:state", "account:DU1") == "kill")
        server.stop(kill=True)
        server.start()
        wait_for(lambda: client.hget("killswitch:state", "account:DU1") == "kill", timeout=3)
        assert _events(action="restored")
    finally:
        stop.set()
        thread.join(5)
        server.cleanup()


def _cli_env():
    import os

    env = dict(os.environ)
    env["DATABASE_URL"] = current_database_url()
    env["REDIS_URL"] = settings.REDIS_URL
    return env


def test_the_reconciler_queues_stuck_notifications_again(reconciler, redis_client, trader, monkeypatch):
    """Wiring only (delivery itself: tests/dashboard/test_notifications.py): a pending
    notification nobody is delivering is handed to Celery again by the reconciler."""
    from datetime import timedelta

    from django.utils import timezone

    from killswitch.models import Notification
    from killswitch.notifications import services as notifications

    queued: list[int] = []
    monkeypatch.setattr(notifications, "_enqueue", queued.append)
    result = services.activate(scope="symbol:QQQ", level="halt", reason="r", actor=trader, source="api")
    row = Notification.objects.create(event=event_of(result), channel="test", kind="apprise", title="t", body="b",
                                      updated_at=timezone.now() - timedelta(minutes=5))
    wait_for(lambda: row.pk in queued, timeout=15)  # the reconciler looks every 5 s
    row.refresh_from_db()
    assert row.status == "pending" and row.updated_at > timezone.now() - timedelta(minutes=1)


def test_a_version_written_ahead_of_the_database_is_an_alert_and_is_undone(reconciler, redis_client, trader):
    """Somebody with Redis write access fakes a newer state: `HSET killswitch:state version
    99999999999 global running` during a halt. It is tampering: an alert naming what was
    found, and the database's state republished at once (a real activation afterwards
    must reach Redis, which it could not while Redis was ahead)."""
    wait_for(lambda: redis_client.get("killswitch:heartbeat"))
    services.activate(scope="global", level="halt", reason="crash", actor=trader, source="api")
    wait_for(lambda: redis_client.hget("killswitch:state", "global") == "halt")
    redis_client.hset("killswitch:state", mapping={"version": "99999999999", "global": "running"})
    alert = wait_for(lambda: _events(action="alert"), timeout=10)[0]
    assert "ahead of the database" in alert.detail and "99999999999" in alert.detail
    wait_for(lambda: redis_client.hget("killswitch:state", "version") == "1", timeout=10)
    assert redis_client.hget("killswitch:state", "global") == "halt"
    services.activate(scope="account:DU1", level="kill", reason="r", actor=trader, source="api")
    wait_for(lambda: redis_client.hget("killswitch:state", "account:DU1") == "kill", timeout=10)


def test_levels_that_no_event_explains_are_an_alert_and_are_undone(reconciler, redis_client, trader):
    wait_for(lambda: redis_client.get("killswitch:heartbeat"))
    result = services.activate(scope="account:DU1", level="halt", reason="crash", actor=trader, source="api")
    wait_for(lambda: redis_client.hget("killswitch:state", "account:DU1") == "halt")
    # Tamper only once the reconciler has seen the new version (a heartbeat carries it), or
    # a round that read Redis before the activation's publish republishes over the
    # tampering, healing it without a finding.
    wait_for(lambda: json.loads(redis_client.get("killswitch:heartbeat") or "{}").get("version") == result.version)
    redis_client.hset("killswitch:state", "account:DU1", "running")
    alert = wait_for(lambda: _events(action="alert"), timeout=10)[0]
    assert "other levels than the database" in alert.detail and "account:DU1=running" in alert.detail
    wait_for(lambda: redis_client.hget("killswitch:state", "account:DU1") == "halt", timeout=10)


@pytest.mark.parametrize("key", ["killswitch:state", "trading_switch", "risk:kill_switch:log"])
def test_a_contract_key_of_the_wrong_type_is_an_alert_and_is_rewritten(reconciler, redis_client, trader, key):
    """A key replaced with another type made every read of it fail (WRONGTYPE); the
    reconciler deletes it and republishes instead of failing every round."""
    wait_for(lambda: redis_client.get("killswitch:heartbeat"))
    services.activate(scope="global", level="halt", reason="crash", actor=trader, source="api")
    wait_for(lambda: redis_client.hget("killswitch:state", "global") == "halt")
    redis_client.delete(key)
    redis_client.sadd(key, "garbage")
    alert = wait_for(lambda: _events(action="alert"), timeout=10)[0]
    assert "wrong type" in alert.detail and key in alert.detail
    wait_for(lambda: redis_client.type(key) == ("string" if key == "trading_switch" else
                                                "hash" if key == "killswitch:state" else "list"), timeout=10)
    assert redis_client.get("trading_switch") == "halt"


def test_with_redis_resume_off_a_resume_written_to_redis_is_reverted_even_after_the_cooldown(
        reconciler, redis_client, trader, set_policy):
    set_policy(redis_resume=False)
    wait_for(lambda: redis_client.get("killswitch:heartbeat"))
    services.activate(scope="global", level="halt", reason="r", actor=trader, source="api")
    wait_for(lambda: redis_client.get("trading_switch") == "halt")
    clock.advance(minutes=61)
    redis_client.set("trading_switch", "running")
    refused = wait_for(lambda: _events(action="refused", source="redis"), timeout=10)[0]
    assert refused.outcome == "reverted" and "kill_switch.redis_resume is false" in refused.detail
    wait_for(lambda: redis_client.get("trading_switch") == "halt", timeout=10)
    assert Scope.objects.get(kind="global").level == "halt"
    # an escalation written to Redis still works
    redis_client.set("trading_switch", "kill")
    wait_for(lambda: Scope.objects.get(kind="global").level == "kill", timeout=10)


def test_a_process_that_reads_another_level_than_the_service_gives_it_is_an_alert(
        reconciler, redis_client, trader, set_policy):
    import time as _time

    from killswitch_client.contract import registration_entry

    set_policy(ack_timeout_seconds=0.5)
    wait_for(lambda: redis_client.get("killswitch:heartbeat"))
    services.activate(scope="account:DU1", level="halt", reason="r", actor=trader, source="api")

    def report(level: str) -> None:
        now = _time.time()
        redis_client.xadd("killswitch:clients", registration_entry("h:1:x", json.dumps({
            "client_id": "h:1:x", "name": "momo-1", "host": "h", "pid": 1, "account": "DU1", "strategy": "",
            "version": 1, "level": level, "scope": "global", "cause": None, "registered_at": now - 5,
            "last_seen": now})))

    for _ in range(20):  # it keeps reporting `running` (it believed a forged message, say)
        report("running")
        _time.sleep(0.1)
    alert = wait_for(lambda: _events(action="alert", detail__contains="momo-1"), timeout=10)[0]
    assert "reads running but the service gives it halt" in alert.detail and alert.scope_key == "DU1"
    for _ in range(10):
        report("running")
        _time.sleep(0.1)
    assert len(_events(action="alert", detail__contains="momo-1")) == 1  # once per disagreement


def test_a_round_after_the_lease_was_lost_writes_nothing(redis_client, trader):
    # A leader frozen (SIGSTOP) after its round began and woken once a follower took the
    # lease: the round it resumes acts on nothing, publishes no heartbeat, alerts nothing.
    from killswitch.distribution.reconciler import NOT_LEADER, Reconciler
    from killswitch.runtime.leadership import KEY_PREFIX, Lease

    reconciler = Reconciler(interval=0.05)
    assert reconciler.run_once()  # the first round restores the empty Redis
    reconciler.lease = Lease("reconciler-test", ttl=5)
    assert reconciler.lease.hold()
    redis_client.set(KEY_PREFIX + "reconciler-test", "other-host:1:abc")  # the follower took over
    redis_client.delete("killswitch:heartbeat")
    before = Event.objects.count()
    assert reconciler.run_once() == NOT_LEADER  # nothing to decide: still no heartbeat from it
    assert redis_client.get("killswitch:heartbeat") is None
    redis_client.set("trading_switch", "kill")
    assert reconciler.run_once() == NOT_LEADER
    assert Event.objects.count() == before and redis_client.get("killswitch:heartbeat") is None
    assert Scope.objects.get(kind="global").level == "running"
