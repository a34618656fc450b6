"""Leadership leases: one process at a time runs each singleton loop (the reconciler,
the broker sweep, the breaker loop), however many are started.

A lease is the Redis key `killswitch:leader:<name>` holding its holder's token
(`host:pid:random`). It is taken with `SET key token NX PX ttl`, renewed by the holder
with a compare-and-expire script and released on a clean stop with compare-and-delete,
so nobody ever renews or deletes a lease it does not hold.

`run_as_leader()` is the loop every singleton uses. It guarantees:

- a round starts only right after the lease was renewed (checked before each round),
  so it has `ttl` before anybody else may take over; a background renewer keeps the
  lease through rounds longer than that, up to `max_round` (a round stuck longer lets
  the lease lapse, so a healthy follower takes over);
- a follower tries to take the lease every `follower_poll`: it takes over within
  `ttl + follower_poll` of the leader stopping, crashing or hanging (SIGSTOP: its
  renewer stops with it), and within one poll of a clean stop;
- a leader that cannot renew (Redis down, or its lease expired and another process
  took it) stops leading at once and becomes a follower. A round checks again right
  before it writes (`lease.renew()`: True means still held, for another `ttl`), so a
  leader frozen in the middle of a round (SIGSTOP) and woken after a follower took
  over writes nothing.

Why not a library: the lock recipes in redis-py (`redis.lock.Lock`) and elsewhere are
for mutual exclusion around one critical section; a singleton loop needs the
holder's rounds, a renewer bounded by the round's progress, and a follower that
takes over by itself, which is this module. The Redis part is the standard
single-instance lock (SET NX PX with a random token; Lua compare-and-set).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger("killswitch.leadership")

KEY_PREFIX = "killswitch:leader:"
DEFAULT_TTL = 2.0

# KEYS[1] = lease key, ARGV[1] = token, ARGV[2] = ttl in ms. 1 when renewed, 0 otherwise.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS[1] = lease key, ARGV[1] = token. 1 when deleted, 0 when somebody else holds it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _service_client(timeout: float) -> redis.Redis:
    """The service's Redis (Sentinel-aware, its ACL user), with timeouts well under the
    lease's ttl and no silent retries: a renew that cannot be done in time must fail,
    never be retried past the lease's expiry."""
    from django.conf import settings

    from riskcontrol import redis_config

    return redis_config.from_settings(settings).client(
        decode_responses=True, socket_connect_timeout=timeout, socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0))


class Lease:
    """The lease of one loop. Thread-safe (the renewer thread and the loop share it)."""

    def __init__(self, name: str, *, ttl: float = DEFAULT_TTL, client: redis.Redis | None = None) -> None:
        if not name or not name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"lease name {name!r}: expected letters, digits, '-' or '_'")
        if ttl <= 0:
            raise ValueError(f"lease ttl {ttl!r}: expected a positive number of seconds")
        self.name = name
        self.key = KEY_PREFIX + name
        self.ttl = ttl
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._client = client or _service_client(timeout=max(0.05, ttl / 4))
        self._renew = self._client.register_script(_RENEW)
        self._release = self._client.register_script(_RELEASE)
        self._valid_until = 0.0  # monotonic; 0 when not held
        self._lock = threading.Lock()

    @property
    def _ttl_ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    def held(self) -> bool:
        """True while this process holds the lease by its own clock (renewed less than
        `ttl` ago); no round trip."""
        return time.monotonic() < self._valid_until

    def hold(self) -> bool:
        """Renew the lease, or take it when nobody holds it. True when this process
        holds it now, for `ttl` from before the call. A Redis error counts as not
        held (whoever cannot renew must stop acting)."""
        with self._lock:
            started = time.monotonic()
            try:
                held = bool(self._renew(keys=[self.key], args=[self.token, self._ttl_ms]))
                if not held:
                    held = bool(self._client.set(self.key, self.token, nx=True, px=self._ttl_ms))
            except (redis.RedisError, OSError):
                # Debug only: a follower polls this several times a second while Redis is
                # down; the loop logs the change of role once.
                logger.debug("lease %s: Redis did not answer; not leading", self.name, exc_info=True)
                held = False
            self._valid_until = started + self.ttl if held else 0.0
            return held

    def renew(self) -> bool:
        """Extend a lease this process holds; False (and no longer held) when it does not."""
        with self._lock:
            if not self.held():
                return False
            started = time.monotonic()
            try:
                renewed = bool(self._renew(keys=[self.key], args=[self.token, self._ttl_ms]))
            except (redis.RedisError, OSError):
                renewed = False
            self._valid_until = started + self.ttl if renewed else 0.0
            return renewed

    def release(self) -> None:
        """Give the lease up (a clean stop): a follower takes over at its next poll.
        Never deletes a lease somebody else holds; a Redis error is logged (the lease
        then expires by itself)."""
        with self._lock:
            self._valid_until = 0.0
            try:
                self._release(keys=[self.key], args=[self.token])
            except (redis.RedisError, OSError):
                logger.warning("lease %s: could not release; it expires in %ss", self.name, self.ttl)

    def holder(self) -> str | None:
        """The token of whoever holds the lease now (for operators), or None."""
        return self._client.get(self.key)


def holder_of(name: str, client: redis.Redis) -> str | None:
    """Who holds the lease `name` (`host:pid:random`), or None; for readiness and metrics."""
    return client.get(KEY_PREFIX + name)


def run_as_leader(lease: Lease, round_: Callable[[], object], *, interval: float, stop: threading.Event,
                  max_round: float = 30.0, follower_poll: float | None = None) -> None:
    """Run `round_()` every `interval` seconds while this process holds `lease`; wait as a
    follower otherwise. Returns when `stop` is set, after releasing the lease.

    `round_` exceptions are logged and never end the loop (a dead singleton silently
    stops its work). See the module docstring for the guarantees.
    """
    follower_poll = follower_poll if follower_poll is not None else min(interval, lease.ttl / 4)
    progress = {"round_started": None}
    renewer = threading.Thread(target=_renew_while_progressing, args=(lease, progress, stop, max_round),
                               name=f"lease-{lease.name}", daemon=True)
    renewer.start()
    leading = False
    try:
        while not stop.is_set():
            if lease.hold():
                if not leading:
                    logger.info("lease %s: leading (%s)", lease.name, lease.token,
                                extra={"lease": lease.name, "token": lease.token})
                leading = True
                started = time.monotonic()
                progress["round_started"] = started
                try:
                    round_()
                except Exception:  # never die: see the docstring
                    logger.exception("%s round failed", lease.name)
                finally:
                    progress["round_started"] = None
                stop.wait(max(0.0, interval - (time.monotonic() - started)))
            else:
                if leading:
                    logger.warning("lease %s: no longer leading; following", lease.name,
                                   extra={"lease": lease.name, "token": lease.token})
                leading = False
                stop.wait(follower_poll)
    finally:
        stop.set()  # ends the renewer
        renewer.join(timeout=lease.ttl)
        lease.release()


def _renew_while_progressing(lease: Lease, progress: dict, stop: threading.Event, max_round: float) -> None:
    """Keep a held lease alive between the loop's own renewals (long rounds, long
    intervals), but not for a round running longer than `max_round`: a stuck leader
    must let a follower take over."""
    while not stop.wait(lease.ttl / 3):
        started = progress["round_started"]
        if started is not None and time.monotonic() - started > max_round:
            continue
        if lease.held() and not lease.renew():
            logger.warning("lease %s: lost while %s", lease.name,
                           "in a round" if started is not None else "waiting for the next round")
