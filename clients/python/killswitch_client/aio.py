"""AsyncKillSwitch: the asyncio client. Same core, same hot path (synchronous memory
reads); the listener is a task on the running loop, a driver of `core.Core` exactly
like the sync client's thread."""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Sequence
from typing import Any

import redis

from . import contract as C
from ._base import OnKill, _ClientBase
from .connection import connect_async, database_of, moved_target
from .core import RELOAD, REPORT, Report
from .views import KillSwitchExit, View

logger = logging.getLogger("killswitch_client")

CLOSE_TIMEOUT = 3.0


class AsyncKillSwitch(_ClientBase):
    """The kill switch for asyncio trading loops.

        async with AsyncKillSwitch(url, account="DU123", strategy="momo") as ks:
            while True:
                if ks.check() != "running": ...
                ks.gate("AAPL")

    `check()`, `allows_*()` and `gate()` stay synchronous (memory reads). The listener
    task keeps the state with the same rules as KillSwitch (they share `core.Core`).
    `on_kill` may be a plain or an async callable; it runs on the event loop (never in
    another thread): a plain one inside the check that sees `kill`, an async one as a
    task started when the keys show `kill` -- while it runs, checks return `kill`; the
    first check after it finished raises SystemExit(1). Once per kill either way.

    Raises ConfigError (a ValueError) on settings it cannot use.
    """

    def __init__(self, redis_url: str | None = None, *, sentinels: Sequence[tuple[str, int]] | None = None,
                 sentinel_master: str | None = None, account: str | None = None,
                 strategy: str | None = None, name: str | None = None,
                 on_kill: OnKill | None = None, exit_on_kill: bool = True,
                 stale_after: float | None = None, max_stale_after: float | None = None,
                 backstop_interval: float = 0.5, report_interval: float = 1.0) -> None:
        super().__init__(redis_url, sentinels=sentinels, sentinel_master=sentinel_master,
                         account=account, strategy=strategy, name=name, stale_after=stale_after,
                         max_stale_after=max_stale_after, backstop_interval=backstop_interval,
                         report_interval=report_interval, on_kill=on_kill, exit_on_kill=exit_on_kill)
        self._redis, self._sub = connect_async(self.target)
        self._task: asyncio.Task | None = None
        self._ready = asyncio.Event()
        self._async_kill = on_kill is not None and inspect.iscoroutinefunction(on_kill)
        self._kill_task: asyncio.Task | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> AsyncKillSwitch:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="killswitch-listener")
        return self

    async def wait_ready(self, timeout: float = 5.0) -> bool:
        """Wait until the first full read succeeded (True) or `timeout` passed (False)."""
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def aclose(self) -> None:
        """Stop the listener, write a pending acknowledgement and deregister (best
        effort, each step bounded by CLOSE_TIMEOUT: a stuck socket must not hang a
        process on its way out). Idempotent."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=CLOSE_TIMEOUT)
            self._task = None
        try:
            await asyncio.wait_for(self._deregister(), CLOSE_TIMEOUT)
        except (redis.RedisError, OSError, TimeoutError):
            pass  # the service ages the entry out by last_seen
        for client in (self._redis, self._sub):
            try:
                await asyncio.wait_for(client.aclose(), CLOSE_TIMEOUT)
            except (redis.RedisError, OSError, TimeoutError):
                pass

    async def _deregister(self) -> None:
        report = self._core.pending_report()
        if report is not None and report.ack is not None:
            await self._write(report)
        await self._redis.xadd(C.KEY_CLIENTS, C.goodbye_entry(self.identity.client_id),
                      maxlen=C.CLIENTS_MAXLEN, approximate=True)

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
        task = self._kill_task
        if task is None or not task.done():
            return  # on_kill is still running (or about to start): report `kill`, no exit yet
        if self.exit_on_kill:
            raise KillSwitchExit(view.describe())

    def _start_async_kill(self, view: View) -> None:
        """Right after the keys showed kill, in the same step (so no check can see the kill
        view before its task exists): start the async on_kill once per kill."""
        if self._async_kill and view.is_kill and self._core.claim_kill():
            self._kill_task = asyncio.get_running_loop().create_task(self._run_async_kill(view))

    async def _run_async_kill(self, view: View) -> None:
        logger.critical("kill switch KILL: %s", view.describe())
        try:
            await self.on_kill()  # type: ignore[misc]
        except Exception:
            logger.exception("on_kill raised; exiting anyway")

    # --- the listener task ------------------------------------------------------------------

    async def _run(self) -> None:
        core = self._core
        while True:
            pubsub, delay = None, 0.0
            try:
                pubsub = self._sub.pubsub(ignore_subscribe_messages=True)
                await pubsub.subscribe(C.CHANNEL, C.keyspace_channel(database_of(self._redis)))
                core.connected()
                while True:
                    action = core.next_action()
                    if action.kind == RELOAD:
                        self._start_async_kill(core.loaded(*await self._read_keys()))
                        self._ready.set()
                    elif action.kind == REPORT:
                        await self._write(action.report)
                    else:
                        core.messages(await self._drain(pubsub, action.timeout))
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as exc:
                delay, warning = core.connection_lost(exc)
                if warning:
                    logger.warning("%s", warning)
                await self._follow_stack()
            except Exception as exc:  # never let the listener die: a dead listener reads stale
                logger.exception("kill switch listener error; reconnecting")
                delay, _ = core.connection_lost(exc)
            finally:
                if pubsub is not None:
                    try:
                        await pubsub.aclose()
                    except Exception:  # noqa: BLE001 -- closing a broken socket
                        pass
            await asyncio.sleep(delay)

    @staticmethod
    async def _drain(pubsub: Any, timeout: float) -> list[dict[str, Any]]:
        """Everything queued on the subscription (waiting up to `timeout` for the first)."""
        messages = []
        message = await pubsub.get_message(timeout=timeout)
        while message is not None:
            messages.append(message)
            message = await pubsub.get_message(timeout=0)
        return messages

    async def _read_keys(self) -> tuple[Any, Any, Any, Any]:
        pipe = self._redis.pipeline(transaction=True)
        pipe.get(C.KEY_GLOBAL)
        pipe.hgetall(C.KEY_STATE)
        pipe.get(C.KEY_HEARTBEAT)
        pipe.hgetall(C.KEY_SCOPES)
        switch, state, heartbeat, details = await pipe.execute()
        return switch, state, heartbeat, details

    async def _write(self, report: Report | None) -> None:
        assert report is not None
        pipe = self._redis.pipeline(transaction=False)
        if report.ack is not None:
            pipe.xadd(C.KEY_ACKS, report.ack, maxlen=C.ACKS_MAXLEN, approximate=True)
        pipe.xadd(C.KEY_CLIENTS, C.registration_entry(self.identity.client_id, report.registration),
                      maxlen=C.CLIENTS_MAXLEN, approximate=True)
        await pipe.execute()
        self._core.reported(report)

    async def _follow_stack(self) -> None:
        """A URL from the stack record is looked up again when Redis is lost."""
        moved = moved_target(self.target)
        if moved is None:
            return
        logger.warning("kill switch client: the stack moved to %s", moved.describe())
        old = self._redis, self._sub
        self.target, self.redis_url = moved, moved.url
        self._redis, self._sub = connect_async(moved)
        for client in old:
            await client.aclose()
