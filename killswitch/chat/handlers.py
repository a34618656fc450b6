"""The commands that act at once or only read: /status, /history, /runs, /clients,
/help, /start, and /pause and /halt (the seed: "don't hesitate").

Each handler is thin: the gate (who, where, how old), then one service call or one
read, then the reply. No rule lives here; refusals are the services' own words.
/kill and /resume, which need a typed confirmation, are in killswitch.chat.confirm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from telegram import Update
from telegram.ext import CommandHandler, ContextTypes, MessageHandler, filters

from killswitch import domain as L
from killswitch import selectors, services
from killswitch.models import Source
from killswitch.services.authorization import ACTIVATE, DEACTIVATE, VIEW

from . import hooks, texts
from .gate import Attempt, may, sender_of, words_of
from .parsing import attempt_of, history_count, scope_and_reason

if TYPE_CHECKING:
    from .bot import KillSwitchBot

RUNS_SHOWN = 5


def install(bot: KillSwitchBot) -> None:
    commands = Commands(bot)
    for name, callback in (("status", commands.status), ("history", commands.history), ("runs", commands.runs),
                           ("clients", commands.clients), ("help", commands.help), ("start", commands.help),
                           ("pause", commands.pause), ("halt", commands.halt)):
        bot.app.add_handler(CommandHandler(name, callback))


def install_fallback(bot: KillSwitchBot) -> None:
    """Last: a command nobody handles (answered in private chats only; in a group it may
    be meant for another bot)."""
    commands = Commands(bot)
    bot.app.add_handler(MessageHandler(filters.COMMAND, commands.unknown))


class Commands:
    def __init__(self, bot: KillSwitchBot) -> None:
        self.bot = bot

    async def _reader(self, update: Update, attempted: str):
        sender = await sender_of(self.bot, update, Attempt(attempted))
        if sender is None or not await may(self.bot, update, sender, VIEW, Attempt(attempted)):
            return None
        return sender

    async def status(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if await self._reader(update, "/status"):
            await self.bot.reply(update, await self.bot.db(_status_text))

    async def history(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not await self._reader(update, "/history"):
            return
        try:
            count = history_count(words_of(update)[1])
        except ValueError as exc:
            await self.bot.reply(update, str(exc))
            return
        events = await self.bot.db(selectors.history, limit=count)
        await self.bot.reply(update, texts.history(events))

    async def runs(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if await self._reader(update, "/runs"):
            await self.bot.reply(update, texts.runs(await self.bot.db(hooks.recent_runs, RUNS_SHOWN)))

    async def clients(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if await self._reader(update, "/clients"):
            await self.bot.reply(update, await self.bot.db(_clients_text))

    async def help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        sender = await sender_of(self.bot, update, Attempt(words_of(update)[0] or "/help"))
        if sender is None:
            return
        grants = await self.bot.db(_grants, sender.user)
        role = ("risk officer" if DEACTIVATE in grants else "trader" if ACTIVATE in grants
                else "viewer" if VIEW in grants else "no role")
        mine = f"You are {sender.name} ({role}): you may " + (
            "read, stop and resume trading." if DEACTIVATE in grants else
            "read and stop trading; a risk officer resumes." if ACTIVATE in grants else
            "read." if VIEW in grants else "do nothing yet; an administrator gives you a role.")
        text = texts.HELP.format(max_age=texts.duration(self.bot.config.max_command_age_seconds))
        await self.bot.reply(update, f"{mine}\n\n{text}")

    async def pause(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._escalate(update, L.PAUSE)

    async def halt(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await self._escalate(update, L.HALT)

    async def _escalate(self, update: Update, level: str) -> None:
        """Act at once: one call to services.activate, its answer with the event number."""
        command, rest = words_of(update)
        args = scope_and_reason(rest)
        attempted, _ = attempt_of(command)
        sender = await sender_of(self.bot, update, Attempt(attempted, args.scope, level, args.reason))
        if sender is None:
            return
        text, _ = await self.bot.act(
            sender.user,
            lambda: services.activate(scope=args.scope, level=level, reason=args.reason, actor=sender.user,
                                      source=Source.TELEGRAM),
            texts.transition, texts.refusal)
        await self.bot.reply(update, text)

    async def unknown(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat = update.effective_chat
        if chat is None or chat.type != "private":
            return
        command = words_of(update)[0]
        if await sender_of(self.bot, update, Attempt(command)):
            await self.bot.reply(update, f"{command[:40]} is not a command of this bot; /help lists them.")


def _grants(user) -> set[str]:
    actor = services.Actor.of(user)
    return {what for what in (VIEW, ACTIVATE, DEACTIVATE) if actor.may(what)}


def _status_text() -> str:
    selectors.ingest_acknowledgements_safely()
    try:
        clients = selectors.client_statuses()
    except Exception:  # the switch's own state must still be shown
        clients = None
    return texts.status(selectors.state_version(), selectors.scope_states(), clients)


def _clients_text() -> str:
    selectors.ingest_acknowledgements_safely()
    return texts.clients(selectors.state_version(), selectors.client_statuses())
