"""The status read answered on the event loop: Django's last answer, replayed while the
state version published to Redis says nothing has changed.

`GET /api/risk/kill-switch` is what every dashboard, script and monitor polls. Through
Django it costs a worker thread, the middleware chain, authentication, one database
query and the JSON rendering, and at 200 pollers those reads took the threads and the
interpreter from the activations (bench/bench_api.py with BENCH_TRACE=1: the slowest
activations waited behind 16-44 reads). Replayed, a read costs one Redis HGET awaited
on the event loop and no thread at all.

What is replayed, and when (everything else goes to Django, which answers as always):

- Only an answer Django gave to the same request: a GET of the status path without a
  query string or cookies, with the same scheme, Host, X-Forwarded-Host,
  X-Forwarded-Proto and Accept (so Django has already checked the host, the
  negotiation and the proxy headers for exactly this request), status 200, no
  Set-Cookie, and carrying the view's VERSION_HEADER and FRESH_HEADER (only the
  status view sets them).
- Only to a token Django authenticated for reads within the read cache's lifetime
  (caches.read_auth_cache, 2 s), whose user still has the viewer role there. A
  token Django has not seen, or has not seen lately, is looked up by Django.
- Only while the body is exact: the view says how long (FRESH_HEADER, in ms: a
  cooldown's whole seconds remaining tick; forever when no scope is cooling down).
- Only while Redis' `killswitch:state` version equals the body's version. The
  body always comes from the database (Django built it); Redis only tells whether
  the database may have moved on since. A change made in this process forgets the
  kept answers at once (event_committed), so a publish to Redis that failed cannot
  leave this process replaying the old state; a change made elsewhere whose publish
  failed shows once the reconciler has republished (its interval, 0.5 s), which is
  also when the trading processes see it. Redis unreachable: no replay (for 2 s),
  Django answers from the database.

Why hand-written: HTTP caches (Django's cache middleware, a proxy) key on the URL and
expire on time; this answer must change the moment the state does, and be given only to
callers Django has authorized.

KILLSWITCH_STATUS_REPLAY=false turns it off.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from killswitch_client.contract import KEY_STATE as _KEY_STATE

from . import countdowns
from .caches import read_auth_cache

logger = logging.getLogger("killswitch")

#: Set by the status view on its answer: the state version of the body, and how long
#: (ms, or "inf") the body stays exact.
VERSION_HEADER = "X-Killswitch-Version"
FRESH_HEADER = "X-Killswitch-Fresh-Ms"
_VERSION, _FRESH = VERSION_HEADER.lower().encode(), FRESH_HEADER.lower().encode()
#: The request headers that, with the scheme, make two status requests the same request.
_SAME_REQUEST = (b"host", b"x-forwarded-host", b"x-forwarded-proto", b"accept")
#: At most this many different request forms are kept (a server is reached under few names).
MAX_KEPT = 16
#: A Redis that failed is not asked again for this long (Django answers meanwhile).
REDIS_BACKOFF_SECONDS = 2.0
REDIS_TIMEOUT_SECONDS = 0.25
#: A request that finds another of its form with Django waits this long for that answer.
FETCH_WAIT_SECONDS = 5.0


def fresh_header_value(seconds: float) -> str:
    return "inf" if math.isinf(seconds) else str(max(0, int(seconds * 1000)))


@dataclass(frozen=True, slots=True)
class _Kept:
    version: int
    expires: float  # the service clock's timestamp (killswitch.runtime.clock), as the body's countdowns
    status: int
    headers: tuple[tuple[bytes, bytes], ...]
    body: bytes
    recipe: countdowns.Recipe | None = None  # how to redraw its countdowns once expired

    def redrawn(self, now: float) -> _Kept:
        body, fresh, recipe = countdowns.redraw(self.recipe, now)
        headers = tuple((name, str(len(body)).encode() if name.lower() == b"content-length"
                         else fresh_header_value(fresh).encode() if name.lower() == _FRESH else value)
                        for name, value in self.headers)
        return _Kept(self.version, now + fresh, self.status, headers, body, recipe)


class _SharedRead:
    """One Redis read for many waiters, never older than any of them.

    A caller joins the next read to *start*, never one already under way (that one may
    have been answered before the caller's request arrived), so a replayed answer is
    checked against Redis as it was after the request came in. 200 pollers then cost
    one HGET at a time on one connection instead of 200 connections; under load, a
    bench run without it saw the reads to Redis time out and every poller fall back to
    Django. Hand-written: a dozen lines of asyncio (a lock would serialize the callers,
    each with its own read)."""

    def __init__(self, read) -> None:
        self._read = read
        self._next: asyncio.Future | None = None
        self._task: asyncio.Task | None = None

    async def join(self) -> int | None:
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            if self._task is None:
                self._task = asyncio.get_running_loop().create_task(self._run())
        return await asyncio.shield(self._next)

    async def _run(self) -> None:
        future: asyncio.Future | None = None
        try:
            while self._next is not None:
                future, self._next = self._next, None
                future.set_result(await self._read())
        finally:  # cancelled (the loop is closing): no waiter is left hanging
            for waiting in (future, self._next):
                if waiting is not None and not waiting.done():
                    waiting.set_result(None)
            self._next = None
            self._task = None


class StatusReplay:
    """ASGI middleware for the HTTP side: replays the status answer (see the module)."""

    def __init__(self, app) -> None:
        self.app = app
        self._kept: dict[tuple, _Kept] = {}
        self._generation = 0
        # The state version this process last committed: an answer older than it is
        # never kept (a read that began before the commit answers, but is not replayed).
        self._min_version = 0
        self._path: str | None = None
        self._redis_down_until = 0.0
        self._fetching: dict[tuple, asyncio.Future] = {}  # request form -> its answer from Django, awaited
        self._reads: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SharedRead] = (
            weakref.WeakKeyDictionary())
        # One Redis client per event loop and target (a server has one loop).
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]] = (
            weakref.WeakKeyDictionary())
        self.replayed = 0  # answers given without Django (tests and the benchmark read it)
        _instances.add(self)

    def forget(self, version: int | None = None) -> None:
        """Drop every kept answer: this process committed a change, to state `version`.
        Without a version, no answer in flight now is kept either."""
        self._kept = {}
        if version is None:
            self._generation += 1
        else:
            self._min_version = max(self._min_version, version)

    async def __call__(self, scope, receive, send) -> None:
        if scope.get("type") != "http" or scope.get("path") != self.path():
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())  # the last of a repeated header, as Django's META
        if (scope.get("method") != "GET" or scope.get("query_string") or b"cookie" in headers
                or not getattr(settings, "KILLSWITCH_STATUS_REPLAY", True)):
            await self.app(scope, receive, _without_cooldowns(send))
            return
        same = (scope.get("scheme"), *(headers.get(name) for name in _SAME_REQUEST))
        if _may_read(headers.get(b"authorization")):
            if await self._replayed(same, send):
                return
            fetching = self._fetching.get(same)
            if fetching is not None:
                # Another request of this form is with Django (the state just changed, or
                # this process started): its answer, checked like any, serves this one too,
                # rather than 200 pollers each asking Django at once.
                try:
                    await asyncio.wait_for(asyncio.shield(fetching), FETCH_WAIT_SECONDS)
                except TimeoutError:
                    pass
                if await self._replayed(same, send):
                    return
        await self._answer_and_keep(scope, receive, send, same)

    async def _replayed(self, same: tuple, send) -> bool:
        """Replay the kept answer of this form if Redis' version, read after the request
        arrived, is still its version; its countdowns redrawn when they have moved."""
        if same not in self._kept:
            return False
        version = await self._published_version()
        kept = self._kept.get(same)  # what is kept now, after the read
        if kept is None or version is None or version != kept.version:
            return False
        now = _now()
        if now >= kept.expires:
            if kept.recipe is None:
                return False
            generation, kept = self._generation, kept.redrawn(now)
            if generation == self._generation and self._kept.get(same) is not None:
                self._kept = {**self._kept, same: kept}
        self.replayed += 1
        await send({"type": "http.response.start", "status": kept.status, "headers": kept.headers})
        await send({"type": "http.response.body", "body": kept.body})
        return True

    def path(self) -> str:
        if self._path is None:
            from django.urls import reverse

            self._path = reverse("kill-switch")
        return self._path

    async def _answer_and_keep(self, scope, receive, send, same: tuple) -> None:
        fetching = None
        if same not in self._fetching:
            fetching = self._fetching[same] = asyncio.get_running_loop().create_future()
        try:
            await self._answer(scope, receive, send, same)
        finally:
            if fetching is not None:
                del self._fetching[same]
                fetching.set_result(None)

    async def _answer(self, scope, receive, send, same: tuple) -> None:
        generation = self._generation
        started = _now()
        start: dict[str, Any] = {}
        body: list[bytes] = []

        async def keeping_send(message) -> None:
            if message["type"] == "http.response.start":
                headers, cooldowns = countdowns.take_header(tuple(message.get("headers") or ()))
                message = {**message, "headers": headers}
                start.update(message, cooldowns=cooldowns)
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, keeping_send)
        if start.get("status") != 200 or generation != self._generation:
            return
        headers = start["headers"]
        named = {name.lower(): value for name, value in headers}
        if _FRESH not in named or _VERSION not in named or b"set-cookie" in named:
            return
        try:
            version = int(named[_VERSION])
            fresh_for = math.inf if named[_FRESH] == b"inf" else int(named[_FRESH]) / 1000
        except ValueError:
            return
        if version < self._min_version:
            return
        content = b"".join(body)
        recipe = countdowns.recipe_for(content, start["cooldowns"])
        kept = dict(self._kept) if len(self._kept) < MAX_KEPT else {}
        kept[same] = _Kept(version, started + fresh_for, 200, headers, content, recipe)
        if generation == self._generation and version >= self._min_version:
            self._kept = kept

    async def _published_version(self) -> int | None:
        """Redis' `killswitch:state` version, read after this call began, or None (no
        replay) when it cannot be read. Concurrent callers share one read (_SharedRead)."""
        if time.monotonic() < self._redis_down_until:
            return None
        loop = asyncio.get_running_loop()
        shared = self._reads.get(loop)
        if shared is None:
            shared = self._reads[loop] = _SharedRead(self._read_version)
        return await shared.join()

    async def _read_version(self) -> int | None:
        try:
            raw = await asyncio.wait_for(self._redis().hget(_KEY_STATE, "version"), REDIS_TIMEOUT_SECONDS)
            return int(raw) if raw is not None else None
        except Exception as exc:  # noqa: BLE001 - any failure means: ask the database
            self._redis_down_until = time.monotonic() + REDIS_BACKOFF_SECONDS
            logger.info("status replay off for %.0f s: Redis did not answer (%r)", REDIS_BACKOFF_SECONDS, exc)
            return None

    def _redis(self):
        from riskcontrol import redis_config

        loop = asyncio.get_running_loop()
        target = redis_config.from_settings(settings)
        kept = self._clients.get(loop)
        if kept is None or kept[0] != target:
            client = target.async_client(
                db=redis_config.DB_STATE, decode_responses=True, socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
                socket_timeout=REDIS_TIMEOUT_SECONDS)
            self._clients[loop] = kept = (target, client)
        return kept[1]


def _without_cooldowns(send):
    """`send`, taking the view's COOLDOWNS_HEADER off the answer (it never leaves the server)."""

    async def sending(message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": countdowns.take_header(tuple(message.get("headers") or ()))[0]}
        await send(message)

    return sending


def _now() -> float:
    from killswitch.runtime import clock

    return clock.now().timestamp()


def _may_read(authorization: bytes | None) -> bool:
    """Whether the request's token was authenticated by Django for reads lately and its
    user may read the kill switch (nothing here touches the database)."""
    if not authorization:
        return False
    parts = authorization.split()
    if len(parts) != 2 or parts[0].lower() != b"token":
        return False
    try:
        key = parts[1].decode("ascii")
    except UnicodeDecodeError:
        return False
    from killswitch.services.authorization import VIEW, user_may
    from killswitch.services.tokens import hash_key

    kept = read_auth_cache.get(hash_key(key))
    if kept is None:
        return False
    try:
        return user_may(kept[0], VIEW)  # the permissions were loaded with the lookup
    except Exception:  # noqa: BLE001 - e.g. a permission not in the loaded cache: ask Django
        return False


_instances: weakref.WeakSet[StatusReplay] = weakref.WeakSet()


def forget_all(version: int | None = None) -> None:
    """Every replay of this process forgets its kept answers (see StatusReplay.forget)."""
    for replay in list(_instances):
        replay.forget(version)


def _on_commit(*, event: Any = None, changed: bool = False, **_: Any) -> None:
    if changed:
        version = getattr(event, "version", None)
        forget_all(version if isinstance(version, int) else None)


def connect_signals() -> None:
    """Forget the kept answers whenever this process commits a change (called once,
    when the application is built)."""
    from killswitch.runtime.hooks import event_committed

    event_committed.connect(_on_commit, dispatch_uid="riskcontrol.performance.replay")
