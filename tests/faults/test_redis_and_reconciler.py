"""Redis killed, restarted empty and flushed around an activation; the reconciler stopped."""

from __future__ import annotations

import time

import pytest
import redis

from killswitch import services
from killswitch.models import Event
from tests.conftest import wait_for
from tests.faults.conftest import Probe, figure, since

pytestmark = pytest.mark.fault


def test_redis_killed_during_an_activation_and_restarted_empty(stack, probes, trader, settings):
    stack.start("reconciler")
    settings.REDIS_URL = stack.redis.url
    probe = Probe(stack.redis.url, "DU1")
    probes.append(probe)
    wait_for(lambda: (probe.current() or {}).get("level") == "running", timeout=20)

    stack.redis.stop(kill=True)
    t_down = time.time()
    result = services.activate(scope="account:DU1", level="halt", reason="crash while Redis is down",
                               actor=trader, source="api")  # the publish after commit fails; DB has it
    assert result.changed
    fail_closed = wait_for(lambda: (probe.current() or {}).get("level") == "halt" and probe.current(), timeout=10)
    figure("redis killed during activation", "client fail-closed after Redis loss", since(t_down) if fail_closed else "never")

    stack.redis.start()  # empty, same port
    t_up = time.time()
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    wait_for(lambda: client.hget("killswitch:state", "account:DU1") == "halt", timeout=5)
    figure("redis killed during activation", "state republished after restart", since(t_up))
    applied = wait_for(lambda: (probe.current() or {}).get("version") == result.version
                       and probe.current()["cause"] is None, timeout=10)
    assert applied
    figure("redis killed during activation", "client applied the activation", since(t_up))
    events = Event.objects.count()
    assert client.llen("risk:kill_switch:log") == events  # rebuilt from the database
    figure("redis killed during activation", "events lost", 0)


def test_flush_right_after_an_activation(stack, probes, trader, settings):
    stack.start("reconciler")
    settings.REDIS_URL = stack.redis.url
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    probe = Probe(stack.redis.url, "DU1")
    probes.append(probe)
    wait_for(lambda: (probe.current() or {}).get("level") == "running", timeout=20)
    result = services.activate(scope="global", level="kill", reason="r", actor=trader, source="api")
    client.flushall()
    t0 = time.time()
    wait_for(lambda: client.get("trading_switch") == "kill", timeout=2)
    figure("flush after activation", "healed (trading_switch back)", since(t0))
    wait_for(lambda: (probe.current() or {}).get("version") == result.version
             and probe.current()["level"] == "kill", timeout=10)
    assert all(v["level"] != "running" for v in probe.views()
               if v["t"] > t0)  # never read as running in between
    figure("flush after activation", "client read running during the gap", "0 times")


def test_reconciler_stopped_clients_fail_closed_then_recover(stack, probes, settings):
    stack.start("reconciler")
    probe = Probe(stack.redis.url, "DU1")
    probes.append(probe)
    wait_for(lambda: (probe.current() or {}).get("level") == "running", timeout=20)
    stack.kill("reconciler")
    t0 = time.time()
    stale = wait_for(lambda: (probe.current() or {}).get("cause") == "heartbeat_stale" and probe.current(),
                     timeout=15)
    assert stale["level"] == "halt"
    figure("reconciler stopped", "clients read halt (stale heartbeat) after", since(t0))
    stack.start_process("reconciler")
    t1 = time.time()
    wait_for(lambda: (probe.current() or {}).get("level") == "running", timeout=20)
    figure("reconciler stopped", "clients resumed after restart", since(t1))
