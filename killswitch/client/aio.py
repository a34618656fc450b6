"""AsyncKillSwitch: the asyncio client. Same hot path (synchronous memory reads)."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from typing import Any

import redis
import redis.asyncio as aioredis

from ._base import LIB_VERSION, _ClientBase
from ._core import (
    ACKS_MAXLEN,
    CHANNEL,
    KEY_ACKS,
    KEY_CLIENTS,
    KEY_GLOBAL,
    KEY_HEARTBEAT,
    KEY_SCOPES,
    KEY_STATE,
    Identity,
    KillSwitchExit,
    OnKill,
    View,
    ack_fields,
    connection_options,
    default_name,
    registration,
)
from .config import redis_url_from_env

logger = logging.getLogger("killswitch.client")


def _connect(url: str, *, pubsub: bool) -> aioredis.Redis:
    return aioredis.Redis.from_url(url, **connection_options(pubsub=pubsub))

class AsyncKillSwitch(_ClientBase):
    """The kill switch for asyncio trading loops.

        async with AsyncKillSwitch(url, account="DU123", strategy="momo") as ks:
            while True:
                if ks.check() != "running": ...
                ks.gate("AAPL")

    `check()`, `allows_*()` and `gate()` stay synchronous (memory reads). A listener
    task on the running loop keeps the state, with the same fail-closed rules and
    acknowledgements as KillSwitch. `on_kill` may be a plain or an async callable; it
    runs on the event loop (never in another thread): a plain one inside the check
    that sees `kill`, an async one as a task started when `kill` arrives -- while it
    runs, checks return `kill`; the first check after it finished raises SystemExit(1).
    """

    def __init__(self, redis_url: str | None = None, *, account: str | None = None,
                 strategy: str | None = None, name: str | None = None,
                 on_kill: OnKill | None = None, exit_on_kill: bool = True,
                 stale_after: float | None = None, backstop_interval: float = 0.5,
                 report_interval: float = 1.0) -> None:
        super().__init__(account=account, strategy=strategy, stale_after=stale_after,
                         on_kill=on_kill, exit_on_kill=exit_on_kill)
        self.redis_url = redis_url or redis_url_from_env()
        self.identity = Identity(name=name or default_name(), account=self.account,
                                 strategy=self.strategy)
        self.backstop_interval = backstop_interval
        self.report_interval = report_interval
        self._redis = _connect(self.redis_url, pubsub=False)
        self._sub = _connect(self.redis_url, pubsub=True)
        db = self._redis.connection_pool.connection_kwargs.get("db", 0)
        self._keyspace = f"__keyspace@{db}__:{KEY_GLOBAL}"
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()
        self._acked_version: int | None = None
        self._acked_at: float | None = None
        self._reported: tuple[str, str | None] | None = None
        self._async_kill = on_kill is not None and inspect.iscoroutinefunction(on_kill)
        self._kill_task: asyncio.Task | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> AsyncKillSwitch:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="killswitch-listener")
        return self

    async def wait_ready(self, timeout: float = 5.0) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 -- shutting down
                pass
            self._task = None
        try:
            await self._redis.hdel(KEY_CLIENTS, self.identity.client_id)
        except (redis.RedisError, OSError):
            pass
        await self._redis.aclose()
        await self._sub.aclose()

    async def __aenter__(self) -> AsyncKillSwitch:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- kill on the event loop -------------------------------------------------------------

    def _deliver_kill(self, view: View) -> None:
        if not self._async_kill:
            super()._deliver_kill(view)
            return
        if self._kill_task is None or not self._kill_task.done():
            return  # on_kill is still running (or about to start): report `kill`, no exit yet
        if self.exit_on_kill:
            raise KillSwitchExit(view.describe())

    def _publish(self, view: View | None = None) -> View:
        published = super()._publish(view)
        if published.is_kill and self._async_kill and self._kill_task is None:
            self._kill_task = asyncio.get_running_loop().create_task(self._run_async_kill())
        elif not published.is_kill and self._kill_task is not None and self._kill_task.done():
            self._kill_task = None
        return published

    async def _run_async_kill(self) -> None:
        logger.critical("kill switch KILL: %s", self._view.describe())
        try:
            await self.on_kill()  # type: ignore[misc]
        except Exception:
            logger.exception("on_kill raised; exiting anyway")

    # --- the listener task ------------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            pubsub = None
            try:
                pubsub = self._sub.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(CHANNEL, self._keyspace)
                self._tracker.conn_cause = None
                await self._reload()
                self._ready.set()
                backoff = 0.05
                await self._listen(pubsub)
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as exc:
                was_connected = self._tracker.conn_cause is None
                cause = "subscription_lost" if was_connected else "redis_unreachable"
                if was_connected or self._view.cause != cause:
                    logger.warning("kill switch client failing closed: %s (%s)", cause, exc)
                self._tracker.conn_cause = cause
                self._publish()
            except Exception:
                logger.exception("kill switch listener error; reconnecting")
                self._tracker.conn_cause = "subscription_lost"
                self._publish()
            finally:
                if pubsub is not None:
                    try:
                        await pubsub.aclose()
                    except Exception:  # noqa: BLE001 -- closing a broken socket
                        pass
            await asyncio.sleep(backoff)
            backoff = min(1.0, backoff * 2)

    async def _listen(self, pubsub: Any) -> None:
        now = time.monotonic()
        next_backstop = now + self.backstop_interval
        next_report = now + self.report_interval
        while True:
            view = self._view
            wake = min(next_backstop, next_report, view.fresh_until)
            timeout = min(0.25, max(0.0, wake - time.monotonic()))
            message = await pubsub.get_message(timeout=timeout)
            while message is not None:
                await self._on_message(message)
                message = await pubsub.get_message(timeout=0)
            now = time.monotonic()
            if now >= next_backstop:
                await self._reload()
                next_backstop = now + self.backstop_interval
            if now >= next_report:
                await self._report(force=True)
                next_report = now + self.report_interval
            elif self._current() is not view:
                await self._report()

    async def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") != "message":
            return
        channel, data = message["channel"], message["data"]
        if channel == self._keyspace:
            self._tracker.switch = await self._redis.get(KEY_GLOBAL)
            self._publish()
            await self._report()
            return
        try:
            payload = json.loads(data)
        except ValueError:
            return
        kind = payload.get("type")
        if kind == "state":
            if self._tracker.state_message(payload):
                self._publish()
                await self._report()  # reasons come with the message's event; the backstop re-reads all
        elif kind == "heartbeat":
            self._tracker.heartbeat(payload)
            hb_version = payload.get("version")
            if isinstance(hb_version, int) and (self._tracker.version is None
                                                or hb_version > self._tracker.version):
                await self._reload()
            else:
                self._publish()
                await self._report()

    async def _reload(self) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.get(KEY_GLOBAL)
        pipe.hgetall(KEY_STATE)
        pipe.get(KEY_HEARTBEAT)
        pipe.hgetall(KEY_SCOPES)
        switch, state, heartbeat, details = await pipe.execute()
        self._tracker.load(switch, state or {}, heartbeat, details or {})
        self._publish()
        await self._report()

    async def _report(self, *, force: bool = False) -> None:
        view: View = self._current()
        key = (view.level, view.cause)
        ack = view.version is not None and view.version != self._acked_version
        if not (ack or force or key != self._reported):
            return
        pipe = self._redis.pipeline(transaction=False)
        if ack:
            self._acked_version, self._acked_at = view.version, time.time()
            pipe.xadd(KEY_ACKS, ack_fields(self.identity, view.version, view.level, self._acked_at),
                      maxlen=ACKS_MAXLEN, approximate=True)
        pipe.hset(KEY_CLIENTS, self.identity.client_id,
                  registration(self.identity, view, acked_version=self._acked_version,
                               acked_at=self._acked_at, lib_version=LIB_VERSION))
        await pipe.execute()
        self._reported = key
