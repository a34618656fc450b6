"""The Telegram side of the fake: users, chats, messages and what the bot does to them.

Everything here runs under one condition variable (``World.cond``, shared with the
update queue), so the HTTP threads and the test's control calls see one consistent
world; every change notifies it, which is what wakes a waiting long poll and the tests'
bounded waits.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.fake_telegram.errors import ApiError, bad_request
from tests.fake_telegram.formatting import command_entities
from tests.fake_telegram.updates import UpdateQueue

_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)


@dataclasses.dataclass
class _Stored:
    message: dict[str, Any]
    from_bot: bool
    seq: int
    deleted: bool = False


def unix_time(when: dt.datetime | int | float | None) -> int:
    """Telegram's ``date``: whole seconds since the epoch (``None``: now).

    Raises:
        TypeError: for anything but a timezone-aware datetime, a number or None.
    """
    if when is None:
        return int(time.time())
    if isinstance(when, dt.datetime):
        if when.tzinfo is None:
            raise TypeError("date must be timezone-aware (a naive datetime has no defined instant)")
        return int(when.timestamp())
    if isinstance(when, int | float) and not isinstance(when, bool):
        return int(when)
    raise TypeError(f"date must be a datetime, a unix timestamp or None, got {when!r}")


#: How often a bounded wait re-checks its predicate besides on every change.
_RECHECK_INTERVAL = 0.02


class World:
    """The in-memory Telegram of one bot. All methods are thread-safe."""

    def __init__(self, *, bot_user: dict[str, Any], first_update_id: int, privacy_mode: bool) -> None:
        self.cond = threading.Condition()
        self.bot_user = bot_user
        self.privacy_mode = privacy_mode
        self._users: dict[int, dict[str, Any]] = {}
        self._chats: dict[int, dict[str, Any]] = {}
        self._messages: dict[tuple[int, int], _Stored] = {}
        self._last_message_id: dict[int, int] = {}
        self._seq = 0
        self.updates = UpdateQueue(self.cond, first_update_id)
        self._callbacks: dict[str, dict[str, Any]] = {}
        self._next_callback_id = 4_000_000_000_000_000_001
        self._answers: list[dict[str, Any]] = []
        self._commands: dict[tuple[str, str], list[dict[str, str]]] = {}
        self._blocked: set[int] = set()

    # ------------------------------------------------------------------ helpers

    def _changed(self) -> None:
        self.cond.notify_all()

    def _store(self, chat_id: int, message: dict[str, Any], *, from_bot: bool) -> _Stored:
        self._seq += 1
        stored = _Stored(message, from_bot, self._seq)
        self._messages[(chat_id, message["message_id"])] = stored
        self._changed()
        return stored

    def _new_message(self, chat: dict[str, Any], sender: dict[str, Any], date: int) -> dict[str, Any]:
        message_id = self._last_message_id.get(chat["id"], 0) + 1
        self._last_message_id[chat["id"]] = message_id
        return {"message_id": message_id, "from": sender, "chat": chat, "date": date}

    def _existing(self, chat_id: int, message_id: int) -> _Stored | None:
        stored = self._messages.get((chat_id, message_id))
        return None if stored is None or stored.deleted else stored

    def _register_user(
        self, user_id: int, username: str | None, first_name: str | None, last_name: str | None
    ) -> dict[str, Any]:
        """The user as Telegram shows them; names not given keep their earlier values."""
        if not isinstance(user_id, int) or isinstance(user_id, bool) or user_id <= 0:
            raise ValueError(f"user_id must be a positive int (Telegram user ids are), got {user_id!r}")
        known = self._users.get(user_id, {})
        username = known.get("username") if username is None else username
        last_name = known.get("last_name") if last_name is None else last_name
        first_name = first_name or known.get("first_name") or "Test"
        user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}
        if last_name:
            user["last_name"] = last_name
        if username:
            user["username"] = username
        self._users[user_id] = user
        return user

    def _register_chat(self, chat_id: int, user: dict[str, Any], chat_type: str, title: str | None) -> dict[str, Any]:
        if chat_type == "private":
            if chat_id != user["id"]:
                raise ValueError(
                    f"a private chat's id is the user's id: chat_id {chat_id} != user_id {user['id']}"
                )
            chat = {k: v for k, v in user.items() if k in ("id", "first_name", "last_name", "username")}
            chat["type"] = "private"
        elif chat_type in ("group", "supergroup"):
            if not isinstance(chat_id, int) or chat_id >= 0:
                raise ValueError(f"a {chat_type}'s chat_id must be a negative int, got {chat_id!r}")
            known = self._chats.get(chat_id)
            chat = {"id": chat_id, "type": chat_type, "title": title or (known or {}).get("title") or f"Group {-chat_id}"}
        else:
            raise ValueError(f"chat_type must be 'private', 'group' or 'supergroup', got {chat_type!r}")
        known = self._chats.get(chat_id)
        if known is not None and known["type"] != chat["type"]:
            raise ValueError(f"chat {chat_id} is a {known['type']} chat, not {chat_type}")
        self._chats[chat_id] = chat
        return chat

    # ------------------------------------------------------------------ what users do

    def user_message(
        self,
        *,
        user_id: int,
        chat_id: int,
        text: str,
        username: str | None,
        first_name: str | None,
        last_name: str | None,
        chat_type: str,
        chat_title: str | None,
        date: dt.datetime | int | float | None,
        reply_to_message_id: int | None,
    ) -> dict[str, Any] | None:
        """A user writes ``text``; returns the queued Update, or None when Telegram
        would not deliver it (privacy mode in a group, or excluded by allowed_updates)."""
        if not isinstance(text, str) or not text:
            raise ValueError(f"text must be a non-empty str, got {text!r}")
        with self.cond:
            user = self._register_user(user_id, username, first_name, last_name)
            chat = self._register_chat(chat_id, user, chat_type, chat_title)
            self._blocked.discard(user_id)  # a user has to unblock a bot to write to it
            message = self._new_message(chat, user, unix_time(date))
            message["text"] = text
            if entities := command_entities(text):
                message["entities"] = entities
            target = None
            if reply_to_message_id is not None:
                target = self._existing(chat_id, reply_to_message_id)
                if target is None:
                    raise ValueError(f"no message {reply_to_message_id} in chat {chat_id} to reply to")
                message["reply_to_message"] = {k: v for k, v in target.message.items() if k != "reply_to_message"}
            self._store(chat_id, message, from_bot=False)
            if chat["type"] != "private" and self.privacy_mode and not self._meant_for_bot(text, target):
                return None
            return self.updates.enqueue("message", copy.deepcopy(message))

    def _meant_for_bot(self, text: str, replied_to: _Stored | None) -> bool:
        """Telegram's privacy mode: in groups a bot sees commands meant for it and replies
        to its own messages, nothing else."""
        if replied_to is not None and replied_to.from_bot:
            return True
        entities = command_entities(text)
        if not entities or entities[0]["offset"] != 0:
            return False
        command = text[: entities[0]["length"]]
        return "@" not in command or command.split("@", 1)[1].lower() == self.bot_user["username"].lower()

    def press_button(
        self, *, user_id: int, chat_id: int, message_id: int, data: str, username: str | None,
        first_name: str | None, check_keyboard: bool,
    ) -> dict[str, Any] | None:  # fmt: skip
        """A user presses the inline button carrying ``data``; returns the callback_query Update."""
        with self.cond:
            stored = self._existing(chat_id, message_id)
            if stored is None or not stored.from_bot:
                raise ValueError(f"the bot sent no message {message_id} in chat {chat_id} (or it was deleted)")
            if stored.message["chat"]["type"] == "private" and user_id != chat_id:
                raise ValueError(f"only user {chat_id} can press buttons in private chat {chat_id}")
            offered = [
                button.get("callback_data")
                for row in stored.message.get("reply_markup", {}).get("inline_keyboard", [])
                for button in row
            ]
            if check_keyboard and data not in offered:
                raise ValueError(
                    f"message {message_id} in chat {chat_id} has no button with callback_data {data!r}; "
                    f"its buttons carry {[d for d in offered if d is not None]}"
                )
            user = self._register_user(user_id, username, first_name, None)
            query_id = str(self._next_callback_id)
            self._next_callback_id += 1
            query = {
                "id": query_id,
                "from": user,
                "message": copy.deepcopy(stored.message),
                "chat_instance": str(7_000_000_000_000_000 + abs(chat_id)),
                "data": data,
            }
            self._callbacks[query_id] = {"query": query, "answered": False}
            return self.updates.enqueue("callback_query", copy.deepcopy(query))

    def block(self, user_id: int) -> None:
        """The user blocks the bot: messages to their private chat get 403."""
        with self.cond:
            self._blocked.add(user_id)

    # ------------------------------------------------------------------ what the bot does

    def send_message(
        self, *, chat_id: int, text: str, entities: list[dict[str, Any]], reply_markup: dict[str, Any] | None,
        reply_to: int | None, allow_without_reply: bool,
    ) -> dict[str, Any]:  # fmt: skip
        """Raises ApiError: 400 chat not found / message to be replied not found, 403 blocked."""
        with self.cond:
            chat = self._chats.get(chat_id)
            if chat is None:
                raise bad_request("chat not found")
            if chat["type"] == "private" and chat_id in self._blocked:
                raise ApiError(403, "Forbidden: bot was blocked by the user")
            target = self._existing(chat_id, reply_to) if reply_to is not None else None
            if reply_to is not None and target is None and not allow_without_reply:
                raise bad_request("message to be replied not found")
            message = self._new_message(chat, self.bot_user, unix_time(None))
            message["text"] = text
            if entities:
                message["entities"] = entities
            if reply_markup is not None:
                message["reply_markup"] = reply_markup
            if target is not None:
                message["reply_to_message"] = {k: v for k, v in target.message.items() if k != "reply_to_message"}
            self._store(chat_id, message, from_bot=True)
            return copy.deepcopy(message)

    def edit_message(
        self, *, chat_id: int, message_id: int, text: str | None, entities: list[dict[str, Any]],
        reply_markup: dict[str, Any] | None,
    ) -> dict[str, Any]:  # fmt: skip
        """editMessageText (``text`` given) or editMessageReplyMarkup (``text`` None).
        A missing ``reply_markup`` removes the inline keyboard, as at Telegram.

        Raises:
            ApiError: 400 message to edit not found / can't be edited / is not modified.
        """
        with self.cond:
            stored = self._existing(chat_id, message_id)
            if stored is None:
                raise bad_request("message to edit not found")
            if not stored.from_bot:
                raise bad_request("message can't be edited")
            old = stored.message
            new = {k: v for k, v in old.items() if k not in ("reply_markup", "edit_date")}
            if text is not None:
                new["text"] = text
                new.pop("entities", None)
                if entities:
                    new["entities"] = entities
            if reply_markup is not None:
                new["reply_markup"] = reply_markup
            same = all(new.get(k) == old.get(k) for k in ("text", "entities", "reply_markup"))
            if same:
                raise bad_request(_NOT_MODIFIED)
            new["edit_date"] = unix_time(None)
            stored.message = new
            self._changed()
            return copy.deepcopy(new)

    def delete_message(self, *, chat_id: int, message_id: int) -> None:
        """Raises ApiError: 400 message to delete not found / can't be deleted."""
        with self.cond:
            stored = self._existing(chat_id, message_id)
            if stored is None:
                raise bad_request("message to delete not found")
            if not stored.from_bot and stored.message["chat"]["type"] != "private":
                raise bad_request("message can't be deleted")  # needs admin rights in groups
            stored.deleted = True
            self._changed()

    def answer_callback(self, *, callback_query_id: str, text: str | None, show_alert: bool, url: str | None, cache_time: int) -> None:
        """Raises ApiError: 400 for an unknown or already answered query id."""
        with self.cond:
            entry = self._callbacks.get(callback_query_id)
            if entry is None or entry["answered"]:
                raise bad_request("query is too old and response timeout expired or query ID is invalid")
            entry["answered"] = True
            query = entry["query"]
            self._answers.append({
                "callback_query_id": callback_query_id, "text": text, "show_alert": show_alert,
                "url": url, "cache_time": cache_time, "data": query["data"], "user_id": query["from"]["id"],
                "chat_id": query["message"]["chat"]["id"], "message_id": query["message"]["message_id"],
                "answered_at": time.time(),
            })  # fmt: skip
            self._changed()

    def set_commands(self, key: tuple[str, str], commands: list[dict[str, str]] | None) -> None:
        with self.cond:
            if commands:
                self._commands[key] = commands
            else:
                self._commands.pop(key, None)
            self._changed()

    def get_commands(self, key: tuple[str, str]) -> list[dict[str, str]]:
        with self.cond:
            return copy.deepcopy(self._commands.get(key, []))

    # ------------------------------------------------------------------ what tests read

    def sent_messages(self, chat_id: int | None = None, *, since: int = 0, include_deleted: bool = False) -> list[dict[str, Any]]:
        """The bot's messages (current text and keyboard), oldest first."""
        with self.cond:
            return [
                copy.deepcopy(s.message)
                for s in sorted(self._messages.values(), key=lambda s: s.seq)
                if s.from_bot and s.seq > since and (include_deleted or not s.deleted)
                and (chat_id is None or s.message["chat"]["id"] == chat_id)
            ]  # fmt: skip

    def has_chat(self, chat_id: int) -> bool:
        with self.cond:
            return chat_id in self._chats

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        with self.cond:
            stored = self._messages.get((chat_id, message_id))
            return None if stored is None else {**copy.deepcopy(stored.message), "deleted": stored.deleted}

    def checkpoint(self) -> int:
        with self.cond:
            return self._seq

    def answered_callbacks(self) -> list[dict[str, Any]]:
        with self.cond:
            return copy.deepcopy(self._answers)

    def wait_until(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """Wait until ``predicate()`` (called under the lock) is truthy; return its value.

        Raises:
            TimeoutError: still falsy after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self.cond:
            while not (value := predicate()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"not seen within {timeout} s")
                self.cond.wait(min(remaining, _RECHECK_INTERVAL))  # the predicate may read state of ours or the test's
            return value
