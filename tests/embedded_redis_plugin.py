"""Loaded with `-p` before Django is set up: when REDIS_URL is unset, start an
embedded redis-server for the whole test run and point REDIS_URL at it."""

from __future__ import annotations

import atexit
import os

from riskcontrol.embedded_redis import EmbeddedRedis

_server: EmbeddedRedis | None = None

if not os.environ.get("REDIS_URL"):
    _server = EmbeddedRedis().start()
    os.environ["REDIS_URL"] = _server.url
    atexit.register(_server.cleanup)


def pytest_report_header(config):
    return f"redis: {os.environ['REDIS_URL']} ({'embedded' if _server else 'from REDIS_URL'})"
