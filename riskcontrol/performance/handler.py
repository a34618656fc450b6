"""The ASGI handler for the project's HTTP side: Django's, with two changes measured on
the API benchmark (bench/bench_api.py).

1. The middleware chain and the view run in one hop to the request's worker thread
   instead of one hop per middleware. Django's ASGIHandler builds an async chain;
   every middleware of ours is a MiddlewareMixin with synchronous process_request /
   process_response, which the async chain runs through sync_to_async one at a time:
   17 thread hops per request (profiled with yappi). Each hop is a round trip through
   the event loop, which under load is busy with every other request.

2. Requests run on a pool of long-lived worker threads (KILLSWITCH_HTTP_THREADS,
   8 by default) instead of a thread created, and a second one to join it, for every
   request (Django enters a fresh asgiref ThreadSensitiveContext per request). A
   request still has one thread to itself from start to finish, as Django requires
   (its database connection is per thread), and a kept worker keeps its database
   connection between requests (CONN_MAX_AGE, checked before reuse).

3. Writes (any method but GET, HEAD, OPTIONS) have KILLSWITCH_HTTP_WRITE_THREADS (2)
   workers of their own that reads never take, so an activation never waits for a
   thread behind reads (measured before: the slowest activations under 200 status
   readers waited for one of the 8 threads, all taken by reads that had entered past
   the admission limit, bench/bench_api.py with BENCH_TRACE=1). A write takes a read
   worker too when its own are busy and one is free.

A read waits for a free worker only when all the read workers are busy; reads are
admitted a few at a time (admission.ReadsYieldToWrites).
Async views still work: in a sync chain Django runs them with async_to_sync.
Channels (WebSocket) does not go through this handler.
"""

from __future__ import annotations

import asyncio
import gc
import weakref
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIHandler

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class OneHopASGIHandler(ASGIHandler):
    def __init__(self, threads: int | None = None) -> None:
        super(ASGIHandler, self).__init__()  # BaseHandler: the chain is loaded in sync mode
        self.load_middleware(is_async=False)
        self.threads = threads
        # One pool per event loop (a server has one; tests may run several in turn).
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Workers] = weakref.WeakKeyDictionary()

    def _pool(self) -> _Workers:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            reads = max(1, self.threads or int(getattr(settings, "KILLSWITCH_HTTP_THREADS", 8)))
            writes = max(1, int(getattr(settings, "KILLSWITCH_HTTP_WRITE_THREADS", 2)))
            pool = self._pools[loop] = _Workers(reads, writes)
        return pool

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        pool = self._pool()
        queue, worker = await pool.take(write=scope.get("method") not in READ_METHODS)
        try:
            # A context with our executor: every thread-sensitive call of this request
            # runs on that one kept thread (the caller owns the executor; it is reused).
            async with ThreadSensitiveContext(executor=worker):
                await self.handle(scope, receive, send)
        finally:
            queue.put_nowait(worker)

    async def get_response_async(self, request):
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


class _Workers:
    """The kept worker threads of one event loop: `reads` for any request, `writes`
    for writes only."""

    def __init__(self, reads: int, writes: int) -> None:
        self.reads: asyncio.Queue[ThreadPoolExecutor] = asyncio.Queue()
        self.writes: asyncio.Queue[ThreadPoolExecutor] = asyncio.Queue()
        for n in range(reads):
            self.reads.put_nowait(ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"http-{n}"))
        for n in range(writes):
            self.writes.put_nowait(ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"http-write-{n}"))

    async def take(self, *, write: bool) -> tuple[asyncio.Queue[ThreadPoolExecutor], ThreadPoolExecutor]:
        """A free worker and the queue it goes back to."""
        if write:
            if not self.writes.empty():
                return self.writes, self.writes.get_nowait()
            if not self.reads.empty():
                return self.reads, self.reads.get_nowait()
            return self.writes, await self.writes.get()
        return self.reads, await self.reads.get()

    def free(self) -> int:
        return self.reads.qsize() + self.writes.qsize()


def get_http_application() -> OneHopASGIHandler:
    """As django.core.asgi.get_asgi_application(), with the one-hop handler."""
    import django

    django.setup(set_prefix=False)
    return OneHopASGIHandler()


def settle_server_process() -> None:
    """Call once the application is built, before serving: load the URLconf now rather
    than on the first request, then move everything loaded so far out of the garbage
    collector's sight (gc.freeze).

    Why: a full (generation 2) collection walks every live object, and a Django process
    holds a few hundred thousand of them, all from start-up and none ever garbage.
    Measured in the API benchmark: full collections stopped the server for ~90 ms each,
    several times a minute under load, and were the slowest activations; frozen, they
    take ~14 ms. Objects created afterwards are collected as usual.
    """
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - imports every view module now
    gc.collect()
    gc.freeze()
