"""ReadsYieldToWrites: reads queue for a few slots; a write never waits behind them."""

from __future__ import annotations

import asyncio

from killswitch.throttling import ReadsYieldToWrites


async def test_a_write_enters_while_reads_wait_for_their_slot():
    entered: list[str] = []
    release = asyncio.Event()

    async def app(scope, receive, send):
        entered.append(f"{scope.get('method', scope['type'])} {scope['path']}")
        if scope.get("method") == "GET":
            await release.wait()

    gate = ReadsYieldToWrites(app, max_concurrent_reads=1)
    reads = [asyncio.create_task(gate({"type": "http", "method": "GET", "path": f"/r{i}"}, None, None))
             for i in range(3)]
    await asyncio.sleep(0.01)
    assert entered == ["GET /r0"]  # one slot: the other reads wait
    await asyncio.wait_for(gate({"type": "http", "method": "POST", "path": "/api/risk/kill-switch"},
                                None, None), timeout=5)
    assert entered == ["GET /r0", "POST /api/risk/kill-switch"]
    release.set()
    await asyncio.wait_for(asyncio.gather(*reads), timeout=5)
    assert sorted(entered) == ["GET /r0", "GET /r1", "GET /r2", "POST /api/risk/kill-switch"]
    # WebSocket and lifespan scopes are never held.
    await asyncio.wait_for(gate({"type": "websocket", "path": "/ws"}, None, None), timeout=5)
