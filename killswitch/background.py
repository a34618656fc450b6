"""One ordered background lane per process for the side effects of a committed event
that the committing request need not wait for.

What goes here: messages to other systems once the database and Redis already hold
the truth, i.e. live pushes to the Risk page (channel layer) and the Celery messages
that hand broker runs to the workers. What does not: anything that reads or writes
the database (a connection opened in this thread would never be closed), and the
Redis state publish (an activation answers only once every trading process can see
it).

Guarantees:
- Work runs in submission order, one item at a time, in a daemon thread with its own
  event loop (coroutine functions are awaited there, plain functions called).
- A failing item is logged and never stops the lane.
- A process that exits runs what is queued first (atexit, bounded), so an activation
  from the CLI still reaches the workers and the open pages. If a process dies
  without that, nothing is lost that matters: broker runs are rows committed with
  their event, and the sweep re-enqueues runs nobody took once they are overdue; an
  open page re-syncs on its next event or reconnect.
- After a fork (Celery's prefork workers) the child starts its own lane.
"""

from __future__ import annotations

import asyncio
import atexit
import inspect
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("killswitch")

EXIT_FLUSH_SECONDS = 5.0


class Lane:
    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    self._queue = asyncio.Queue()
                    ready.set()
                    loop.run_until_complete(self._drain())

                threading.Thread(target=run, name=self.name, daemon=True).start()
                ready.wait()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    async def _drain(self) -> None:
        while True:
            function, args, done = await self._queue.get()
            try:
                if function is not None:
                    result = function(*args)
                    if inspect.isawaitable(result):
                        await result
            except Exception:
                logger.warning("background %s failed", getattr(function, "__qualname__", function),
                               exc_info=True)
            finally:
                if done is not None:
                    done.set()

    def submit(self, function: Callable[..., Any], *args: Any) -> None:
        """Run `function(*args)` (awaited if it returns an awaitable) after everything
        submitted before it. Returns at once."""
        self._put(function, args, None)

    def _put(self, function: Callable[..., Any] | None, args: tuple, done: threading.Event | None) -> None:
        loop = self._ensure_started()
        loop.call_soon_threadsafe(self._queue.put_nowait, (function, args, done))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything submitted so far has run. True unless it timed out."""
        if self._loop is None or self._pid != os.getpid():
            return True
        done = threading.Event()
        self._put(None, (), done)
        return done.wait(timeout)


lane = Lane("killswitch-after-commit")
atexit.register(lane.flush, EXIT_FLUSH_SECONDS)


def submit(function: Callable[..., Any], *args: Any) -> None:
    lane.submit(function, *args)


def flush(timeout: float = 5.0) -> bool:
    return lane.flush(timeout)
