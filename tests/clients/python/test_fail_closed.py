"""The client reads halt whenever the state cannot be known, says why, and resumes
by itself -- against a real redis-server stopped, restarted and flushed under it."""

from __future__ import annotations

import sys

import pytest
import redis
from killswitch_client import KillSwitch

from tests.conftest import wait_for


def reads(client: KillSwitch, level: str, cause: str | None = None):
    return lambda: client.check() == level and client.cause == cause


def test_importable_without_django():
    import subprocess

    code = ("import sys, killswitch_client as c; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('django', 'rest_framework')]; "
            "assert not bad, bad; print(c.KillSwitch.__name__, c.AsyncKillSwitch.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "KillSwitch AsyncKillSwitch"


def test_before_the_first_read_the_client_reads_halt(server):
    client = KillSwitch(server.url, start=False, exit_on_kill=False)
    assert client.check() == "halt"
    assert client.cause == "connecting"
    assert not client.allows_signals()
    assert not client.allows_order("AAPL", reduce_only=True)


def test_known_state_reads_running_and_then_follows_pushes(service, make_client):
    service.running()
    client = make_client()
    wait_for(reads(client, "running"))
    assert client.allows_signals() and client.allows_order("AAPL")
    service.publish({"global": "pause"}, reasons={"global": "CPI release"})
    wait_for(reads(client, "pause"))
    assert client.status()["reason"] == "CPI release"
    assert client.version == service.version


def test_missing_state_reads_halt_until_published(service, make_client):
    service.heartbeat()  # the heartbeat alone is not a state
    client = make_client()
    wait_for(reads(client, "halt", "state_missing"))
    service.running()
    wait_for(reads(client, "running"))


def test_missing_heartbeat_reads_halt(service, make_client):
    service.publish()
    client = make_client()
    wait_for(reads(client, "halt", "heartbeat_missing"))
    service.heartbeat()
    wait_for(reads(client, "running"))


def test_stale_heartbeat_reads_halt_and_fresh_one_resumes(service, make_client):
    service.running()
    client = make_client()
    wait_for(reads(client, "running"))
    # A heartbeat written 10 s ago with stale_after 5: the service stopped proving it is alive.
    service.heartbeat(ts_offset=-10)
    wait_for(reads(client, "halt", "heartbeat_stale"))
    service.heartbeat()
    wait_for(reads(client, "running"))


def test_heartbeat_stale_after_is_honoured_and_can_be_overridden(service, make_client):
    service.publish()
    service.heartbeat(stale_after=0.3)  # then no more heartbeats
    follows_service = make_client()
    overridden = make_client(stale_after=3600, max_stale_after=3600)
    wait_for(lambda: follows_service.cause == "heartbeat_stale")
    assert follows_service.check() == "halt"
    # The same heartbeat is within an hour-long bound.
    assert overridden.check() == "running" and overridden.cause is None


def test_redis_stopped_reads_halt_at_once_and_recovers_after_restart(server, service, make_client):
    service.running({"account:DU1": "pause"})
    client = make_client(account="DU1")
    wait_for(reads(client, "pause"))
    server.stop()
    wait_for(lambda: client.cause in ("subscription_lost", "redis_unreachable"))
    assert client.check() == "halt"
    assert not client.allows_order("AAPL", reduce_only=True)
    server.start()  # comes back empty, as after a crash
    wait_for(reads(client, "halt", "state_missing"))
    service.running({"account:DU1": "pause"})  # what the reconciler does
    wait_for(reads(client, "pause"))


def test_flush_under_a_live_client_reads_halt_until_republished(service, make_client):
    service.running()
    client = make_client()
    wait_for(reads(client, "running"))
    service.r.flushall()
    wait_for(reads(client, "halt", "state_missing"))
    service.running()
    wait_for(reads(client, "running"))


def test_lost_subscription_reconnects_and_reloads_what_it_missed(service, make_client):
    service.running()
    client = make_client(backstop_interval=3600)  # only the reconnect reload can catch up
    wait_for(reads(client, "running"))
    for entry in service.r.client_list():
        if entry.get("name") == "killswitch-client":
            service.r.client_kill_filter(_id=entry["id"])
    # Written while the client is reconnecting, without a pub/sub message.
    service.r.hset("killswitch:state", mapping={"global": "halt", "version": 99})
    service.r.set("trading_switch", "halt")
    wait_for(reads(client, "halt", None))
    assert client.version == 99
    assert client.status()["scope"] == "global"


def test_raw_redis_cli_kill_stops_the_client_before_any_audit(service, make_client):
    service.running()
    ran = []
    client = make_client(on_kill=lambda: ran.append(True))
    wait_for(reads(client, "running"))
    service.r.set("trading_switch", "kill")  # redis-cli SET trading_switch kill
    wait_for(reads(client, "kill"))
    assert client.status()["scope"] == "trading_switch"
    assert ran == [True]  # on_kill ran once, in this thread, at the check that saw kill
    client.check()
    assert ran == [True]


def test_raw_resume_never_lifts_a_halt_the_state_holds(service, make_client):
    service.running({"global": "halt"})
    client = make_client()
    wait_for(reads(client, "halt"))
    service.r.set("trading_switch", "running")  # redis-cli SET trading_switch running
    service.heartbeat()
    wait_for(lambda: client.status()["trading_switch"] == "running")  # the backstop read has seen it
    assert client.check() == "halt"
    assert client.status()["scope"] == "global"


def test_a_value_that_is_not_a_level_reads_halt(service, make_client):
    service.running()
    client = make_client()
    wait_for(reads(client, "running"))
    service.r.set("trading_switch", "nuke")
    wait_for(reads(client, "halt"))
    assert client.status()["scope"] == "trading_switch"


@pytest.mark.parametrize("url", ["redis://127.0.0.1:1/0"])
def test_unreachable_from_the_start_reads_halt_with_cause(url, make_client):
    client = make_client(url=url)
    wait_for(lambda: client.cause == "redis_unreachable")
    assert client.check() == "halt"
    with pytest.raises(Exception) as info:
        client.gate("AAPL")
    assert "Redis is unreachable" in str(info.value)
    assert not isinstance(info.value, redis.RedisError)
