"""The ASGI app bench_api.py serves: the product's URLs plus a bare Django view.

The bare view exists only here, never in the product's urls: it is the baseline
(Django + daphne + the same middleware, no DRF, no authentication, no database) the
status read is compared with, on the same server in the same run.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskcontrol.settings")

# Each piece of the performance layer (riskcontrol/performance) can be left out, to
# measure what it buys (bench_api.py --ablation): BENCH_WITHOUT is a comma-separated
# list of one-hop, admission, replay, auth-cache, status-cache.
WITHOUT = set(filter(None, os.environ.get("BENCH_WITHOUT", "").split(",")))
if "one-hop" in WITHOUT:
    from django.core.asgi import get_asgi_application as get_http_application  # noqa: E402
else:
    from riskcontrol.performance.handler import get_http_application  # noqa: E402

# The product's HTTP handler (riskcontrol/asgi.py), for the bare view as for the API.
django_app = get_http_application()

from django.conf import settings  # noqa: E402
from django.http import JsonResponse  # noqa: E402
from django.urls import include, path  # noqa: E402

# This module is the URLconf of the bench server (read on the first request).
settings.ROOT_URLCONF = __name__


def bare(request) -> JsonResponse:
    return JsonResponse({"level": "running", "version": 0})


urlpatterns = [
    path("bench/bare", bare),
    path("", include("riskcontrol.urls")),
]


if "auth-cache" in WITHOUT:
    settings.KILLSWITCH_READ_AUTH_CACHE_SECONDS = 0
if "status-cache" in WITHOUT:
    from killswitch.selectors import scopes  # noqa: E402
    from riskcontrol.performance.caches import KeyedRows  # noqa: E402

    class _NeverKept(KeyedRows):
        def get(self, key, load, key_of):
            return load()

    scopes._status_rows = _NeverKept()

# As riskcontrol/asgi.py serves HTTP (the read admission around the status replay).
from riskcontrol.performance.admission import ReadsYieldToWrites  # noqa: E402
from riskcontrol.performance.replay import StatusReplay, connect_signals  # noqa: E402

connect_signals()
replaying = django_app if "replay" in WITHOUT else StatusReplay(django_app)
_limit = int(os.environ.get("BENCH_MAX_CONCURRENT_READS", "0")) or None
application = replaying if "admission" in WITHOUT else ReadsYieldToWrites(replaying, _limit)

from riskcontrol.performance.handler import settle_server_process  # noqa: E402

settle_server_process()  # as riskcontrol/asgi.py

if os.environ.get("BENCH_TRACE"):
    # Bench-only: for every write, when it reached the application, when it had a
    # worker thread, when its answer started, and the reads inside at each point
    # (written to the daphne log, read by hand to find where slow activations wait).
    import sys as _sys
    import time as _time

    _inner = application
    _pool_get = getattr(django_app, "_pool", None)

    async def application(scope, receive, send):  # noqa: F811
        if scope.get("type") != "http" or scope.get("method") == "GET":
            return await _inner(scope, receive, send)
        gate = _inner._gate() if hasattr(_inner, "_gate") else None
        t0 = _time.perf_counter()
        reading0 = gate.reading if gate else -1
        free0 = _pool_get().free() if _pool_get else -1
        marks = {}

        async def traced_send(message):
            if message["type"] == "http.response.start":
                marks["start"] = _time.perf_counter()
            await send(message)

        await _inner(scope, receive, traced_send)
        t1 = _time.perf_counter()
        replays = getattr(replaying, "replayed", -1)
        print(f"TRACE replayed={replays} write total={1000 * (t1 - t0):.1f} answer={1000 * (marks.get('start', t1) - t0):.1f} "
              f"reads_inside={reading0} free_threads={free0}", file=_sys.stderr, flush=True)
