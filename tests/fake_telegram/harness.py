"""Running the real python-telegram-bot against a :class:`FakeBotApi` in asyncio tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from telegram.error import TelegramError
from telegram.ext import Application, ApplicationBuilder, BaseHandler

from tests.fake_telegram.api import FakeBotApi


def application(api: FakeBotApi, configure: Callable[[ApplicationBuilder], ApplicationBuilder] | None = None) -> Application:
    """A PTB Application talking to ``api``: ``base_url`` is ``{TELEGRAM_API_URL}/bot``
    (PTB appends the token), ``base_file_url`` ``{TELEGRAM_API_URL}/file/bot``."""
    builder = ApplicationBuilder().token(api.token).base_url(api.base_url).base_file_url(api.base_file_url)
    return (configure(builder) if configure else builder).build()


@contextlib.asynccontextmanager
async def polling(
    api: FakeBotApi,
    *handlers: BaseHandler[Any, Any, Any],
    poll_timeout: int = 1,
    drop_pending_updates: bool | None = None,
    allowed_updates: Sequence[str] | None = None,
    bootstrap_retries: int = 0,
    error_callback: Callable[[TelegramError], None] | None = None,
    app: Application | None = None,
) -> AsyncIterator[Application]:
    """Initialize and start an Application with ``handlers`` and long-poll ``api`` (what
    ``run_polling`` does, without owning the event loop); stops and shuts it down on exit,
    which sends PTB's final getUpdates that confirms the updates it fetched."""
    app = app or application(api)
    for handler in handlers:
        app.add_handler(handler)
    await app.initialize()
    try:
        await app.start()
        await app.updater.start_polling(  # type: ignore[union-attr]
            timeout=poll_timeout,
            drop_pending_updates=drop_pending_updates,
            allowed_updates=allowed_updates,
            bootstrap_retries=bootstrap_retries,
            error_callback=error_callback,
        )
        yield app
    finally:
        try:
            if app.updater is not None and app.updater.running:
                await app.updater.stop()  # re-raises what ended the polling task, e.g. InvalidToken
        finally:
            try:
                if app.running:
                    await app.stop()
            finally:
                await app.shutdown()
