"""The service's Redis connection (one client per thread) with short timeouts: the
switch must never hang on a dead Redis.

Where and as whom it connects (Sentinel or a URL, the service's ACL user) is the one
rule of riskcontrol/redis_config.py, read from the settings on every call so that a
changed setting (tests) takes effect at once.
"""

from __future__ import annotations

import threading

import redis
from django.conf import settings

from riskcontrol import redis_config

_local = threading.local()


def get_redis() -> redis.Redis:
    """A client for the kill switch's database, kept per thread (re-made when the
    settings name another target). With sentinels it follows the master across a
    failover: a command on the old master fails, the next one goes to the new master."""
    target = redis_config.from_settings(settings)
    client = getattr(_local, "client", None)
    if client is None or getattr(_local, "target", None) != target:
        client = target.client(
            db=redis_config.DB_STATE, decode_responses=True, encoding_errors="replace",
            socket_connect_timeout=2, socket_timeout=2, health_check_interval=10,
        )
        _local.client, _local.target = client, target
    return client
