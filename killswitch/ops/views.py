"""`/healthz`, `/readyz` and `/metrics`.

- `/healthz`: 200 as long as the process answers; touches nothing (point a load
  balancer here: a kill switch must stay reachable while a dependency is down).
- `/readyz`: 200 when every component is ready, else 503; JSON naming each component
  and its state, never a secret. For people, monitoring and deployment gates.
- `/metrics`: Prometheus text format, for the addresses in METRICS_ALLOWED_IPS (default
  loopback; addresses or networks) or a request with `Authorization: Bearer
  $METRICS_TOKEN`. Anything else gets 403 saying what is expected.

None of them authenticates a user: probes have no session or API token.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from killswitch.runtime.addresses import client_address

from . import health, metrics


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok", "host": socket.gethostname(), "pid": os.getpid()})


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    ready, states = health.readiness()
    return JsonResponse({"status": "ready" if ready else "not ready",
                         "components": {name: state.as_dict() for name, state in states.items()}},
                        status=200 if ready else 503)


@never_cache
@require_safe
def metrics_view(request: HttpRequest) -> HttpResponse:
    refusal = _metrics_refusal(request)
    if refusal is not None:
        return refusal
    return HttpResponse(generate_latest(metrics.registry), content_type=CONTENT_TYPE_LATEST)


def _metrics_refusal(request: HttpRequest) -> JsonResponse | None:
    token = getattr(settings, "METRICS_TOKEN", None)
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if token and header.startswith("Bearer "):
        if hmac.compare_digest(header[len("Bearer "):].strip().encode(), token.encode()):
            return None
        return _error(401, "authentication_failed", "The bearer token is not METRICS_TOKEN.")
    address = client_address(request)
    networks = getattr(settings, "METRICS_ALLOWED_NETWORKS", ())
    if address and any(ipaddress.ip_address(address) in network for network in networks):
        return None
    allowed = ", ".join(str(n) for n in networks) or "none"
    how = " or send Authorization: Bearer <METRICS_TOKEN>" if token else ""
    return _error(403, "forbidden", f"/metrics is open to METRICS_ALLOWED_IPS ({allowed}){how}; "
                                    f"this request came from {address or 'an unknown address'}.")


def _error(status: int, code: str, message: str) -> JsonResponse:
    response = JsonResponse({"error": message, "code": code, "field": None}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
    return response
