"""One poller per bot token: a lease in Redis (SET NX PX), renewed while polling.

Written here because main has no shared leadership lease yet
(killswitch/runtime/leadership.py is being added by another engineer; this should
move onto it). Telegram itself lets only one getUpdates wait per token and answers
the other 409 Conflict; two instances would keep displacing each other, each seeing
some commands. The lease makes the second instance wait instead, loudly.

A Redis that cannot be reached does not stop the bot: polling without the lease risks
409s, not double execution (the update ledger in the database makes a command act
once whoever reads it), and a person must still be able to halt from chat.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

import redis

from killswitch.distribution.connection import get_redis

logger = logging.getLogger("killswitch.chat")

KEY = "killswitch:telegram:poller:{bot_id}"

# Renew / release only if we still own it (another instance may have taken over after
# our lease ran out).
_RENEW = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"

HELD, LOST, UNKNOWN = "held", "lost", "unknown"


class PollerLease:
    """The lease on polling `bot_id`, owned by this process (`owner`)."""

    def __init__(self, bot_id: int, *, seconds: float) -> None:
        self.key = KEY.format(bot_id=bot_id)
        self.ms = int(seconds * 1000)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def acquire(self) -> str:
        """HELD when this process holds the lease now (taken or renewed), LOST when
        another instance holds it, UNKNOWN when Redis cannot be reached."""
        try:
            client = get_redis()
            if client.set(self.key, self.owner, nx=True, px=self.ms):
                return HELD
            if client.eval(_RENEW, 1, self.key, self.owner, self.ms):
                return HELD
            return LOST
        except (redis.RedisError, OSError):
            logger.warning("Redis unreachable: polling Telegram without the poller lease", exc_info=True)
            return UNKNOWN

    def holder(self) -> str | None:
        try:
            return get_redis().get(self.key)
        except (redis.RedisError, OSError):
            return None

    def release(self) -> None:
        """Give the lease up (a stopping bot), so a successor need not wait it out."""
        try:
            get_redis().eval(_RELEASE, 1, self.key, self.owner)
        except (redis.RedisError, OSError):
            logger.warning("could not release the Telegram poller lease; it runs out by itself", exc_info=True)
