"""Order gate decisions for every level on every scope, through a live client.

running: any order; pause: reduce-only only; halt and kill: none. A scope applies
when it is global, the process's account or strategy, or the order's symbol.
"""

from __future__ import annotations

import pytest
from killswitch_client import KillSwitch, OrderRefused

from riskcontrol.embedded_redis import EmbeddedRedis
from tests.clients.python.conftest import Service
from tests.conftest import wait_for

SCOPES = ["global", "account:DU1", "strategy:momo", "symbol:AAPL", "trading_switch"]
LEVELS = ["running", "pause", "halt", "kill"]


@pytest.fixture(scope="module")
def live():
    server = EmbeddedRedis().start()
    service = Service(server.url)
    service.running()
    ran: list[str] = []
    client = KillSwitch(server.url, account="DU1", strategy="momo", exit_on_kill=False,
                        on_kill=lambda: ran.append("on_kill"), backstop_interval=0.05)
    wait_for(lambda: client.check() == "running")
    yield service, client, ran
    client.close()
    service.r.close()
    server.cleanup()


def apply(service: Service, client: KillSwitch, scope: str, level: str) -> None:
    service.r.set("trading_switch", "running")
    if scope == "trading_switch":
        version = service.running()
        service.r.set("trading_switch", level)
        wait_for(lambda: client.status()["trading_switch"] == level and client.version == version)
    else:
        version = service.running({scope: level}, reasons={scope: f"test {level} {scope}"})
        wait_for(lambda: client.version == version and client.cause is None)


@pytest.mark.parametrize("scope", SCOPES)
@pytest.mark.parametrize("level", LEVELS)
def test_gate_decision(live, scope, level):
    service, client, ran = live
    apply(service, client, scope, level)
    process_scope = scope != "symbol:AAPL"  # a symbol scope stops orders for that symbol only
    assert client.check() == (level if process_scope else "running")
    assert client.allows_signals() == (level == "running" or not process_scope)

    expect_open = level == "running"
    expect_reduce = level in ("running", "pause")
    assert client.allows_order("AAPL") is expect_open
    assert client.allows_order("aapl", reduce_only=True) is expect_reduce
    # Another symbol is only affected by process-wide scopes.
    assert client.allows_order("MSFT") is (expect_open or not process_scope)

    if expect_open:
        client.gate("AAPL")
        return
    with pytest.raises(OrderRefused) as info:
        client.gate("AAPL")
    refused = info.value
    assert (refused.level, refused.scope, refused.symbol, refused.cause) == (level, scope, "AAPL", None)
    assert f"kill switch at {level} on scope {scope}" in str(refused)
    if scope != "trading_switch":
        assert refused.reason == f"test {level} {scope}"
        assert f"(reason: test {level} {scope})" in str(refused)
    else:
        assert refused.reason == f"redis-cli SET trading_switch {level}"
    if level == "pause":
        assert "Only reduce-only orders are allowed at pause." in str(refused)
        client.gate("AAPL", reduce_only=True)
    else:
        with pytest.raises(OrderRefused, match="Reduce-only order for AAPL refused"):
            client.gate("AAPL", reduce_only=True)


def test_scopes_of_other_processes_do_not_apply(live):
    service, client, _ = live
    version = service.running({"account:OTHER": "kill", "strategy:other": "halt", "symbol:MSFT": "halt"})
    wait_for(lambda: client.version == version)
    assert client.check() == "running"
    assert client.allows_order("AAPL")
    assert not client.allows_order("MSFT")


def test_most_severe_matching_scope_wins(live):
    service, client, _ = live
    version = service.running({"global": "pause", "strategy:momo": "halt", "symbol:AAPL": "pause"})
    wait_for(lambda: client.version == version)
    assert client.check() == "halt"
    with pytest.raises(OrderRefused) as info:
        client.gate("AAPL", reduce_only=True)
    assert (info.value.level, info.value.scope) == ("halt", "strategy:momo")


def test_failing_closed_refuses_even_reduce_only_and_names_the_cause(live):
    service, client, _ = live
    service.running()
    service.heartbeat(ts_offset=-60)
    wait_for(lambda: client.cause == "heartbeat_stale")
    with pytest.raises(OrderRefused) as info:
        client.gate("AAPL", reduce_only=True)
    assert (info.value.level, info.value.scope, info.value.cause) == ("halt", "client", "heartbeat_stale")
    assert "service heartbeat is older than the staleness bound" in str(info.value)
    service.heartbeat()
    wait_for(lambda: client.cause is None)


def test_on_kill_runs_once_per_kill_when_not_exiting(live):
    service, client, ran = live
    ran.clear()
    for _ in range(2):
        version = service.running({"global": "kill"})
        wait_for(lambda v=version: client.version == v)
        assert client.check() == "kill"
        assert client.check() == "kill"
        version = service.running()
        wait_for(lambda v=version: client.version == v)
        assert client.check() == "running"
    assert ran == ["on_kill", "on_kill"]
