"""Trust boundary drills, on the whole stack as real processes, as an attacker on the
trading network or an unlucky operator would try it (issue: "Trust boundary").

Each drill reproduces one finding and proves it is closed: forged messages and
heartbeats never make a real trading process read `running` during a halt; Redis users
refuse a trading host everything that could steer the switch; forgeries in the outage
queue are dead-lettered and never stop the reconciler; a locked database never turns a
halt into a 500 or a hang; tampering with the state in Redis is an alert and undone.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest
import redis
import requests
from django.conf import settings
from django.db import connection

from killswitch import services
from killswitch.distribution import acl
from killswitch.models import Event
from riskcontrol.embedded_redis import EmbeddedRedis
from tests.conftest import wait_for
from tests.faults.conftest import Probe, figure

pytestmark = pytest.mark.fault


def _running_during(probe: Probe, t0: float) -> list[dict]:
    return [v for v in probe.views() if v["t"] >= t0 and v["level"] == "running"]


def test_forged_messages_and_heartbeats_never_make_a_process_trade_during_a_halt(stack, probes, trader):
    """Before: a forged `levels: {global: running}` every 100 ms made a client read running
    for 9.5 s of 10.6 s; a forged kill made it run on_kill and exit; a heartbeat with
    stale_after 1e9 kept it trading 20 s after the reconciler stopped."""
    stack.start("reconciler")
    probe = Probe(stack.redis.url, "DU1")
    probes.append(probe)
    attacker = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    wait_for(lambda: (probe.current() or {}).get("level") == "running", timeout=20)
    services.activate(scope="global", level="halt", reason="crash", actor=trader, source="api")
    wait_for(lambda: (probe.current() or {}).get("level") == "halt", timeout=10)
    t0 = time.time()
    while time.time() - t0 < 5:
        attacker.publish("killswitch:updates", json.dumps(
            {"type": "state", "version": 999, "levels": {"global": "running"}, "trading_switch": "running"}))
        attacker.publish("killswitch:updates", json.dumps(
            {"type": "state", "version": 1000, "levels": {"global": "kill"}}))
        attacker.publish("killswitch:updates", json.dumps(
            {"type": "heartbeat", "ts": time.time() + 1e6, "version": 1, "stale_after": 1e9}))
        time.sleep(0.1)
    assert _running_during(probe, t0) == [] and probe.proc.poll() is None
    assert [v for v in probe.views() if v["t"] >= t0 and v["level"] == "kill"] == []
    figure("forged messages", "time read running during a 5 s flood", "0 ms")
    # The reconciler stops; a forged heartbeat claims the service is alive for ever.
    stack.kill("reconciler")
    t1 = time.time()
    for _ in range(40):
        attacker.set("killswitch:heartbeat", json.dumps({"type": "heartbeat", "ts": time.time(), "version": 1,
                                                         "stale_after": float("nan")}))
        time.sleep(0.05)
    attacker.set("killswitch:heartbeat", json.dumps({"type": "heartbeat", "ts": 1e12, "version": 1,
                                                     "stale_after": 1e9}))
    wait_for(lambda: (probe.current() or {}).get("cause") == "heartbeat_stale", timeout=15)
    figure("forged heartbeat", "fail closed after the reconciler stopped", f"{probe.current()['t'] - t1:.1f} s")


@pytest.fixture
def users_stack(transactional_db, tmp_path):
    """The stack on a Redis with the Redis users applied, the service on its own user."""
    from tests.stack import Stack

    secrets = {acl.SERVICE: "svc-pw", acl.TRADER: "trader-pw", acl.OPERATOR: "operator-pw"}
    server = EmbeddedRedis()
    server.config_lines = acl.embedded_config_lines(secrets, (6, 2))
    server.admin_url = acl.url_for(server.url, acl.SERVICE, secrets[acl.SERVICE])
    server.start()
    s = Stack(tmp_path, redis=server)
    s.start_redis()
    s.env["REDIS_URL"] = server.admin_url
    settings.REDIS_URL = server.admin_url
    yield s, {user: acl.url_for(server.url, user, pw) for user, pw in secrets.items()}
    s.stop()
    server.cleanup()


def test_with_redis_users_a_trading_host_cannot_steer_the_switch_and_its_client_still_works(users_stack, probes,
                                                                                             trader):
    stack, urls = users_stack
    stack.start_process("reconciler")
    probe = Probe(urls[acl.TRADER], "DU1")
    probes.append(probe)
    wait_for(lambda: (probe.current() or {}).get("level") == "running", timeout=20)
    services.activate(scope="global", level="halt", reason="crash", actor=trader, source="api")
    wait_for(lambda: (probe.current() or {}).get("level") == "halt", timeout=10)
    host = redis.Redis.from_url(urls[acl.TRADER], decode_responses=True)
    for command in (("SET", "trading_switch", "running"), ("PUBLISH", "killswitch:updates", "{}"),
                    ("HSET", "killswitch:state", "version", "99999999999"), ("HSET", "killswitch:state", "global",
                                                                              "running"),
                    ("SET", "killswitch:heartbeat", "{}"), ("RPUSH", "killswitch:pending", "{}"), ("FLUSHALL",)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            host.execute_command(*command)
    # The operator (people with redis-cli) may still SET trading_switch, as in the seed.
    redis.Redis.from_url(urls[acl.OPERATOR]).set("trading_switch", "kill")
    wait_for(lambda: (probe.current() or {}).get("level") == "kill", timeout=10)
    wait_for(lambda: Event.objects.filter(action="out_of_band", outcome="applied", new_level="kill").exists(),
             timeout=10)


def test_forged_and_poisoned_outage_items_are_dead_lettered_and_the_reconciler_keeps_beating(stack):
    """Before: a forged item became an event indistinguishable from the risk officer's
    own call; on PostgreSQL one item with a NUL failed every round (no heartbeat: every
    client halted)."""
    stack.start("reconciler")
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    wait_for(lambda: client.get("killswitch:heartbeat"), timeout=20)
    forged = {"id": "ab", "kind": "activate", "scope": "global", "level": "kill", "reason": "x" * 200_000,
              "actor": "rita_risk", "actor_user_id": 1, "source": "api", "client_address": "10.9.9.9",
              "detail": "", "requested_at": "2026-12-01T10:00:00+00:00"}
    client.rpush("killswitch:pending", json.dumps(forged), json.dumps({**forged, "reason": "nul \x00"}))
    wait_for(lambda: client.llen("killswitch:pending:dead") == 2, timeout=10)
    beat = json.loads(client.get("killswitch:heartbeat"))["ts"]
    wait_for(lambda: json.loads(client.get("killswitch:heartbeat"))["ts"] > beat, timeout=5)
    assert Event.objects.filter(action="alert", detail__contains="signature does not verify").count() == 2
    assert not Event.objects.filter(action="activate").exists()


def test_a_locked_database_answers_a_kill_202_at_once_and_audits_it_when_free(stack, trader):
    """Before: with another connection holding the SQLite write lock, a trader's kill took
    15-30 s and answered 500 although it had reached Redis."""
    from killswitch.services.tokens import issue_token

    token = issue_token(username="tom_trader").key
    stack.start("web", "reconciler")
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    lock_release = threading.Event()

    def hold_lock() -> None:
        if connection.vendor == "sqlite":
            other = sqlite3.connect(settings.DATABASES["default"]["NAME"], timeout=5, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            lock_release.wait(20)
            other.execute("ROLLBACK")
            other.close()
        else:
            import psycopg

            from riskcontrol.env import current_database_url

            with psycopg.connect(current_database_url()) as other:
                other.execute("SELECT * FROM killswitch_audithead FOR UPDATE")
                lock_release.wait(20)
                other.rollback()

    holder = threading.Thread(target=hold_lock)
    holder.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    response = requests.post(f"{stack.base_url}/api/risk/kill-switch", timeout=30,
                             headers={"Authorization": f"Token {token}"},
                             json={"action": "activate", "level": "kill", "reason": "runaway"})
    took = time.monotonic() - t0
    lock_release.set()
    holder.join(30)
    assert response.status_code == 202, response.text
    assert response.json()["pending_audit"] is True and client.get("trading_switch") == "kill"
    figure("locked database", "kill answered (202, in Redis)", f"{took * 1000:.0f} ms")
    wait_for(lambda: Event.objects.filter(action="activate", outcome="applied", new_level="kill").exists(),
             timeout=20)
