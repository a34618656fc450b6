"""Readiness: is every part the switch depends on up? Bounded, whatever is down.

Components: `database` (a `SELECT 1`), `redis` (a PING on the service's Redis, through
the sentinels when configured), `reconciler` (the heartbeat in Redis is younger than
its `stale_after`, and who leads), `workers` (at least one Celery worker answers on
each queue, broker and notify), and whatever other apps register (killswitch.ops.hooks; the brokers app: the
connections of the configured accounts).

Every check runs in its own thread against one deadline (CHECK_TIMEOUT): a component
that has not answered by then reads `timeout`, so `/readyz` answers within about 1.5 s
even with a database that hangs. A check still running from an earlier call is
not started again (it reads `timeout` at once): threads never pile up behind a hung
dependency.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout

from killswitch import domain as L
from killswitch.runtime.leadership import holder_of

from .hooks import ComponentState, checks

logger = logging.getLogger("killswitch.ops")

CHECK_TIMEOUT = 1.5  # seconds for all checks together
REDIS_TIMEOUT = 0.5
# Celery collects replies for the whole timeout: a worker busy in a task answers late.
WORKER_PING_TIMEOUT = 1.0
RECONCILER_LEASE = "reconciler"

_executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="readyz")
_in_flight: dict[str, Future] = {}
_lock = threading.Lock()
_clients: dict[object, object] = {}


def _redis():
    """A client of the service's Redis with short timeouts and no retries, kept per
    target (redis-py clients are thread-safe)."""
    from django.conf import settings
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from riskcontrol import redis_config

    target = redis_config.from_settings(settings)
    client = _clients.get(target)
    if client is None:
        client = _clients[target] = target.client(
            decode_responses=True, socket_connect_timeout=REDIS_TIMEOUT, socket_timeout=REDIS_TIMEOUT,
            retry=Retry(NoBackoff(), 0))
    return client


def check_database() -> ComponentState:
    from django.db import close_old_connections, connection

    close_old_connections()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return ComponentState(True, "ok", {"vendor": connection.vendor})


def check_redis() -> ComponentState:
    from django.conf import settings

    from riskcontrol import redis_config

    _redis().ping()
    return ComponentState(True, "ok", {"sentinel": redis_config.from_settings(settings).uses_sentinel})


def check_reconciler() -> ComponentState:
    """The heartbeat the trading processes trust: fresh means they are not failing closed
    for want of it."""
    from killswitch.policy import kill_switch_policy

    client = _redis()
    raw = client.get(L.KEY_HEARTBEAT)
    leader = holder_of(RECONCILER_LEASE, client)
    detail: dict[str, object] = {"leader": leader.rsplit(":", 1)[0] if leader else None}
    parsed = L.parse_heartbeat(raw)
    if parsed is None:
        return ComponentState(False, "missing", detail)
    ts, stale_after = parsed
    stale_after = stale_after or kill_switch_policy().client_stale_after_seconds
    age = max(0.0, time.time() - ts)
    detail.update({"heartbeat_age_seconds": round(age, 3), "stale_after_seconds": stale_after})
    return ComponentState(age <= stale_after, "ok" if age <= stale_after else "stale", detail)


def check_workers() -> ComponentState:
    """At least one Celery worker consumes each queue: `broker` (the runs: cancel,
    flatten, verify) and `notify` (deliveries); `queues` counts the workers on each."""
    from django.conf import settings

    from riskcontrol.celery import app

    found = app.control.inspect(timeout=WORKER_PING_TIMEOUT).active_queues() or {}
    per_queue = {settings.BROKER_QUEUE: 0, settings.NOTIFY_QUEUE: 0}
    for queues in found.values():
        for name in {q.get("name") for q in queues} & set(per_queue):
            per_queue[name] += 1
    missing = [name for name, n in per_queue.items() if n == 0]
    return ComponentState(not missing, "ok" if not missing else "no worker on " + ", ".join(missing),
                          {"answering": len(found), "queues": per_queue})


BUILT_IN = {"database": check_database, "redis": check_redis, "reconciler": check_reconciler,
            "workers": check_workers}


def readiness(timeout: float = CHECK_TIMEOUT) -> tuple[bool, dict[str, ComponentState]]:
    """(every component ok, each component's state), within about `timeout` seconds."""
    wanted = {**BUILT_IN, **checks()}
    futures: dict[str, Future | None] = {}
    with _lock:
        for name, check in wanted.items():
            running = _in_flight.get(name)
            if running is not None and not running.done():
                futures[name] = None  # still hung from an earlier call: do not pile up
                continue
            futures[name] = _in_flight[name] = _executor.submit(_run, name, check)
    deadline = time.monotonic() + timeout
    states: dict[str, ComponentState] = {}
    for name, future in futures.items():
        if future is None:
            states[name] = ComponentState(False, "timeout", {"detail": "an earlier check is still waiting"})
            continue
        try:
            states[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
        except FutureTimeout:
            states[name] = ComponentState(False, "timeout", {"timeout_seconds": timeout})
    return all(s.ok for s in states.values()), states


def _run(name: str, check) -> ComponentState:
    try:
        return check()
    except Exception as exc:  # a check that raises is a component that is not ready
        # The type only: messages of connection errors carry hosts, users, sometimes URLs.
        logger.warning("readiness check %s failed", name, exc_info=True)
        return ComponentState(False, "down" if _is_connection_error(exc) else "error",
                              {"error": type(exc).__name__})
    finally:
        if name == "database":
            from django.db import connection

            connection.close_if_unusable_or_obsolete()


def _is_connection_error(exc: BaseException) -> bool:
    import redis
    from django.db import OperationalError

    return isinstance(exc, redis.ConnectionError | redis.TimeoutError | OperationalError | OSError)
