"""Ordered background lanes for the side effects of a committed event that the
committing request need not wait for.

What goes here: messages to other systems once the database and Redis already hold
the truth. One lane per destination, so that one stuck destination never holds up
another:
- `dispatch`: the Celery messages that hand broker runs to the workers;
- `notify`: the Celery messages that hand notification deliveries to theirs;
- `live`: pushes to the open Risk pages (channel layer).
What does not: anything that reads or writes the database (a connection opened in a
lane's thread would never be closed), and the Redis state publish (an activation
answers only once every trading process can see it).

Guarantees:
- Work on a lane runs in submission order, one item at a time, in a daemon thread with
  its own event loop (coroutine functions are awaited there, at most
  ITEM_TIMEOUT_SECONDS each; plain functions are called and bound by their own
  timeouts).
- A failing item is logged and never stops its lane; a lane whose thread died anyway
  is started again on the next submit.
- A process that exits runs what is queued first (atexit, bounded), so an activation
  from the CLI still reaches the workers and the open pages. If a process dies
  without that, nothing is lost that matters: broker runs are rows committed with
  their event, and the sweep re-enqueues runs nobody took once they are overdue; an
  open page re-syncs on its next event or reconnect.
- After a fork (Celery's prefork workers) the child starts its own lanes.
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
ITEM_TIMEOUT_SECONDS = 10.0


class Lane:
    def __init__(self, name: str) -> None:
        self.name = name
        self._reset()
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        # Also the fork handler: the child has none of the parent's threads, and a lock
        # held by one of them at fork time would never be released.
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    self._queue = asyncio.Queue()
                    ready.set()
                    try:
                        loop.run_until_complete(self._drain())
                    except BaseException:  # noqa: BLE001 - logged; the next submit starts a new thread
                        logger.error("background lane %s stopped; restarting on next use", self.name,
                                     exc_info=True)

                thread = threading.Thread(target=run, name=self.name, daemon=True)
                thread.start()
                ready.wait()
                self._thread, self._loop = thread, loop
            return self._loop

    async def _drain(self) -> None:
        while True:
            function, args, done = await self._queue.get()
            try:
                if function is not None:
                    result = function(*args)
                    if inspect.isawaitable(result):
                        await asyncio.wait_for(result, ITEM_TIMEOUT_SECONDS)
            except BaseException:  # noqa: BLE001 - nothing may end the lane, not even a stray CancelledError
                logger.warning("background %s on %s failed", getattr(function, "__qualname__", function),
                               self.name, exc_info=True)
            finally:
                if done is not None:
                    done.set()

    def submit(self, function: Callable[..., Any], *args: Any) -> None:
        """Run `function(*args)` (awaited if it returns an awaitable) after everything
        submitted to this lane before it. Returns at once."""
        self._put(function, args, None)

    def _put(self, function: Callable[..., Any] | None, args: tuple, done: threading.Event | None) -> None:
        loop = self._ensure_started()
        loop.call_soon_threadsafe(self._queue.put_nowait, (function, args, done))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything submitted so far has run. True unless it timed out."""
        if self._thread is None or not self._thread.is_alive():
            return True
        done = threading.Event()
        self._put(None, (), done)
        return done.wait(timeout)


dispatch = Lane("killswitch-broker-dispatch")
notify = Lane("killswitch-notify-dispatch")
live = Lane("killswitch-live-push")
LANES = (dispatch, notify, live)


def flush(timeout: float = 5.0) -> bool:
    """Wait until everything submitted to any lane so far has run."""
    return all([lane.flush(timeout) for lane in LANES])


atexit.register(flush, EXIT_FLUSH_SECONDS)
