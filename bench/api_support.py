"""The ASGI app bench_api.py serves: the product's URLs plus a bare Django view.

The bare view exists only here, never in the product's urls: it is the baseline
(Django + daphne + the same middleware, no DRF, no authentication, no database) the
status read is compared with, on the same server in the same run.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskcontrol.settings")

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


# As riskcontrol/asgi.py serves HTTP (with the read admission of killswitch.throttling),
# unless BENCH_NO_READ_ADMISSION is set, which measures plain Django for comparison.
from riskcontrol.performance.admission import ReadsYieldToWrites  # noqa: E402

_limit = int(os.environ.get("BENCH_MAX_CONCURRENT_READS", "0")) or None
application = django_app if os.environ.get("BENCH_NO_READ_ADMISSION") else ReadsYieldToWrites(django_app, _limit)

from riskcontrol.performance.handler import settle_server_process  # noqa: E402

settle_server_process()  # as riskcontrol/asgi.py
