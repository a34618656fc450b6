"""A fake Telegram Bot API server, for driving the real python-telegram-bot in tests.

Start one, point PTB at it, play the users, read what the bot did::

    with FakeBotApi() as api:
        app = (
            ApplicationBuilder().token(api.token)
            .base_url(api.base_url).base_file_url(api.base_file_url).build()
        )
        ...
        api.send_user_message(42, 42, "/status")
        reply = await api.wait_for_message_async(42, contains="running")

``api.api_url`` is the value for ``TELEGRAM_API_URL``; methods are served at
``{api_url}/bot{token}/{method}``. ``python -m tests.fake_telegram --port N`` runs it
as a process. See :class:`FakeBotApi` for the control API and ``README.md`` beside this
file for what is faithful to Telegram and what is not.
"""

from __future__ import annotations

from tests.fake_telegram.api import DEFAULT_TOKEN, FakeBotApi
from tests.fake_telegram.errors import CONFLICT_OTHER_POLLER, CONFLICT_WEBHOOK
from tests.fake_telegram.recording import RecordedRequest

__all__ = ["CONFLICT_OTHER_POLLER", "CONFLICT_WEBHOOK", "DEFAULT_TOKEN", "FakeBotApi", "RecordedRequest"]
