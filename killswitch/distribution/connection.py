"""The service's Redis connection (one client per thread) with short timeouts: the
switch must never hang on a dead Redis."""

from __future__ import annotations

import threading

import redis
from django.conf import settings

_local = threading.local()


def get_redis() -> redis.Redis:
    """A client for settings.REDIS_URL, kept per thread (re-made when the URL changes)."""
    client = getattr(_local, "client", None)
    if client is None or getattr(_local, "url", None) != settings.REDIS_URL:
        client = redis.Redis.from_url(
            settings.REDIS_URL, decode_responses=True, encoding_errors="replace", socket_connect_timeout=2,
            socket_timeout=2, health_check_interval=10,
        )
        _local.client, _local.url = client, settings.REDIS_URL
    return client
