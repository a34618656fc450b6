"""KillSwitch: the threaded client for ordinary (synchronous) trading loops.

The listener thread is a driver of `core.Core`: it performs the three kinds of I/O the
core asks for (re-read the keys, write a report, wait for messages) and nothing else.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Sequence
from typing import Any

import redis

from . import contract as C
from ._base import OnKill, _ClientBase
from .connection import connect_sync, database_of, moved_target
from .core import RELOAD, REPORT, Report

logger = logging.getLogger("killswitch_client")


class KillSwitch(_ClientBase):
    """The kill switch as a trading process sees it, kept in memory.

    `KillSwitch(redis_url, account="DU123", strategy="momo", name="momo-1")` starts a
    background thread that subscribes to `killswitch:updates`, re-reads the keys on every
    message, every (re)connect and every `backstop_interval` seconds, and acknowledges
    every version it applies. `check()` and the order gate read memory only. Without a
    URL, Redis is found as `config.resolve_target()` says (sentinels, REDIS_URL, ...);
    `sentinels=[(host, port)], sentinel_master="name"` uses Redis Sentinel.

    Fail closed: until the first full read, and whenever Redis is unreachable, the
    subscription is lost, the state is missing or the heartbeat is stale (or cannot be
    believed), the client reads `halt` and `cause` says why; it resumes by itself.

    Kill: `check()`, `allows_*()` and `gate()` run `on_kill` (once per kill, in the
    calling thread -- call them from the main thread) and then raise SystemExit(1). The
    background thread never exits the process itself: the loop's next check does.
    With `exit_on_kill=False` they return `kill` / refuse instead (embedded use).

    Raises ConfigError (a ValueError) on settings it cannot use.
    """

    def __init__(self, redis_url: str | None = None, *, sentinels: Sequence[tuple[str, int]] | None = None,
                 sentinel_master: str | None = None, account: str | None = None,
                 strategy: str | None = None, name: str | None = None,
                 on_kill: OnKill | None = None, exit_on_kill: bool = True,
                 stale_after: float | None = None, max_stale_after: float | None = None,
                 backstop_interval: float = 0.5, report_interval: float = 1.0,
                 start: bool = True) -> None:
        if inspect.iscoroutinefunction(on_kill):
            raise TypeError("on_kill is a coroutine function, which the threaded KillSwitch cannot "
                            "await; use AsyncKillSwitch, or pass a plain function")
        super().__init__(redis_url, sentinels=sentinels, sentinel_master=sentinel_master,
                         account=account, strategy=strategy, name=name, stale_after=stale_after,
                         max_stale_after=max_stale_after, backstop_interval=backstop_interval,
                         report_interval=report_interval, on_kill=on_kill, exit_on_kill=exit_on_kill)
        self._redis, self._sub = connect_sync(self.target)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._write_lock = threading.Lock()
        if start:
            self.start()

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> KillSwitch:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="killswitch-listener", daemon=True)
            self._thread.start()
        return self

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Block until the first full read succeeded (True) or `timeout` passed (False).
        The state may still fail closed afterwards (e.g. no heartbeat yet)."""
        return self._ready.wait(timeout)

    def close(self) -> None:
        """Stop the listener, write a pending acknowledgement and deregister (best
        effort). Idempotent."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._flush_report()
        try:
            self._redis.xadd(C.KEY_CLIENTS, C.goodbye_entry(self.identity.client_id),
                maxlen=C.CLIENTS_MAXLEN, approximate=True)
        except (redis.RedisError, OSError):
            pass  # the service ages the entry out by last_seen
        self._redis.close()
        self._sub.close()

    def __enter__(self) -> KillSwitch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the listener thread ----------------------------------------------------------------

    def _run(self) -> None:
        core = self._core
        while not self._stop.is_set():
            pubsub, delay = None, 0.0
            try:
                pubsub = self._sub.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(C.CHANNEL, C.keyspace_channel(database_of(self._redis)))
                core.connected()
                while not self._stop.is_set():
                    action = core.next_action()
                    if action.kind == RELOAD:
                        core.loaded(*self._read_keys())
                        self._ready.set()
                    elif action.kind == REPORT:
                        self._write(action.report)
                    else:
                        core.messages(self._drain(pubsub, action.timeout))
            except (redis.RedisError, OSError) as exc:
                delay, warning = core.connection_lost(exc)
                if warning:
                    logger.warning("%s", warning)
                self._follow_stack()
            except Exception as exc:  # never let the listener die: a dead listener reads stale
                logger.exception("kill switch listener error; reconnecting")
                delay, _ = core.connection_lost(exc)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001 -- closing a broken socket
                        pass
            self._stop.wait(delay)

    @staticmethod
    def _drain(pubsub: Any, timeout: float) -> list[dict[str, Any]]:
        """Everything queued on the subscription (waiting up to `timeout` for the first)."""
        messages = []
        message = pubsub.get_message(timeout=timeout)
        while message is not None:
            messages.append(message)
            message = pubsub.get_message(timeout=0)
        return messages

    def _read_keys(self) -> tuple[Any, Any, Any, Any]:
        pipe = self._redis.pipeline(transaction=True)
        pipe.get(C.KEY_GLOBAL)
        pipe.hgetall(C.KEY_STATE)
        pipe.get(C.KEY_HEARTBEAT)
        pipe.hgetall(C.KEY_SCOPES)
        switch, state, heartbeat, details = pipe.execute()
        return switch, state, heartbeat, details

    def _write(self, report: Report | None) -> None:
        assert report is not None
        with self._write_lock:  # the loop thread may flush the same report on kill
            pipe = self._redis.pipeline(transaction=False)
            if report.ack is not None:
                pipe.xadd(C.KEY_ACKS, report.ack, maxlen=C.ACKS_MAXLEN, approximate=True)
            pipe.xadd(C.KEY_CLIENTS, C.registration_entry(self.identity.client_id, report.registration),
                      maxlen=C.CLIENTS_MAXLEN, approximate=True)
            pipe.execute()
            self._core.reported(report)

    def _flush_report(self) -> None:
        try:
            report = self._core.pending_report()
            if report is not None and report.ack is not None:
                self._write(report)
        except Exception:  # exiting anyway; the registry shows the process gone
            logger.warning("could not write the last acknowledgement", exc_info=True)

    def _follow_stack(self) -> None:
        """A URL from the stack record is looked up again when Redis is lost."""
        moved = moved_target(self.target)
        if moved is None:
            return
        logger.warning("kill switch client: the stack moved to %s", moved.describe())
        old = self._redis, self._sub
        self.target, self.redis_url = moved, moved.url
        self._redis, self._sub = connect_sync(moved)
        for client in old:
            client.close()
