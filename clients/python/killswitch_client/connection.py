"""redis-py clients for a `RedisTarget`, sync and asyncio: one for reads and reports, one
for the subscription, with the same options in both flavours."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from .config import RedisTarget, resolve_target

CLIENT_NAME = "killswitch-client"
TIMEOUT = 2.0


def connection_options(*, pubsub: bool) -> dict[str, Any]:
    """redis-py options for both flavours. No silent retries: a broken connection must
    surface so the client fails closed and reloads the full state after reconnecting (a
    silent resubscribe loses messages). Bytes that are not UTF-8 (garbage written by
    hand) decode to U+FFFD, which is no level, so they read as halt instead of crashing.
    RESP2: every Redis speaks it, and redis-py parses it with less work per reply than
    RESP3 (the reload runs on every message, for every client)."""
    return {"decode_responses": True, "encoding_errors": "replace", "socket_connect_timeout": TIMEOUT,
            "socket_timeout": TIMEOUT, "retry": Retry(NoBackoff(), 0),
            "health_check_interval": 1 if pubsub else 0, "client_name": CLIENT_NAME, "protocol": 2}


def _sentinel_args(target: RedisTarget) -> tuple[list[tuple[str, int]], dict[str, Any], dict[str, Any]]:
    sentinel_kwargs = {"socket_connect_timeout": TIMEOUT, "socket_timeout": TIMEOUT,
                       "retry": Retry(NoBackoff(), 0)}
    if target.sentinel_password:
        sentinel_kwargs["password"] = target.sentinel_password
    auth = {}
    if target.username:
        auth["username"] = target.username
    if target.password:
        auth["password"] = target.password
    return list(target.sentinels), sentinel_kwargs, auth


def connect_sync(target: RedisTarget) -> tuple[redis.Redis, redis.Redis]:
    """(commands, subscription) clients for the thread driver. Nothing connects yet."""
    if target.sentinels:
        hosts, sentinel_kwargs, auth = _sentinel_args(target)
        sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs)
        return (sentinel.master_for(target.master, **connection_options(pubsub=False), **auth),
                sentinel.master_for(target.master, **connection_options(pubsub=True), **auth))
    assert target.url is not None
    return (redis.Redis.from_url(target.url, **connection_options(pubsub=False)),
            redis.Redis.from_url(target.url, **connection_options(pubsub=True)))


def connect_async(target: RedisTarget) -> tuple[aioredis.Redis, aioredis.Redis]:
    """(commands, subscription) clients for the asyncio driver. Nothing connects yet."""
    if target.sentinels:
        hosts, sentinel_kwargs, auth = _sentinel_args(target)
        sentinel = AsyncSentinel(hosts, sentinel_kwargs=sentinel_kwargs)
        return (sentinel.master_for(target.master, **connection_options(pubsub=False), **auth),
                sentinel.master_for(target.master, **connection_options(pubsub=True), **auth))
    assert target.url is not None
    return (aioredis.Redis.from_url(target.url, **connection_options(pubsub=False)),
            aioredis.Redis.from_url(target.url, **connection_options(pubsub=True)))


def database_of(client: redis.Redis | aioredis.Redis) -> int:
    """The database number the client reads (for the keyspace channel's name)."""
    return int(client.connection_pool.connection_kwargs.get("db", 0) or 0)


def moved_target(target: RedisTarget) -> RedisTarget | None:
    """For a target named by the stack record: the record's target now, when it names
    another Redis (a restarted embedded Redis on a new port); else None. A record that
    is gone or dead keeps the old target: the client must not wander to another Redis."""
    if target.source != "stack":
        return None
    fresh = resolve_target()
    if fresh.source == "stack" and fresh.url != target.url:
        return fresh
    return None
