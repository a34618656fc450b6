"""KillSwitch: the threaded client for ordinary (synchronous) trading loops."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import redis

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
    OnKill,
    View,
    ack_fields,
    connection_options,
    default_name,
    registration,
)
from .config import redis_url_from_env

logger = logging.getLogger("killswitch.client")


def _connect(url: str, *, pubsub: bool) -> redis.Redis:
    return redis.Redis.from_url(url, **connection_options(pubsub=pubsub))

class KillSwitch(_ClientBase):
    """The kill switch as a trading process sees it, kept in memory.

    `KillSwitch(redis_url, account="DU123", strategy="momo", name="momo-1")` starts a
    background thread that subscribes to `killswitch:updates`, reads the whole state
    on every (re)connect and every `backstop_interval` seconds, and acknowledges every
    version it applies. `check()` and the order gate read memory only.

    Fail closed: until the first full read, and whenever Redis is unreachable, the
    subscription is lost, the state is missing or the heartbeat is stale, the client
    reads `halt` and `cause` says why; it resumes by itself when the state is known.

    Kill: `check()`, `allows_*()` and `gate()` run `on_kill` (once, in the calling
    thread -- call them from the main thread) and then raise SystemExit(1). The
    background thread never exits the process itself: the loop's next check does.
    With `exit_on_kill=False` they return `kill` / refuse instead (embedded use).
    """

    def __init__(self, redis_url: str | None = None, *, account: str | None = None,
                 strategy: str | None = None, name: str | None = None,
                 on_kill: OnKill | None = None, exit_on_kill: bool = True,
                 stale_after: float | None = None, backstop_interval: float = 0.5,
                 report_interval: float = 1.0, start: bool = True) -> None:
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
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._acked_version: int | None = None
        self._acked_at: float | None = None
        self._reported: tuple[str, str | None] | None = None
        if start:
            self.start()

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> KillSwitch:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="killswitch-listener",
                                            daemon=True)
            self._thread.start()
        return self

    def wait_ready(self, timeout: float = 5.0) -> bool:
        """Block until the first full read succeeded (True) or `timeout` passed (False).
        The state may still fail closed afterwards (e.g. no heartbeat yet)."""
        return self._ready.wait(timeout)

    def close(self) -> None:
        """Stop the listener and deregister (best effort). Idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self._redis.hdel(KEY_CLIENTS, self.identity.client_id)
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
        backoff = 0.05
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self._sub.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(CHANNEL, self._keyspace)
                self._tracker.conn_cause = None
                self._reload()
                self._ready.set()
                backoff = 0.05
                self._listen(pubsub)
            except (redis.RedisError, OSError) as exc:
                was_connected = self._tracker.conn_cause is None
                cause = "subscription_lost" if was_connected else "redis_unreachable"
                if was_connected or self._view.cause != cause:
                    logger.warning("kill switch client failing closed: %s (%s)", cause, exc)
                self._tracker.conn_cause = cause
                self._publish()
            except Exception:  # never let the listener die: a dead listener would read stale
                logger.exception("kill switch listener error; reconnecting")
                self._tracker.conn_cause = "subscription_lost"
                self._publish()
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001 -- closing a broken socket
                        pass
            self._stop.wait(backoff)
            backoff = min(1.0, backoff * 2)

    def _listen(self, pubsub: Any) -> None:
        now = time.monotonic()
        next_backstop = now + self.backstop_interval
        next_report = now + self.report_interval
        while not self._stop.is_set():
            view = self._view
            wake = min(next_backstop, next_report, view.fresh_until)
            timeout = min(0.25, max(0.0, wake - time.monotonic()))
            message = pubsub.get_message(timeout=timeout)
            while message is not None:
                self._on_message(message)
                message = pubsub.get_message(timeout=0)
            now = time.monotonic()
            if now >= next_backstop:
                self._reload()
                next_backstop = now + self.backstop_interval
            if now >= next_report:
                self._report(force=True)
                next_report = now + self.report_interval
            elif self._current() is not view:
                self._report()  # e.g. the heartbeat went stale: tell the service at once

    def _on_message(self, message: dict[str, Any]) -> None:
        if message.get("type") != "message":
            return
        channel, data = message["channel"], message["data"]
        if channel == self._keyspace:
            # Only when the server has notify-keyspace-events enabled: a raw
            # `SET trading_switch kill` applies at once instead of at the next backstop read.
            self._tracker.switch = self._redis.get(KEY_GLOBAL)
            self._publish()
            self._report()
            return
        try:
            payload = json.loads(data)
        except ValueError:
            return
        kind = payload.get("type")
        if kind == "state":
            if self._tracker.state_message(payload):
                self._publish()
                self._report()  # reasons come with the message's event; the backstop re-reads all
        elif kind == "heartbeat":
            self._tracker.heartbeat(payload)
            hb_version = payload.get("version")
            if isinstance(hb_version, int) and (self._tracker.version is None
                                                or hb_version > self._tracker.version):
                self._reload()  # a state message was missed
            else:
                self._publish()
                self._report()

    def _reload(self) -> None:
        pipe = self._redis.pipeline(transaction=True)
        pipe.get(KEY_GLOBAL)
        pipe.hgetall(KEY_STATE)
        pipe.get(KEY_HEARTBEAT)
        pipe.hgetall(KEY_SCOPES)
        switch, state, heartbeat, details = pipe.execute()
        self._tracker.load(switch, state or {}, heartbeat, details or {})
        self._publish()
        self._report()

    def _flush_ack(self) -> None:
        try:
            self._report()
        except Exception:  # exiting anyway; the periodic registry shows the process gone
            logger.warning("could not acknowledge the kill before exiting", exc_info=True)

    def _report(self, *, force: bool = False) -> None:
        """Acknowledge a newly applied version; re-register when the level seen changed
        or the periodic refresh is due."""
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
        pipe.execute()
        self._reported = key
