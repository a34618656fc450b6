"""ReadsYieldToWrites: reads queue for a few slots; a write never waits behind them."""

from __future__ import annotations

import asyncio

from riskcontrol.performance.admission import ReadsYieldToWrites


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


async def test_no_read_enters_while_a_write_is_inside():
    entered: list[str] = []
    write_inside, finish_write = asyncio.Event(), asyncio.Event()

    async def app(scope, receive, send):
        entered.append(f"{scope['method']} {scope['path']}")
        if scope["method"] == "POST":
            write_inside.set()
            await finish_write.wait()

    gate = ReadsYieldToWrites(app, max_concurrent_reads=4, write_priority_seconds=30)
    write = asyncio.create_task(gate({"type": "http", "method": "POST", "path": "/w"}, None, None))
    await asyncio.wait_for(write_inside.wait(), timeout=5)
    reads = [asyncio.create_task(gate({"type": "http", "method": "GET", "path": f"/r{i}"}, None, None))
             for i in range(3)]
    await asyncio.sleep(0.05)
    assert entered == ["POST /w"]  # free read slots, yet the reads wait for the write
    finish_write.set()
    await asyncio.wait_for(asyncio.gather(write, *reads), timeout=5)
    assert entered[0] == "POST /w" and sorted(entered[1:]) == ["GET /r0", "GET /r1", "GET /r2"]


async def test_reads_wait_for_writes_only_so_long():
    entered: list[str] = []
    finish_writes = asyncio.Event()

    async def app(scope, receive, send):
        entered.append(scope["method"])
        if scope["method"] == "POST":
            await finish_writes.wait()

    # A flood of writes that never ends must not starve reads past the priority window.
    gate = ReadsYieldToWrites(app, max_concurrent_reads=2, write_priority_seconds=0.1)
    writes = [asyncio.create_task(gate({"type": "http", "method": "POST", "path": "/w"}, None, None))
              for _ in range(3)]
    await asyncio.sleep(0.01)
    await asyncio.wait_for(gate({"type": "http", "method": "GET", "path": "/r"}, None, None), timeout=5)
    assert entered.count("GET") == 1 and entered.count("POST") == 3
    finish_writes.set()
    await asyncio.wait_for(asyncio.gather(*writes), timeout=5)


async def test_a_read_stuck_behind_slow_reads_enters_after_its_wait_limit_but_not_during_a_write():
    entered: list[str] = []
    slow_reads, write_done = asyncio.Event(), asyncio.Event()

    async def app(scope, receive, send):
        entered.append(scope["path"])
        if scope["path"] == "/slow":
            await slow_reads.wait()
        if scope["method"] == "POST":
            await write_done.wait()

    gate = ReadsYieldToWrites(app, max_concurrent_reads=1, write_priority_seconds=30,
                              read_queue_max_seconds=0.1)
    slow = asyncio.create_task(gate({"type": "http", "method": "GET", "path": "/slow"}, None, None))
    await asyncio.sleep(0.01)
    # The slot is held by a slow read: the status read enters once it has waited 0.1 s.
    await asyncio.wait_for(gate({"type": "http", "method": "GET", "path": "/status"}, None, None), timeout=5)
    assert entered == ["/slow", "/status"]
    # During a write, even a read past its wait limit stays out until the write leaves.
    write = asyncio.create_task(gate({"type": "http", "method": "POST", "path": "/w"}, None, None))
    await asyncio.sleep(0.01)
    late = asyncio.create_task(gate({"type": "http", "method": "GET", "path": "/late"}, None, None))
    await asyncio.sleep(0.3)
    assert "/late" not in entered
    write_done.set()
    await asyncio.wait_for(asyncio.gather(write, late), timeout=5)
    assert entered[-1] == "/late"
    slow_reads.set()
    await asyncio.wait_for(slow, timeout=5)


async def test_a_reader_that_goes_away_while_waiting_frees_nothing_it_did_not_hold():
    release = asyncio.Event()

    async def app(scope, receive, send):
        await release.wait()

    gate = ReadsYieldToWrites(app, max_concurrent_reads=1, write_priority_seconds=30,
                              read_queue_max_seconds=30)
    first = asyncio.create_task(gate({"type": "http", "method": "GET", "path": "/a"}, None, None))
    await asyncio.sleep(0.01)
    gone = asyncio.create_task(gate({"type": "http", "method": "GET", "path": "/b"}, None, None))
    await asyncio.sleep(0.01)
    gone.cancel()  # the client disconnected while queued
    await asyncio.gather(gone, return_exceptions=True)
    g = gate._gate()
    assert g.reading == 1 and not [f for f in g._waiting if not f.done()]
    release.set()
    await asyncio.wait_for(first, timeout=5)
    assert g.reading == 0
