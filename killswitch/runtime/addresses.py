"""The client address of an HTTP request, the same way for the API, the admin and the
Risk page (each audit event records it)."""

from __future__ import annotations

import ipaddress

from django.conf import settings


def client_address(request) -> str | None:
    """The client's IP address: REMOTE_ADDR, or when NUM_PROXIES = n > 0 (trusted
    reverse proxies in front of the service) the n-th address from the right of
    X-Forwarded-For. Anything that is not an IP address reads as None."""
    meta = request.META
    address = meta.get("REMOTE_ADDR") or ""
    proxies = int(getattr(settings, "NUM_PROXIES", 0) or 0)
    if proxies > 0:
        forwarded = [a.strip() for a in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
        if forwarded:
            address = forwarded[-min(proxies, len(forwarded))]
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None
