"""The asyncio flavour: same decisions, same fail-closed rules, same acknowledgements."""

from __future__ import annotations

import asyncio

import pytest
from killswitch_client import AsyncKillSwitch, OrderRefused


async def until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.01)


async def test_async_client_follows_state_gates_and_fails_closed(server, service):
    service.running()
    async with AsyncKillSwitch(server.url, account="DU1", strategy="momo", exit_on_kill=False,
                               backstop_interval=0.05) as ks:
        assert await ks.wait_ready()
        await until(lambda: ks.check() == "running")
        service.publish({"strategy:momo": "pause"}, reasons={"strategy:momo": "drawdown"})
        await until(lambda: ks.check() == "pause")
        assert ks.allows_order("AAPL", reduce_only=True) and not ks.allows_order("AAPL")
        with pytest.raises(OrderRefused, match=r"pause on scope strategy:momo \(reason: drawdown\)"):
            ks.gate("AAPL")

        entry = service.registration(ks.identity.client_id)
        assert (entry["account"], entry["strategy"], entry["version"]) == ("DU1", "momo", service.version)
        acked = [int(f["version"]) for _, f in service.r.xrange("killswitch:acks")]
        assert service.version in acked

        server.stop()
        await until(lambda: ks.cause in ("subscription_lost", "redis_unreachable"))
        assert ks.check() == "halt"
        server.start()
        await until(lambda: ks.cause == "state_missing")
        service.running()
        await until(lambda: ks.check() == "running" and ks.cause is None)


async def test_async_on_kill_is_awaited_and_check_reports_kill_without_exit(server, service):
    service.running()
    ran = []

    async def on_kill() -> None:
        await asyncio.sleep(0.01)
        ran.append("done")

    async with AsyncKillSwitch(server.url, on_kill=on_kill, exit_on_kill=False,
                               backstop_interval=0.05) as ks:
        await until(lambda: ks.check() == "running")
        service.publish({"global": "kill"})
        await until(lambda: ks.check() == "kill")
        await until(lambda: ran == ["done"])
        assert ks.check() == "kill"
        assert not ks.allows_order("AAPL", reduce_only=True)
