"""The bot's update queue and long polling, as Telegram's server runs them.

Delivery follows tdlib/telegram-bot-api (``Client.cpp``): ``getUpdates`` first forgets
every update below ``offset`` (a negative offset keeps only the last ``-offset``),
answers at once when updates are queued or ``timeout`` is 0, and otherwise waits; a
waiting poll is answered 409 "terminated by other getUpdates request" as soon as another
poll starts waiting (so of two bot instances, each keeps displacing the other).
``allowed_updates`` is remembered and decides which updates are queued from then on;
updates already queued stay. While a webhook is set, getUpdates answers 409.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from tests.fake_telegram.errors import (
    CONFLICT_OTHER_POLLER,
    CONFLICT_WEBHOOK,
    ApiError,
    ConnectionDropped,
)

#: Every update type the fake can produce.
UPDATE_TYPES = frozenset({"message", "edited_message", "callback_query"})
#: What Telegram sends when allowed_updates was never set (or set to []): everything but
#: chat_member, message_reaction and message_reaction_count, none of which the fake makes.
DEFAULT_ALLOWED = UPDATE_TYPES
#: How often a waiting long poll checks whether its client hung up.
_CLIENT_CHECK_INTERVAL = 0.05


class UpdateQueue:
    """Pending updates, the waiting long poll and the webhook; guarded by ``cond``."""

    def __init__(self, cond: threading.Condition, first_update_id: int) -> None:
        self.cond = cond
        self._updates: list[tuple[str, dict[str, Any]]] = []  # (update type, update)
        self._next_update_id = first_update_id
        self._allowed = DEFAULT_ALLOWED
        self._long_poll: dict[str, bool] | None = None  # the waiting poll: {"conflicted": ...}
        self._epoch = 0  # bumped when the server goes down: waiting polls lose their connection
        self._webhook_url = ""

    def enqueue(self, kind: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """Queue an update of type ``kind``; returns it, or None if allowed_updates excludes it."""
        with self.cond:
            if kind not in self._allowed:
                return None
            update = {"update_id": self._next_update_id, kind: payload}
            self._next_update_id += 1
            self._updates.append((kind, update))
            self.cond.notify_all()
            return copy.deepcopy(update)

    def get_updates(
        self,
        *,
        offset: int,
        limit: int,
        timeout: float,
        allowed_updates: Iterable[str] | None,
        client_gone: Callable[[], bool],
    ) -> list[dict[str, Any]]:
        """Confirm updates below ``offset``, then answer the queued ones (at most ``limit``),
        waiting up to ``timeout`` seconds for the first.

        Raises:
            ApiError: 409 when a webhook is set, or when another poll displaced this one.
            ConnectionDropped: the server went down or the client hung up while waiting.
        """
        with self.cond:
            if self._webhook_url:
                raise ApiError(409, CONFLICT_WEBHOOK)
            if allowed_updates is not None:
                self._allowed = frozenset(allowed_updates) or DEFAULT_ALLOWED
            if offset > 0:
                self._updates = [(k, u) for k, u in self._updates if u["update_id"] >= offset]
            elif offset < 0:
                self._updates = self._updates[offset:]
            if self._updates or timeout <= 0:
                return [copy.deepcopy(u) for _, u in self._updates[:limit]]
            if self._long_poll is not None:
                self._long_poll["conflicted"] = True
            poll = self._long_poll = {"conflicted": False}
            self.cond.notify_all()
            epoch, deadline = self._epoch, time.monotonic() + timeout
            try:
                while True:
                    if poll["conflicted"]:
                        raise ApiError(409, CONFLICT_OTHER_POLLER)
                    if self._epoch != epoch:
                        raise ConnectionDropped("server down")
                    if self._updates:
                        return [copy.deepcopy(u) for _, u in self._updates[:limit]]
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return []
                    if client_gone():
                        raise ConnectionDropped("client disconnected")
                    self.cond.wait(min(remaining, _CLIENT_CHECK_INTERVAL))
            finally:
                if self._long_poll is poll:
                    self._long_poll = None

    def server_down(self) -> None:
        """Waiting long polls lose their connection."""
        with self.cond:
            self._epoch += 1
            self.cond.notify_all()

    def pending(self) -> list[dict[str, Any]]:
        with self.cond:
            return [copy.deepcopy(u) for _, u in self._updates]

    def set_webhook(self, url: str) -> None:
        with self.cond:
            self._webhook_url = url
            self.cond.notify_all()

    def delete_webhook(self, *, drop_pending_updates: bool) -> str:
        """Returns the description Telegram adds to its ``true`` result."""
        with self.cond:
            if drop_pending_updates:
                self._updates.clear()
            was_set, self._webhook_url = bool(self._webhook_url), ""
            self.cond.notify_all()
            return "Webhook was deleted" if was_set else "Webhook is already deleted"

    def webhook_info(self) -> dict[str, Any]:
        with self.cond:
            return {"url": self._webhook_url, "has_custom_certificate": False, "pending_update_count": len(self._updates)}
