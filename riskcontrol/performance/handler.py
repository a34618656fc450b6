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

A request waits for a free worker only when all are busy; reads are admitted a few
at a time (throttling.ReadsYieldToWrites), so the others are there for writes.
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


class OneHopASGIHandler(ASGIHandler):
    def __init__(self, threads: int | None = None) -> None:
        super(ASGIHandler, self).__init__()  # BaseHandler: the chain is loaded in sync mode
        self.load_middleware(is_async=False)
        self.threads = threads
        # One pool per event loop (a server has one; tests may run several in turn).
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Queue[ThreadPoolExecutor]] = (
            weakref.WeakKeyDictionary())

    def _pool(self) -> asyncio.Queue[ThreadPoolExecutor]:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            size = max(1, self.threads or int(getattr(settings, "KILLSWITCH_HTTP_THREADS", 8)))
            pool = self._pools[loop] = asyncio.Queue()
            for n in range(size):
                pool.put_nowait(ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"http-{n}"))
        return pool

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        pool = self._pool()
        worker = await pool.get()
        try:
            # A context with our executor: every thread-sensitive call of this request
            # runs on that one kept thread (the caller owns the executor; it is reused).
            async with ThreadSensitiveContext(executor=worker):
                await self.handle(scope, receive, send)
        finally:
            pool.put_nowait(worker)

    async def get_response_async(self, request):
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)


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
