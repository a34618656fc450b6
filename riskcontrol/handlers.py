"""The ASGI handler for the project's HTTP side: Django's, with the middleware chain and
the view run in one hop to the worker thread instead of one hop per middleware.

Django's ASGIHandler builds an async middleware chain. Every middleware of ours is a
MiddlewareMixin with synchronous process_request/process_response, which the async
chain runs through sync_to_async one at a time: measured here, 17 thread hops per
request (`yappi` on the status endpoint). Every sync view and every sync middleware
of the process share one worker thread, so an activation's hops queue behind those
of every read in flight. Loading the chain in sync mode and entering it once turns
the request into a single job for that thread: less overhead per request, and an
activation waits for at most one job per read in flight (throttling.ReadsYieldToWrites
keeps those few).

Async views still work: in a sync chain Django runs them with async_to_sync.
Channels (WebSocket) is unaffected; it does not go through this handler.
"""

from __future__ import annotations

import gc

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler


class OneHopASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super(ASGIHandler, self).__init__()  # BaseHandler: no async chain
        self.load_middleware(is_async=False)

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
