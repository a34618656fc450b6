"""The breaker loop's leadership lease: one breaker process evaluates at a time.

Written here because main has no shared lease yet: `killswitch/runtime/leadership.py`
(Lease: hold / renew / release, `killswitch:leader:<name>`) is being added by another
engineer for the reconciler and the sweep. This class keeps the same key, the same
method names and the same rules so the engine can move onto it unchanged (NOTE for
the lead: replace this module by `runtime.leadership.Lease("breakers")`).

Rules (the standard single-instance Redis lock, SET NX PX with a random token and
compare-and-set scripts): `hold()` renews the lease or takes it when nobody holds it;
`renew()` only extends a lease this process holds; `release()` deletes it only if it is
still ours. A Redis error counts as "not held": whoever cannot renew must stop acting.
The lease alone does not make a trip happen once (a leader frozen between its renewal
and its write wakes up after a follower took over): the engine also takes the trip's
latch with SET NX (state.take_latch), so two processes never trip the same breach twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

import redis

from killswitch.distribution.connection import get_redis

logger = logging.getLogger("killswitch.breakers")

KEY_PREFIX = "killswitch:leader:"
DEFAULT_TTL = 2.0

_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class Lease:
    """The lease `killswitch:leader:<name>` of this process (thread-safe)."""

    def __init__(self, name: str = "breakers", *, ttl: float = DEFAULT_TTL) -> None:
        if ttl <= 0:
            raise ValueError(f"lease ttl {ttl!r}: expected a positive number of seconds")
        self.name, self.key, self.ttl = name, KEY_PREFIX + name, ttl
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._valid_until = 0.0
        self._lock = threading.Lock()

    @property
    def _ms(self) -> int:
        return max(1, int(self.ttl * 1000))

    def held(self) -> bool:
        """True while this process holds the lease by its own clock (no round trip)."""
        return time.monotonic() < self._valid_until

    def hold(self) -> bool:
        """Renew the lease, or take it when nobody holds it. True when held now."""
        with self._lock:
            started = time.monotonic()
            try:
                client = get_redis()
                held = bool(client.eval(_RENEW, 1, self.key, self.token, self._ms)) or bool(
                    client.set(self.key, self.token, nx=True, px=self._ms))
            except (redis.RedisError, OSError):
                held = False
            self._valid_until = started + self.ttl if held else 0.0
            return held

    def renew(self) -> bool:
        """Extend a lease this process holds; False (and no longer held) otherwise."""
        with self._lock:
            if not self.held():
                return False
            started = time.monotonic()
            try:
                renewed = bool(get_redis().eval(_RENEW, 1, self.key, self.token, self._ms))
            except (redis.RedisError, OSError):
                renewed = False
            self._valid_until = started + self.ttl if renewed else 0.0
            return renewed

    def release(self) -> None:
        """Give the lease up on a clean stop, so a follower takes over at its next poll."""
        with self._lock:
            self._valid_until = 0.0
            try:
                get_redis().eval(_RELEASE, 1, self.key, self.token)
            except (redis.RedisError, OSError):
                logger.warning("breaker lease: could not release; it expires in %ss", self.ttl)

    def holder(self) -> str | None:
        """Who holds the lease now (host:pid:random), or None."""
        try:
            return get_redis().get(self.key)
        except (redis.RedisError, OSError):
            return None
