"""Who is writing, and whether the bot acts for them: the checks every update passes
before its command runs, each refusal told to the sender and audited.

1. The chat: `telegram.allowed_chat_ids` (private chats only when unset). In any
   other chat the bot says nothing; a command there is still audited.
2. The person: an unlinked Telegram account gets a short refusal naming its id, and a
   `refused` event with actor `telegram:<id>`.
3. The age: a message older than `max_command_age_seconds` when it reaches the bot
   (queued while the bot or Telegram was down) is not executed.
4. The role, for reads and for the kill/resume prompts: the authorization module's
   rule, in its words (the services check again on every write).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.utils import timezone
from telegram import Update

from killswitch import services
from killswitch.models import Source
from killswitch.services.authorization import missing_role_message

from . import texts
from .links import linked_user
from .parsing import command_and_rest

if TYPE_CHECKING:
    from .bot import KillSwitchBot

logger = logging.getLogger("killswitch.chat")


@dataclass(frozen=True)
class Sender:
    """The linked person behind an update."""

    user: Any
    telegram_id: int
    chat_id: int

    @property
    def name(self) -> str:
        return self.user.get_username()


@dataclass(frozen=True)
class Attempt:
    """What an update tries, as the audit log records a refusal of it."""

    attempted: str
    scope: str = "global"
    requested_level: str = ""
    reason: str = ""


def words_of(update: Update) -> tuple[str, str]:
    """The command and the rest of the update's message text ('' for none)."""
    message = update.effective_message
    return command_and_rest(message.text if message and message.text else "")


async def refuse(bot: KillSwitchBot, update: Update | None, actor: Any, attempt: Attempt,
                 error: services.KillSwitchError, *, tell: bool = True) -> services.KillSwitchError:
    """Audit a refusal decided here and, if `tell`, answer it with its event number."""
    error = await bot.db(services.record_refusal, attempted=attempt.attempted, scope=attempt.scope, actor=actor,
                         source=Source.TELEGRAM, error=error, reason=attempt.reason,
                         requested_level=attempt.requested_level)
    if tell and update is not None:
        await bot.reply(update, texts.refusal(error))
    return error


async def sender_of(bot: KillSwitchBot, update: Update, attempt: Attempt, *, check_age: bool = True) -> Sender | None:
    """The linked person behind `update`, or None once the update was refused (told
    and audited) or ignored (a chat the bot does not answer in)."""
    chat, user = update.effective_chat, update.effective_user
    if chat is None or user is None or user.is_bot:
        return None
    message = update.effective_message if update.callback_query is None else None
    is_command = bool(message and (message.text or "").startswith("/"))
    if not bot.config.chat_allowed(chat.id, chat.type):
        if is_command or update.callback_query is not None:
            linked = await bot.db(linked_user, user.id)
            await refuse(bot, None, linked or f"telegram:{user.id}", attempt, services.PermissionRefused(
                f"The bot does not answer in chat {chat.id} ({chat.type}); telegram.allowed_chat_ids in "
                "risk_limits.yaml lists the chats it answers in (private chats only when it is not set)."),
                tell=False)
        return None
    linked = await bot.db(linked_user, user.id)
    if linked is None:
        await refuse(bot, update, f"telegram:{user.id}", attempt, services.PermissionRefused(
            f"Telegram user {user.id} is not linked to a kill switch user, so the bot does nothing for them. "
            f"An administrator links you with: manage.py killswitch telegram link <username> {user.id}"))
        return None
    if check_age and message is not None and message.date is not None:
        age = (timezone.now() - message.date).total_seconds()
        limit = bot.config.max_command_age_seconds
        if age > limit:
            await refuse(bot, update, linked, attempt, services.InvalidRequest(
                f"This was sent at {texts.when(message.date)} and reached the bot {texts.duration(age)} later "
                f"(the bot or Telegram was unreachable meanwhile). Commands older than {limit:g} s are not "
                "executed; send it again if it still holds."))
            return None
    return Sender(linked, user.id, chat.id)


async def may(bot: KillSwitchBot, update: Update, sender: Sender, what: str, attempt: Attempt) -> bool:
    """Whether `sender`'s role grants `what` (view, activate, deactivate); if not, the
    refusal is told and audited in the authorization module's words."""
    if await bot.db(services.Actor.of(sender.user).may, what):
        return True
    await refuse(bot, update, sender.user, attempt,
                 services.PermissionRefused(missing_role_message(sender.name, what)))
    return False
