"""A minimal bot for the fake's own tests (the product's bot lives elsewhere): it answers
/status, asks for confirmation on /kill with an inline keyboard, and remembers what it
handled and which errors reached its error handler."""

from __future__ import annotations

import asyncio
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    Application,
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
)

CONFIRM = "kill:confirm"
CANCEL = "kill:cancel"


class SampleBot:
    def __init__(self) -> None:
        self.seen: list[Update] = []
        self.errors: list[BaseException] = []
        self.hold = asyncio.Event()  # /slow waits for it
        self.hold.set()

    def install(self, app: Application) -> Application:
        for handler in self.handlers():
            app.add_handler(handler)
        app.add_error_handler(self.on_error)
        return app

    def handlers(self) -> list[BaseHandler[Any, Any, Any]]:
        return [
            CommandHandler("status", self.status),
            CommandHandler("slow", self.slow),
            CommandHandler("kill", self.kill),
            CallbackQueryHandler(self.button),
        ]

    async def status(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self.seen.append(update)
        await update.effective_message.reply_text("Trading is running")  # type: ignore[union-attr]

    async def slow(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self.seen.append(update)
        await self.hold.wait()
        await update.effective_message.reply_text("done")  # type: ignore[union-attr]

    async def kill(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self.seen.append(update)
        keyboard = InlineKeyboardMarkup(
            [[InlineKeyboardButton("Confirm kill", callback_data=CONFIRM), InlineKeyboardButton("Cancel", callback_data=CANCEL)]]
        )
        await update.effective_message.reply_text(  # type: ignore[union-attr]
            "<b>Kill all trading?</b> Positions will be closed.", parse_mode="HTML", reply_markup=keyboard
        )

    async def button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        self.seen.append(update)
        query = update.callback_query
        assert query is not None
        confirmed = query.data == CONFIRM
        await query.answer("Kill switch engaged" if confirmed else "Cancelled")
        by = query.from_user.username or query.from_user.first_name
        await query.edit_message_text(f"KILLED by {by}" if confirmed else "Kill cancelled")

    async def on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        self.errors.append(context.error)  # type: ignore[arg-type]
