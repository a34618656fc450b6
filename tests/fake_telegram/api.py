"""``FakeBotApi``: the control side of the fake Telegram Bot API, for tests.

A test starts one, points the real python-telegram-bot at it, plays the users
(``send_user_message``, ``press_button``) and reads what the bot did
(``sent_messages``, ``answered_callbacks``, ``requests``). Every method is thread-safe
and returns copies. The ``wait_*`` methods block the calling thread; inside an asyncio
test, where the bot runs on the same event loop, use their ``*_async`` twins.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import threading
from collections.abc import Callable
from typing import Any

from tests.fake_telegram.recording import RecordedRequest, Recorder
from tests.fake_telegram.server import TOKEN_FORMAT, BotApiHttp, HttpFront
from tests.fake_telegram.world import World

DEFAULT_TOKEN = "123456789:TEST-fake-token-for-the-kill-switch-bot"


class FakeBotApi:
    """A fake Bot API server for one bot.

    Args:
        token: the bot token, ``"<bot id>:<secret>"``; the bot's user id is its prefix.
        bot_username: what getMe answers (PTB's ``bot.username``; ``/cmd@<username>``).
        port: 0 picks a free port; ``go_down``/``come_back`` keep the port.
        first_update_id: the first update_id handed out (Telegram's do not start at 1).
        privacy_mode: in groups the bot only sees commands and replies to its messages,
            as with Telegram's default privacy mode.

    Raises:
        ValueError: a token not of Telegram's shape.
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        bot_username: str = "killswitch_test_bot",
        *,
        bot_first_name: str = "Kill Switch",
        host: str = "127.0.0.1",
        port: int = 0,
        first_update_id: int = 10_001,
        privacy_mode: bool = True,
    ) -> None:
        if not TOKEN_FORMAT.fullmatch(token):
            raise ValueError(f"token must look like Telegram's '<bot id>:<secret>', got {token!r}")
        self.token = token
        self.bot_user: dict[str, Any] = {
            "id": int(token.split(":", 1)[0]),
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": not privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }
        self._host = host
        self._world = World(bot_user=self.bot_user, first_update_id=first_update_id, privacy_mode=privacy_mode)
        self._recorder = Recorder()
        down = threading.Event()
        self._front = HttpFront(
            BotApiHttp(token=token, world=self._world, recorder=self._recorder, down=down), host, port, down
        )
        self._started = False

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> str:
        """Start listening; returns ``api_url`` (what ``TELEGRAM_API_URL`` should be)."""
        self._front.listen()
        self._started = True
        return self.api_url

    def stop(self) -> None:
        """Stop listening and drop every connection. Safe to call twice."""
        self._front.drop()
        self._started = False

    def __enter__(self) -> FakeBotApi:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def go_down(self) -> None:
        """Telegram becomes unreachable: the listening socket is closed (connections are
        refused) and live connections are reset (a waiting long poll gets no answer).
        Users can still write; their updates wait for the bot."""
        self._front.drop()

    def come_back(self) -> None:
        """Listen again on the same port."""
        self._front.listen()

    @property
    def is_down(self) -> bool:
        return self._started and not self._front.listening

    @property
    def port(self) -> int:
        return self._front.port

    @property
    def api_url(self) -> str:
        """``http://host:port``, the value for ``TELEGRAM_API_URL``."""
        return f"http://{self._host}:{self._front.port}"

    @property
    def base_url(self) -> str:
        """For PTB's ``ApplicationBuilder().base_url(...)``: PTB appends the token."""
        return f"{self.api_url}/bot"

    @property
    def base_file_url(self) -> str:
        """For PTB's ``ApplicationBuilder().base_file_url(...)`` (the fake serves no files)."""
        return f"{self.api_url}/file/bot"

    # ------------------------------------------------------------------ playing the users

    def send_user_message(
        self,
        user_id: int,
        chat_id: int,
        text: str,
        *,
        username: str | None = None,
        first_name: str | None = None,
        last_name: str | None = None,
        chat_type: str = "private",
        chat_title: str | None = None,
        date: dt.datetime | int | float | None = None,
        reply_to_message_id: int | None = None,
    ) -> dict[str, Any] | None:
        """User ``user_id`` writes ``text`` in ``chat_id`` (a private chat's id is the
        user's id; groups have negative ids). ``/commands`` get ``bot_command`` entities.
        ``date`` (aware datetime or unix time, default now) may lie in the past to make a
        stale command. Returns the queued Update, or None when Telegram would not deliver
        it: a group message that is neither a command nor a reply to the bot while
        privacy mode is on, or an update type excluded by the bot's allowed_updates.

        Raises:
            ValueError: impossible input (a private chat whose id is not the user's, a
                group with a positive id, replying to a message that does not exist).
            TypeError: a naive datetime or a date of another type.
        """
        return self._world.user_message(
            user_id=user_id, chat_id=chat_id, text=text, username=username, first_name=first_name,
            last_name=last_name, chat_type=chat_type, chat_title=chat_title, date=date,
            reply_to_message_id=reply_to_message_id,
        )  # fmt: skip

    def press_button(
        self,
        user_id: int,
        chat_id: int,
        message_id: int,
        data: str,
        *,
        username: str | None = None,
        first_name: str | None = None,
        check_keyboard: bool = True,
    ) -> dict[str, Any] | None:
        """User ``user_id`` presses the inline button with ``callback_data == data`` under
        the bot's message; returns the callback_query Update (None if allowed_updates
        excludes callback queries).

        Raises:
            ValueError: no such bot message, another user's private chat, or (with
                ``check_keyboard``) the message's current keyboard has no such button.
        """
        return self._world.press_button(
            user_id=user_id, chat_id=chat_id, message_id=message_id, data=data, username=username,
            first_name=first_name, check_keyboard=check_keyboard,
        )  # fmt: skip

    def block_bot(self, user_id: int) -> None:
        """The user blocks the bot: sendMessage to them answers 403 until they write again."""
        self._world.block(user_id)

    def set_webhook(self, url: str) -> None:
        """A webhook left set (by another deployment): getUpdates answers 409 until the
        bot calls deleteWebhook, which PTB's start_polling does."""
        self._world.updates.set_webhook(url)

    # ------------------------------------------------------------------ what the bot did

    def sent_messages(self, chat_id: int | None = None, *, since: int = 0, include_deleted: bool = False) -> list[dict[str, Any]]:
        """The bot's messages as the users now see them (text after parse_mode,
        ``reply_markup`` with inline keyboards, ``edit_date`` once edited), oldest first;
        ``since`` is a ``checkpoint()`` value."""
        return self._world.sent_messages(chat_id, since=since, include_deleted=include_deleted)

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        """Any message (user's or bot's) in its current state, with a ``deleted`` flag."""
        return self._world.message(chat_id, message_id)

    def checkpoint(self) -> int:
        """A marker: ``since=checkpoint()`` selects messages sent after this call."""
        return self._world.checkpoint()

    def wait_for_message(
        self,
        chat_id: int | None = None,
        *,
        contains: str | None = None,
        predicate: Callable[[dict[str, Any]], bool] | None = None,
        since: int = 0,
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        """The first bot message (current state) in ``chat_id`` that contains ``contains``
        and satisfies ``predicate``, waiting up to ``timeout`` seconds.

        Raises:
            AssertionError: none within ``timeout``; lists what the bot did send.
        """

        def found() -> dict[str, Any] | None:
            for message in self._world.sent_messages(chat_id, since=since):
                if (contains is None or contains in message.get("text", "")) and (
                    predicate is None or predicate(message)
                ):
                    return message
            return None

        try:
            return self._world.wait_until(found, timeout)
        except TimeoutError:
            texts = [(m["chat"]["id"], m.get("text")) for m in self._world.sent_messages(since=since)]
            raise AssertionError(
                f"no bot message in chat {chat_id} containing {contains!r} within {timeout} s; "
                f"the bot sent (chat, text): {texts}"
            ) from None

    async def wait_for_message_async(self, chat_id: int | None = None, **kwargs: Any) -> dict[str, Any]:
        """``wait_for_message`` without blocking the event loop the bot runs on."""
        return await asyncio.to_thread(functools.partial(self.wait_for_message, chat_id, **kwargs))

    def answered_callbacks(self) -> list[dict[str, Any]]:
        """Every answerCallbackQuery: ``callback_query_id``, ``text``, ``show_alert``,
        ``url``, ``cache_time`` and the pressed ``data``, ``user_id``, ``chat_id``,
        ``message_id``."""
        return self._world.answered_callbacks()

    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates queued and not yet confirmed by a getUpdates offset."""
        return self._world.updates.pending()

    def commands(self, scope: dict[str, Any] | None = None, language_code: str = "") -> list[dict[str, str]]:
        """The command list set by setMyCommands for ``scope`` (default scope) and language."""
        return self._world.get_commands((json.dumps(scope or {"type": "default"}, sort_keys=True), language_code))

    def wait_until(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        """Wait (bounded) until ``predicate()`` is truthy, re-checking whenever the
        Telegram side changes and every 20 ms; returns its value. Raises TimeoutError."""
        return self._world.wait_until(predicate, timeout)

    async def wait_until_async(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        return await asyncio.to_thread(self._world.wait_until, predicate, timeout)

    # ------------------------------------------------------------------ HTTP traffic and faults

    def requests(self, method: str | None = None) -> list[RecordedRequest]:
        """Every request received (or only ``method``'s, any case), oldest first."""
        return self._recorder.requests(method)

    def wait_for_request(
        self,
        method: str,
        predicate: Callable[[RecordedRequest], bool] | None = None,
        *,
        after: int = 0,
        timeout: float = 5.0,
    ) -> RecordedRequest:
        """The first request of ``method`` (among those after the first ``after`` of
        that method) that satisfies ``predicate``.

        Raises:
            AssertionError: none within ``timeout``.
        """

        def found() -> RecordedRequest | None:
            candidates = self._recorder.requests(method)[after:]
            return next((r for r in candidates if predicate is None or predicate(r)), None)

        try:
            return self._recorder.wait_for(found, timeout)
        except TimeoutError:
            seen = [(r.method, r.params, r.status) for r in self._recorder.requests(method)]
            raise AssertionError(f"no matching {method} request within {timeout} s; seen: {seen}") from None

    async def wait_for_request_async(self, method: str, predicate: Callable[[RecordedRequest], bool] | None = None, **kwargs: Any) -> RecordedRequest:
        return await asyncio.to_thread(functools.partial(self.wait_for_request, method, predicate, **kwargs))

    def fail_next(
        self,
        method: str,
        status: int,
        description: str | None = None,
        *,
        retry_after: int | None = None,
        times: int = 1,
        html: bool | None = None,
    ) -> None:
        """The next ``times`` calls of ``method`` (``"*"``: any method) fail with
        ``status`` instead of being processed. Descriptions default to Telegram's: 409
        "Conflict: terminated by other getUpdates request; ...", 429 "Too Many Requests:
        retry after N" with ``parameters.retry_after``, 500 "Internal Server Error".
        502/503/504 answer nginx's HTML page, as Telegram's front does (``html=False``
        for a JSON envelope instead).

        Raises:
            ValueError: a non-error status, a 429 without retry_after, times < 1.
        """
        self._recorder.add_fault(method, status, description, retry_after=retry_after, times=times, html=html)

    def slow_next(self, method: str, seconds: float, *, times: int = 1) -> None:
        """The next ``times`` calls of ``method`` take effect at once but are answered
        ``seconds`` later: past PTB's read timeout the bot sees TimedOut although the
        message was sent."""
        self._recorder.add_delay(method, seconds, times)

    def clear_faults(self) -> None:
        self._recorder.clear_faults()
