"""/kill and /resume: first what will happen, then the act on the same person's typed
KILL / RESUME (or the confirm button) within `confirm_timeout_seconds`.

The prompt shows the scope, the level now, the positions a kill would close (or what
a resume leaves open) from the brokers' read hook, and the cooldown left. A wrong
word, the timeout, or anyone else confirming ends in a refusal that is audited; the
confirmation itself is one call to services.activate / services.deactivate, which
applies every rule (roles, cooldown with the seed's message, a second approver when
the policy asks for one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from telegram import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.error import TelegramError
from telegram.ext import CallbackQueryHandler, CommandHandler, ContextTypes, MessageHandler, filters

from killswitch import domain as L
from killswitch import selectors, services
from killswitch.models import ConfirmationState, Source, TelegramConfirmation
from killswitch.models.telegram import KILL_WORD, RESUME_WORD
from killswitch.policy import kill_switch_policy
from killswitch.services.authorization import ACTIVATE, DEACTIVATE
from killswitch.services.refusals import check_reason, parse_scope

from . import confirmations, hooks, texts
from .gate import Attempt, Sender, may, refuse, sender_of, words_of
from .parsing import scope_and_reason

if TYPE_CHECKING:
    from .bot import KillSwitchBot

CONFIRM, CANCEL = "ks:c:", "ks:x:"
WORDS = (KILL_WORD, RESUME_WORD)
ACTIONS = {  # command -> (action, level, permission the prompt needs)
    "kill": ("activate", L.KILL, ACTIVATE),
    "resume": ("deactivate", L.RUNNING, DEACTIVATE),
}


def install(bot: KillSwitchBot) -> None:
    handlers = Confirmations(bot)
    bot.app.add_handler(CommandHandler("kill", handlers.kill))
    bot.app.add_handler(CommandHandler("resume", handlers.resume))
    bot.app.add_handler(CallbackQueryHandler(handlers.button, pattern=r"^ks:[cx]:"))
    bot.app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, handlers.typed))


def _header(row: TelegramConfirmation) -> str:
    return f"{row.word} {row.scope}, asked by {row.user.get_username()}"


def _verb(row: TelegramConfirmation) -> str:
    return "kill" if row.action == "activate" else "resume"


async def show_expired(bot: KillSwitchBot, row: TelegramConfirmation) -> None:
    """The sweeper expired `row` (audited): say so on its prompt and remove the buttons."""
    await bot.edit(row.chat_id, row.prompt_message_id,
                   f"{_header(row)}: expired ({texts.seq_tag(row.event_seq)}). {row.detail}")


def _preview(action: str, scope_text: str, reason: str) -> dict[str, Any]:
    """What the prompt shows. Raises InvalidRequest for a scope or reason the service
    would refuse, so nobody is asked to confirm what cannot be done."""
    ref = parse_scope(scope_text)
    reason = check_reason(reason, required=action == "activate")
    state = next((s for s in selectors.scope_states() if s.scope == str(ref)), None)
    return {
        "scope": str(ref), "reason": reason, "level_now": state.level if state else L.RUNNING,
        "cooldown_left": state.cooldown_remaining_seconds if state else 0.0,
        "cooldown_until": state.cooldown_until if state else None,
        "lines": hooks.kill_would_close(ref) if action == "activate" else hooks.still_open(ref),
    }


class Confirmations:
    def __init__(self, bot: KillSwitchBot) -> None:
        self.bot = bot

    async def kill(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._request(update, "kill")

    async def resume(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._request(update, "resume")

    async def _request(self, update: Update, command: str) -> None:
        action, level, permission = ACTIONS[command]
        args = scope_and_reason(words_of(update)[1])
        attempt = Attempt(action, args.scope, level, args.reason)
        sender = await sender_of(self.bot, update, attempt)
        if sender is None or not await may(self.bot, update, sender, permission, attempt):
            return
        try:
            preview = await self.bot.db(_preview, action, args.scope, args.reason)
        except services.InvalidRequest as error:
            await refuse(self.bot, update, sender.user, attempt, error)
            return
        timeout = self.bot.config.confirm_timeout_seconds
        message = update.effective_message
        row, superseded = await self.bot.db(
            confirmations.open_request, action=action, level=level, scope=preview["scope"],
            reason=preview["reason"], user=sender.user, telegram_user_id=sender.telegram_id, chat_id=sender.chat_id,
            request_message_id=message.message_id if message else None, timeout_seconds=timeout)
        for old in superseded:
            await self.bot.edit(old.chat_id, old.prompt_message_id,
                                f"{_header(old)}: replaced by a newer request. Nothing was done for this one.")
        common = {"scope": preview["scope"], "level_now": preview["level_now"], "reason": preview["reason"],
                  "cooldown_left": preview["cooldown_left"], "requester": sender.name, "timeout": timeout}
        if action == "activate":
            text = texts.kill_prompt(**common, cooldown_minutes=kill_switch_policy().cooldown_minutes,
                                     closes=preview["lines"])
        else:
            text = texts.resume_prompt(**common, cooldown_until=preview["cooldown_until"],
                                       still_open=preview["lines"])
        label = "Confirm kill" if action == "activate" else "Confirm resume"
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton(label, callback_data=CONFIRM + row.token),
                                          InlineKeyboardButton("Cancel", callback_data=CANCEL + row.token)]])
        sent = await self.bot.reply(update, text, markup=keyboard)
        if sent is None:
            await self.bot.db(confirmations.settle, row.pk, state=ConfirmationState.CANCELLED,
                              detail="the prompt could not be sent")
        else:
            await self.bot.db(confirmations.set_prompt, row.pk, sent.message_id)

    async def typed(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A text message: the word that answers a prompt (a reply to it or, in a
        private chat, the sender's latest request), or chatter."""
        message, chat, user = update.effective_message, update.effective_chat, update.effective_user
        if message is None or chat is None or user is None:
            return
        text = (message.text or "").strip()
        row = None
        replied = message.reply_to_message
        if replied is not None and replied.from_user is not None and replied.from_user.id == self.bot.api.bot_id:
            row = await self.bot.db(confirmations.for_prompt, chat.id, replied.message_id)
        if row is None and chat.type == "private":
            # In a group only a reply to the prompt counts: with privacy mode off the bot
            # sees all chatter, which must not end anybody's request.
            row = await self.bot.db(confirmations.latest, chat.id, user.id)
            if row is not None and row.state != ConfirmationState.PENDING and text.upper() not in WORDS:
                row = None  # chatter after a request ended
        if row is None:
            await self._nothing_waiting(update, text)
            return
        attempt = Attempt(row.action, row.scope, row.level, row.reason)
        sender = await sender_of(self.bot, update, attempt)
        if sender is None:
            return
        if sender.telegram_id != row.telegram_user_id:
            await self._not_yours(update, row, sender, attempt)
            return
        if row.state != ConfirmationState.PENDING:
            await refuse(self.bot, update, sender.user, attempt, services.InvalidRequest(
                f"Nothing was done: this {_verb(row)} of {row.scope} was already {row.state} "
                f"({row.detail or 'no detail'}). Send /{_verb(row)} again."))
            return
        if text != row.word:
            error = services.InvalidRequest(
                f"Not confirmed: you typed “{text[:40]}”; the {_verb(row)} needs {row.word} (uppercase, exactly). "
                f"Nothing was done; send /{_verb(row)} again.", field="confirm")
            if await self.bot.db(confirmations.settle, row.pk, state=ConfirmationState.REFUSED, detail=error.message):
                error = await refuse(self.bot, update, sender.user, attempt, error)
                await self.bot.edit(row.chat_id, row.prompt_message_id,
                                    f"{_header(row)}: not confirmed, wrong word ({texts.seq_tag(error.seq)}). "
                                    "Nothing was done.")
            return
        await self._confirm(update, row, sender)

    async def _nothing_waiting(self, update: Update, text: str) -> None:
        chat = update.effective_chat
        word = text.upper()
        if word in WORDS:
            action, level = ("activate", L.KILL) if word == KILL_WORD else ("deactivate", L.RUNNING)
            attempt = Attempt(action, L.GLOBAL, level)
            sender = await sender_of(self.bot, update, attempt)
            if sender is not None:
                verb = "kill" if word == KILL_WORD else "resume"
                await refuse(self.bot, update, sender.user, attempt, services.InvalidRequest(
                    f"No {verb} is waiting for your confirmation here, so nothing was done: send "
                    f"/{verb} [scope] {'reason' if verb == 'kill' else '[reason]'} first, then {word}."))
        elif chat is not None and chat.type == "private" and await sender_of(self.bot, update, Attempt("message")):
            await self.bot.reply(update, "That is not a command; /help lists them.")

    async def _not_yours(self, update: Update | None, row: TelegramConfirmation, sender: Sender,
                         attempt: Attempt, query: CallbackQuery | None = None) -> None:
        error = services.PermissionRefused(
            f"Only {row.user.get_username()}, who asked for this {_verb(row)}, can confirm it; "
            f"{sender.name} cannot. Send your own /{_verb(row)} to ask for one.")
        error = await refuse(self.bot, update if query is None else None, sender.user, attempt, error)
        if query is not None:
            await _answer(query, texts.refusal(error), alert=True)

    async def button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        assert query is not None and query.data is not None  # the handler's pattern
        row = await self.bot.db(confirmations.by_token, query.data[len(CONFIRM):])
        if row is None:
            await _answer(query, "This request is unknown to the kill switch.", alert=True)
            return
        attempt = Attempt(row.action, row.scope, row.level, row.reason)
        sender = await sender_of(self.bot, update, attempt, check_age=False)
        if sender is None:
            await _answer(query, "Refused: see the message below.")
            return
        if sender.telegram_id != row.telegram_user_id:
            await self._not_yours(update, row, sender, attempt, query=query)
            return
        if query.data.startswith(CANCEL):
            if await self.bot.db(confirmations.settle, row.pk, state=ConfirmationState.CANCELLED,
                                 detail=f"cancelled by {sender.name}"):
                await _answer(query, "Cancelled: nothing was done.")
                await self.bot.edit(row.chat_id, row.prompt_message_id,
                                    f"{_header(row)}: cancelled by {sender.name}. Nothing was done.")
            else:
                await _answer(query, f"Already {row.state}.")
            return
        text = await self._confirm(update, row, sender)
        await _answer(query, text[:200])

    async def _confirm(self, update: Update, row: TelegramConfirmation, sender: Sender) -> str:
        """Claim the request once and make its one service call; answer with the result."""
        verdict, row = await self.bot.db(confirmations.claim, row.pk)
        if verdict == confirmations.EXPIRED:
            text = f"Refused {texts.seq_tag(row.event_seq)}: {row.detail}"
            await show_expired(self.bot, row)
        elif verdict != confirmations.OK:
            text = f"Nothing more was done: this {_verb(row)} was already {row.state}."
        else:
            if row.action == "activate":
                def call() -> services.TransitionResult:
                    return services.activate(scope=row.scope, level=row.level, reason=row.reason,
                                             actor=sender.user, source=Source.TELEGRAM)
            else:
                def call() -> services.TransitionResult:
                    return services.deactivate(scope=row.scope, actor=sender.user, source=Source.TELEGRAM,
                                               reason=row.reason)
            text, seq = await self.bot.act(sender.user, call, texts.transition, texts.refusal)
            await self.bot.db(confirmations.settle, row.pk, state=ConfirmationState.CONFIRMED, detail=text,
                              event_seq=seq)
            await self.bot.edit(row.chat_id, row.prompt_message_id, f"{_header(row)}: confirmed. {text}")
        await self.bot.reply(update, text)
        return text


async def _answer(query: CallbackQuery, text: str, *, alert: bool = False) -> None:
    try:
        await query.answer(text[:200], show_alert=alert)
    except TelegramError:
        pass  # an old or already answered query: the chat message says the same
