"""The same behaviour scenarios against both flavours (the threaded KillSwitch and
AsyncKillSwitch), on a real redis-server, so that a rule that drifts between them fails
here. Both drive the same no-I/O core; these prove the drivers feed it the same way."""

from __future__ import annotations

import pytest
from killswitch_client import OrderRefused

from tests.clients.python.conftest import build
from tests.conftest import wait_for


def reads(client, level: str, cause: str | None = None):
    return lambda: client.check() == level and client.cause == cause


def registration(service, client) -> dict:
    return service.registration(client.identity.client_id) or {}


def test_follows_the_keys_and_acknowledges_every_version(service, make_switch):
    service.running()
    client = make_switch(account="DU1", strategy="momo", name="momo-1")
    wait_for(reads(client, "running"))
    assert client.allows_signals() and client.allows_order("AAPL")
    version = service.publish({"strategy:momo": "pause"}, reasons={"strategy:momo": "drawdown"})
    wait_for(reads(client, "pause"))
    assert client.version == version
    assert client.status()["reason"] == "drawdown"
    assert client.allows_order("AAPL", reduce_only=True) and not client.allows_order("AAPL")
    with pytest.raises(OrderRefused, match=r"pause on scope strategy:momo \(reason: drawdown\)"):
        client.gate("AAPL")

    wait_for(lambda: registration(service, client).get("version") == version)
    entry = registration(service, client)
    assert (entry["name"], entry["account"], entry["strategy"]) == ("momo-1", "DU1", "momo")
    assert (entry["level"], entry["scope"], entry["cause"]) == ("pause", "strategy:momo", None)
    acked = {int(f["version"]): f["level"] for _, f in service.r.xrange("killswitch:acks")
             if f["client_id"] == client.identity.client_id}
    assert acked[version] == "pause" and acked[version - 1] == "running"


def test_a_message_only_triggers_a_reread(service, make_switch):
    """With the backstop out of the way, a published change still applies at once (the
    message makes the client re-read), and a raw SET reaches it through keyspace
    notifications."""
    service.running()
    client = make_switch(backstop_interval=3600)
    wait_for(reads(client, "running"))
    service.publish({"global": "halt"}, reasons={"global": "desk"})
    wait_for(reads(client, "halt"))
    assert client.status()["reason"] == "desk"
    service.publish({"global": "running"})
    wait_for(reads(client, "running"))
    service.r.config_set("notify-keyspace-events", "K$")
    service.r.set("trading_switch", "pause")  # redis-cli SET trading_switch pause
    wait_for(reads(client, "pause"))
    assert client.status()["scope"] == "trading_switch"


def test_fails_closed_on_missing_and_stale_state_and_resumes(service, make_switch):
    service.heartbeat()
    client = make_switch()
    wait_for(reads(client, "halt", "state_missing"))
    service.publish()
    service.r.delete("killswitch:heartbeat")
    wait_for(reads(client, "halt", "heartbeat_missing"))
    service.heartbeat(ts_offset=-10)  # written 10 s ago, stale_after 5
    wait_for(reads(client, "halt", "heartbeat_stale"))
    with pytest.raises(OrderRefused, match="cause: heartbeat_stale"):
        client.gate("AAPL", reduce_only=True)
    wait_for(lambda: registration(service, client).get("cause") == "heartbeat_stale")
    service.heartbeat()
    wait_for(reads(client, "running"))


def test_redis_stopped_reads_halt_and_recovers_after_restart(server, service, make_switch):
    service.running({"account:DU1": "pause"})
    client = make_switch(account="DU1")
    wait_for(reads(client, "pause"))
    server.stop()
    wait_for(lambda: client.cause in ("subscription_lost", "redis_unreachable"))
    assert client.check() == "halt" and not client.allows_order("AAPL", reduce_only=True)
    server.start()  # back empty, as after a crash
    wait_for(reads(client, "halt", "state_missing"))
    service.running({"account:DU1": "pause"})  # what the reconciler does
    wait_for(reads(client, "pause"))


def test_unreachable_from_the_start_names_the_cause(make_switch):
    client = make_switch(url="redis://127.0.0.1:1/0")
    wait_for(lambda: client.cause == "redis_unreachable")
    assert client.check() == "halt"
    with pytest.raises(OrderRefused, match="Redis is unreachable"):
        client.gate("AAPL")


def test_raw_values_of_trading_switch(service, make_switch):
    service.running({"global": "halt"})
    client = make_switch()
    wait_for(reads(client, "halt"))
    service.r.set("trading_switch", "running")  # a raw resume never lifts the state's halt
    wait_for(lambda: client.status()["trading_switch"] == "running")
    assert client.check() == "halt" and client.status()["scope"] == "global"
    service.running()
    wait_for(reads(client, "running"))
    service.r.set("trading_switch", "nuke")  # not a level: fails closed
    wait_for(reads(client, "halt"))
    assert client.status()["scope"] == "trading_switch"


KILL_FLAVOURS = ["sync", "asyncio", "asyncio-async-on_kill"]


@pytest.mark.parametrize("kind", KILL_FLAVOURS)
def test_on_kill_runs_once_per_known_kill_and_a_blip_does_not_rearm_it(kind, server, service):
    """The drift this suite exists for: a fail-closed halt during a kill (a Redis blip)
    must not re-arm on_kill; only a known, lifted kill does."""
    ran: list[str] = []
    service.running()
    client = build(kind, server.url, exit_on_kill=False, backstop_interval=0.1,
                   on_kill=lambda: ran.append("on_kill"))
    try:
        wait_for(reads(client, "running"))
        service.running({"global": "kill"})
        wait_for(lambda: client.check() == "kill" and ran == ["on_kill"])
        server.stop()  # the blip
        wait_for(lambda: client.cause in ("subscription_lost", "redis_unreachable"))
        assert client.check() == "halt"
        server.start()
        service.running({"global": "kill"})  # the reconciler republishes the same kill
        wait_for(reads(client, "kill"))
        for _ in range(5):
            assert client.check() == "kill"
        assert ran == ["on_kill"]
        service.running()  # lifted: a new kill is a new kill
        wait_for(reads(client, "running"))
        service.running({"global": "kill"})
        wait_for(lambda: client.check() == "kill" and ran == ["on_kill", "on_kill"])
    finally:
        client.close()


def test_market_data_and_dead_mans_switch_travel_in_the_registration(service, make_switch):
    service.running()
    # The periodic refresh is out of the way: only the renewal path can write in time.
    client = make_switch(report_interval=3600)
    wait_for(reads(client, "running"))
    wait_for(lambda: registration(service, client).get("level") == "running")
    client.market_data("aapl", 1_700_000_000.5)
    client.heartbeat("signal-engine")
    entry = wait_for(lambda: (e := registration(service, client)).get("deadman") and e)
    assert entry["market_data"] == {"AAPL": 1_700_000_000.5}
    assert set(entry["deadman"]) == {"signal-engine"} and entry["deadman"]["signal-engine"] > 1.7e9
    with pytest.raises(ValueError, match="finite unix time"):
        client.market_data("AAPL", float("nan"))
    with pytest.raises(TypeError, match="non-empty string"):
        client.heartbeat("")


def test_gate_follows_symbol_scopes_and_the_most_severe_scope(service, make_switch):
    service.running({"global": "pause", "strategy:momo": "halt", "symbol:MSFT": "halt",
                     "account:OTHER": "kill"})
    client = make_switch(account="DU1", strategy="momo")
    wait_for(lambda: client.check() == "halt" and client.cause is None)
    with pytest.raises(OrderRefused) as info:
        client.gate("AAPL", reduce_only=True)
    assert (info.value.level, info.value.scope) == ("halt", "strategy:momo")
    service.running({"symbol:MSFT": "halt", "account:OTHER": "kill"})
    wait_for(reads(client, "running"))
    assert client.allows_order("AAPL") and not client.allows_order("msft")
