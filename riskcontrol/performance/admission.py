"""Read admission: writes (an activation) never queue behind the status pollers.

See ReadsYieldToWrites for what it guarantees and why.
"""

from __future__ import annotations

import asyncio
import collections
import weakref

from django.conf import settings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ReadsYieldToWrites:
    """ASGI middleware giving writes (any method but GET, HEAD, OPTIONS) priority over reads.

    - At most KILLSWITCH_MAX_CONCURRENT_READS (2) reads are inside the application at
      once; the others wait in arrival order. A read that has waited
      KILLSWITCH_READ_QUEUE_MAX_MS (1000) for a slot enters anyway, beyond the limit,
      so a few slow reads (a big admin page, the schema) never hold the status
      pollers back for long.
    - While a write is inside, no further read enters, not even past its wait limit;
      reads already inside finish. The hold lasts until the last write leaves, or
      KILLSWITCH_WRITE_PRIORITY_MS (250) of continuous writes, whichever is first: a
      flood of (refused) writes delays reads but never starves them.
    - A write always enters at once.

    Why: one server process has one event loop and one interpreter lock. With 200
    dashboards and scripts polling the status, an activation's every step and every
    database or Redis round trip competed with all the reads in flight for both
    (measured before this gate: activation p50 140 ms under 200 readers). Holding new
    reads while the activation runs leaves it the process to itself apart from the few
    reads already inside. Waiting reads cost nothing (parked coroutines) and lose no
    throughput: the process is CPU-bound either way, and a read that waited for the
    write sees its result.

    Wrap the HTTP application: `ReadsYieldToWrites(get_http_application())` (asgi.py).
    """

    def __init__(self, app, max_concurrent_reads: int | None = None,
                 write_priority_seconds: float | None = None,
                 read_queue_max_seconds: float | None = None) -> None:
        self.app = app
        self.limit = max_concurrent_reads
        self.write_priority_seconds = write_priority_seconds
        self.read_queue_max_seconds = read_queue_max_seconds
        # One gate per event loop (a server has one; tests may run several in turn).
        self._gates: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Gate] = weakref.WeakKeyDictionary()

    def _gate(self) -> _Gate:
        loop = asyncio.get_running_loop()
        gate = self._gates.get(loop)
        if gate is None:
            limit = self.limit or int(getattr(settings, "KILLSWITCH_MAX_CONCURRENT_READS", 2))
            hold = self.write_priority_seconds
            if hold is None:
                hold = int(getattr(settings, "KILLSWITCH_WRITE_PRIORITY_MS", 250)) / 1000
            queue = self.read_queue_max_seconds
            if queue is None:
                queue = int(getattr(settings, "KILLSWITCH_READ_QUEUE_MAX_MS", 1000)) / 1000
            gate = self._gates[loop] = _Gate(max(1, limit), max(0.0, hold), max(0.0, queue))
        return gate

    async def __call__(self, scope, receive, send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        gate = self._gate()
        if scope.get("method") in SAFE_METHODS:
            await gate.enter_read()
            try:
                await self.app(scope, receive, send)
            finally:
                gate.leave_read()
            return
        gate.enter_write()
        try:
            await self.app(scope, receive, send)
        finally:
            gate.leave_write()


class _Gate:
    """The admission state of one event loop (one server process serves one loop).

    Reads waiting for a slot queue in arrival order. While writes are inside (`held`),
    no read is admitted; the hold ends when the last write leaves, or after
    `write_priority_seconds` of continuous writes, whichever comes first. Everything
    runs on the event loop's thread, so no locks are needed.
    """

    def __init__(self, read_slots: int, write_priority_seconds: float, read_queue_max_seconds: float) -> None:
        self.read_slots = read_slots
        self.write_priority_seconds = write_priority_seconds
        self.read_queue_max_seconds = read_queue_max_seconds
        self.reading = 0
        self.writes = 0
        self._not_held = asyncio.Event()
        self._not_held.set()
        self._hold_timer: asyncio.TimerHandle | None = None
        self._waiting: collections.deque[asyncio.Future] = collections.deque()

    @property
    def held(self) -> bool:
        return not self._not_held.is_set()

    def enter_write(self) -> None:
        self.writes += 1
        if self.writes == 1 and self.write_priority_seconds > 0:
            self._not_held.clear()
            self._hold_timer = asyncio.get_running_loop().call_later(
                self.write_priority_seconds, self._end_hold)

    def leave_write(self) -> None:
        self.writes -= 1
        if self.writes == 0:
            self._end_hold()

    def _end_hold(self) -> None:
        self._not_held.set()
        if self._hold_timer is not None:
            self._hold_timer.cancel()
            self._hold_timer = None
        self._admit()

    async def enter_read(self) -> None:
        if not self.held and not self._waiting and self.reading < self.read_slots:
            self.reading += 1
            return
        admitted = asyncio.get_running_loop().create_future()
        self._waiting.append(admitted)
        try:
            await asyncio.wait_for(asyncio.shield(admitted), self.read_queue_max_seconds)
            return
        except TimeoutError:
            pass
        except asyncio.CancelledError:
            if admitted.done() and not admitted.cancelled():
                self.leave_read()  # admitted just as the client went away: free the slot
            else:
                self._forget(admitted)
            raise
        if admitted.done() and not admitted.cancelled():
            return  # admitted at the very moment the wait ran out
        # Waited its limit for a slot: enter beyond the limit, but never during a hold.
        self._forget(admitted)
        while self.held:
            await self._not_held.wait()
        self.reading += 1

    def _forget(self, admitted: asyncio.Future) -> None:
        admitted.cancel()
        try:
            self._waiting.remove(admitted)
        except ValueError:
            pass

    def leave_read(self) -> None:
        self.reading -= 1
        self._admit()

    def _admit(self) -> None:
        while not self.held and self.reading < self.read_slots and self._waiting:
            admitted = self._waiting.popleft()
            if admitted.done():  # cancelled while waiting
                continue
            self.reading += 1
            admitted.set_result(None)
