"""The bot process: python-telegram-bot's Application for routing updates to the
handlers, fed by our own poller (killswitch.chat.poller), with every update recorded
in the ledger before it is acted on.

`KillSwitchBot.run(stop)`:
1. getMe (a refused token stops the process here, naming the variable), deleteWebhook,
   setMyCommands;
2. tells the sender of every command a crash interrupted what became of it;
3. polls while holding the poller lease; a sweeper expires unconfirmed kills/resumes.

All database work runs on one thread (`DbLane`): Django's ORM is synchronous, and the
event loop must keep answering Telegram while a transition commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone
from telegram import BotCommand, InlineKeyboardMarkup, Message, ReplyParameters, Update
from telegram.error import (
    BadRequest,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.ext import Application, ApplicationBuilder, ContextTypes

from killswitch import services
from killswitch.models import Source, TelegramUpdate, UpdateState
from killswitch.notifications.telegram import BotApi

from . import confirmations, ledger
from .config import TelegramConfig
from .lease import PollerLease
from .parsing import attempt_of, command_and_rest, scope_and_reason
from .poller import Poller, retry_seconds, sleep_unless
from .texts import clip, seq_tag

logger = logging.getLogger("killswitch.chat")
T = TypeVar("T")

# The ledger row of the update being handled (handlers run inside `handle`'s task).
CURRENT: contextvars.ContextVar[TelegramUpdate | None] = contextvars.ContextVar("telegram_update", default=None)
SEND_TRIES = 3
SWEEP_SECONDS = 1.0
PRUNE_EVERY_SECONDS = 3600.0
CONFLICT_ALERT_EVERY = timedelta(minutes=10)
COMMANDS = [("status", "every scope not running, cooldowns, late processes"), ("pause", "[scope] reason: pause now"),
            ("halt", "[scope] reason: halt now"), ("kill", "[scope] reason: kill, after typing KILL"),
            ("resume", "[scope] [reason]: resume, after typing RESUME"), ("history", "[n] last audit events"),
            ("runs", "latest broker runs"), ("clients", "connected trading processes"), ("help", "commands and roles")]


class BotConfigError(Exception):
    """The bot cannot start: Telegram refused the token, or the Bot API cannot be reached."""


class DbLane:
    """One thread for every database call of the bot (one connection, re-opened when broken)."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="telegram-db")

    async def __call__(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(self._run, fn, args, kwargs))

    @staticmethod
    def _run(fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        except DatabaseError:
            connection.close()  # a broken connection is re-opened by the next call
            raise

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._pool.submit(connection.close).result(timeout=10)
        self._pool.shutdown(wait=True)


class KillSwitchBot:
    def __init__(self, api: BotApi, config: TelegramConfig) -> None:
        self.api, self.config = api, config
        self.db = DbLane()
        self.app: Application = (ApplicationBuilder().token(api.token).base_url(api.base_url)
                                 .base_file_url(api.base_file_url).updater(None).build())
        from .confirm import install as install_confirmations
        from .handlers import install as install_commands
        from .handlers import install_fallback

        install_commands(self)
        install_confirmations(self)
        install_fallback(self)  # after every command: it takes any command left
        self.app.add_error_handler(self._on_error)
        self.lease = PollerLease(api.bot_id, seconds=config.lease_seconds)
        self.poller = Poller(self.app.bot, self.handle, lease=self.lease, lease_seconds=config.lease_seconds,
                             timeout=config.poll_timeout_seconds, on_conflict=self._on_conflict,
                             on_token_refused=self._on_token_refused)
        self._last_conflict_alert: datetime | None = None
        self._recovered = False

    # --- lifecycle ---------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set. Raises BotConfigError when Telegram refuses the token."""
        try:
            await self._start()
            sweeper = asyncio.create_task(self._sweep(stop))
            try:
                await self.poller.run(stop)
            finally:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
        finally:
            await asyncio.to_thread(self.lease.release)
            with contextlib.suppress(Exception):
                await self.app.shutdown()
            self.db.close()

    async def _start(self) -> None:
        try:
            await self.app.initialize()  # getMe: the username that /cmd@name must match
        except InvalidToken as exc:
            raise BotConfigError(f"Telegram refused the bot token ({exc.message}); check the token "
                                 "BotFather gave, in TELEGRAM_BOT_TOKEN") from None
        except TelegramError as exc:
            raise BotConfigError(f"the Bot API at {self.api.url} cannot be reached: {exc.message}") from None
        logger.info("telegram bot @%s (%s) starting on %s", self.app.bot.username, self.api.bot_id, self.api.url)
        for call in (partial(self.app.bot.delete_webhook, drop_pending_updates=False),
                     partial(self.app.bot.set_my_commands, [BotCommand(n, d) for n, d in COMMANDS])):
            try:
                await call()
            except TelegramError as exc:  # polling will tell if it matters (409 while a webhook is set)
                logger.warning("telegram start-up call failed: %s", exc.message)
        await self.recover()

    async def recover(self) -> None:
        """Tell the sender of each command a crash left unfinished what became of it.
        With the database down this waits for it (the sweeper tries again)."""
        try:
            for row in await self.db(ledger.unfinished, self.api.bot_id):
                await self.tell_interrupted(row)
        except DatabaseError:
            logger.error("database unavailable: interrupted telegram commands are reported once it is back")
            return
        self._recovered = True

    async def _sweep(self, stop: asyncio.Event) -> None:
        """Expire unconfirmed kills and resumes (audited) and edit their prompts."""
        from .confirm import show_expired

        pruned_at = failed_at = 0.0
        while not stop.is_set():
            try:
                if not self._recovered:
                    await self.recover()
                for row in await self.db(confirmations.expire_due):
                    await show_expired(self, row)
                if time.monotonic() - pruned_at > PRUNE_EVERY_SECONDS:
                    await self.db(ledger.prune)
                    pruned_at = time.monotonic()
            except Exception as exc:
                if time.monotonic() - failed_at > 60:  # once a minute while it lasts, not every second
                    logger.error("telegram confirmation sweep failed: %r", exc, exc_info=not isinstance(exc, DatabaseError))
                    failed_at = time.monotonic()
            await sleep_unless(stop, SWEEP_SECONDS)

    # --- one update -------------------------------------------------------------------

    async def handle(self, update: Update) -> bool:
        """Record, dispatch, finish. False only when it could be neither recorded nor
        refused (left for Telegram to redeliver)."""
        incoming = _incoming(self.api.bot_id, update)
        try:
            verdict, row = await self.db(ledger.admit, incoming)
        except DatabaseError:
            return await self._database_down(update, incoming)
        if verdict == ledger.DUPLICATE:
            logger.info("telegram update %s was handled already; skipped", update.update_id)
            return True
        if verdict == ledger.UNFINISHED:
            await self.tell_interrupted(row)
            return True
        token = CURRENT.set(row)
        try:
            await self.app.process_update(update)
        finally:
            CURRENT.reset(token)
        try:
            await self.db(ledger.finish, row.pk)
        except DatabaseError:
            logger.error("could not mark telegram update %s done; a redelivery is told, not repeated",
                         update.update_id, exc_info=True)
        return True

    async def _database_down(self, update: Update, incoming: ledger.Incoming) -> bool:
        """The ledger cannot be written: tell the sender, and audit through the service
        (which keeps the refusal in Redis until the database is back)."""
        logger.error("database unavailable: telegram update %s not executed", update.update_id, exc_info=True)
        error = services.DatabaseUnavailable(
            "The kill switch database is unavailable, so your command cannot be checked: nothing was "
            "changed. On the server, `manage.py killswitch activate` or `redis-cli SET trading_switch halt` "
            "still stop trading at once and are audited when the database is back.")
        command, rest = command_and_rest(incoming.text)
        attempted, level = attempt_of(command)
        with contextlib.suppress(Exception):  # refuse() falls back to Redis; only both down lands here
            await self.db(services.record_refusal, attempted=attempted, scope=scope_and_reason(rest).scope,
                          actor=f"telegram:{incoming.user_id}", source=Source.TELEGRAM, error=error,
                          reason=incoming.text, requested_level=level)
        if incoming.chat_id is None:
            return True
        return await self.send(incoming.chat_id, error.message, reply_to=incoming.message_id) is not None

    # --- recovery after a crash --------------------------------------------------------

    async def tell_interrupted(self, row: TelegramUpdate) -> None:
        text = await self.db(_interrupted, row)
        if row.chat_id is not None and text:
            await self.send(row.chat_id, text, reply_to=row.message_id)
        await self.db(ledger.finish, row.pk)

    # --- talking to Telegram -----------------------------------------------------------

    async def send(self, chat_id: int, text: str, *, reply_to: int | None = None,
                   markup: InlineKeyboardMarkup | None = None) -> Message | None:
        """Send `text`, waiting out a 429's retry_after and retrying 5xx/network errors
        (a reply lost to a flood limit would leave a trader guessing). Not retried: a
        timeout (Telegram may have delivered it), and 4xx answers. None when not sent."""
        reply = ReplyParameters(message_id=reply_to, allow_sending_without_reply=True) if reply_to else None
        for attempt in range(1, SEND_TRIES + 1):
            try:
                return await self.app.bot.send_message(chat_id, clip(text), reply_parameters=reply,
                                                       reply_markup=markup)
            except RetryAfter as exc:
                wait = retry_seconds(exc)
                logger.warning("sendMessage to %s: 429, waiting %s s", chat_id, wait)
                await asyncio.sleep(wait)
            except TimedOut:
                logger.warning("sendMessage to %s timed out; not repeated (it may have arrived)", chat_id)
                return None
            except (BadRequest, Forbidden) as exc:
                logger.warning("sendMessage to %s refused: %s", chat_id, exc.message)
                return None
            except NetworkError as exc:
                logger.warning("sendMessage to %s failed (attempt %s): %s", chat_id, attempt, exc.message)
                await asyncio.sleep(attempt)
        logger.error("could not send a message to chat %s after %s tries", chat_id, SEND_TRIES)
        return None

    async def reply(self, update: Update, text: str, *, markup: InlineKeyboardMarkup | None = None) -> Message | None:
        message = update.effective_message
        chat = update.effective_chat
        if chat is None:
            return None
        return await self.send(chat.id, text, reply_to=message.message_id if message else None, markup=markup)

    async def edit(self, chat_id: int, message_id: int | None, text: str) -> None:
        """Replace a prompt's text and remove its buttons (best effort)."""
        if message_id is None:
            return
        try:
            await self.app.bot.edit_message_text(clip(text), chat_id=chat_id, message_id=message_id)
        except TelegramError as exc:
            logger.warning("could not edit message %s in %s: %s", message_id, chat_id, exc.message)

    # --- acting ------------------------------------------------------------------------

    async def act(self, user: Any, call: Callable[[], Any], render: Callable[[Any], str],
                  refusal: Callable[[services.KillSwitchError], str]) -> tuple[str, int | None]:
        """The one service call of a command, recorded around it in the ledger: the
        reply and the audit event's seq, or the refusal in the service's words."""
        row = CURRENT.get()
        return await self.db(_act, row.pk if row else None, getattr(user, "pk", None), call, render, refusal)

    # --- errors and alerts --------------------------------------------------------------

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        logger.error("telegram handler failed on update %s", getattr(update, "update_id", None),
                     exc_info=context.error)
        if isinstance(update, Update) and update.effective_chat is not None:
            await self.reply(update, "Something went wrong while handling this; it was logged. Check /status "
                                     "before trying again.")

    async def _on_conflict(self, exc: Conflict) -> None:
        now = timezone.now()
        if self._last_conflict_alert and now - self._last_conflict_alert < CONFLICT_ALERT_EVERY:
            return
        self._last_conflict_alert = now
        await self._alert(f"Telegram bot {self.api.bot_id}: 409 Conflict, another process is polling the same "
                          f"token or a webhook is set for it ({exc.message}); commands may reach the other one. "
                          "Stop the other instance (or delete its webhook).")

    async def _on_token_refused(self, exc: TelegramError) -> None:
        await self._alert(f"Telegram bot {self.api.bot_id}: Telegram refused the token while polling "
                          f"({exc.message}); the bot hears no command until the token is fixed.")

    async def _alert(self, detail: str) -> None:
        with contextlib.suppress(Exception):
            await self.db(services.record_alert, scope="global", actor="system:telegram-bot", detail=detail)


def _act(row_id: int | None, user_id: int | None, call: Callable[[], Any], render: Callable[[Any], str],
         refusal: Callable[[services.KillSwitchError], str]) -> tuple[str, int | None]:
    if row_id is not None:
        ledger.acting(row_id, actor_user_id=user_id)
    try:
        result = call()
    except services.KillSwitchError as error:
        text, seq = refusal(error), error.seq
    else:
        text, seq = render(result), getattr(result, "seq", None)
    if row_id is not None:
        ledger.acted(row_id, event_seq=seq, reply=text)
    return text, seq


def _interrupted(row: TelegramUpdate) -> str:
    """What to tell the sender of a command a crash interrupted. A command that was not
    carried out is audited as refused, so the log shows the attempt and its end."""
    what = f"“{row.text[:200]}”" + (f" (sent {row.sent_at.astimezone(UTC):%H:%M:%S} UTC)" if row.sent_at else "")
    if row.state == UpdateState.ACTED:
        return f"After a restart of the bot, the answer to {what}:\n{row.reply}"
    if row.state == UpdateState.ACTING:
        event = ledger.outcome_of(row)
        if event is not None:
            return (f"The bot restarted while handling {what}. It was carried out before the restart: "
                    f"#{event.seq} {event.action}/{event.outcome} {event.scope_label} "
                    f"{event.previous_level}→{event.new_level}. It was not repeated.")
    elif not row.text.startswith("/"):
        # A button or a typed word that had not reached its service call.
        return f"The bot restarted before it handled {what}: nothing was done. Send it again if it still holds."
    command, rest = command_and_rest(row.text)
    attempted, level = attempt_of(command)
    error = services.record_refusal(
        attempted=attempted, scope=scope_and_reason(rest).scope, actor=_actor_of(row), source=Source.TELEGRAM,
        reason=row.text, requested_level=level,
        error=services.InvalidRequest("The bot restarted before this command was carried out; it was not "
                                      "executed and will not be repeated. Send it again if it still holds."))
    return (f"Refused {seq_tag(error.seq)}: the bot restarted before it carried out {what}, so nothing was done. "
            "Send it again if it still holds.")


def _actor_of(row: TelegramUpdate) -> Any:
    from .links import linked_user

    user = linked_user(row.telegram_user_id) if row.telegram_user_id else None
    return user if user is not None else f"telegram:{row.telegram_user_id}"


def _incoming(bot_id: int, update: Update) -> ledger.Incoming:
    message = update.effective_message if update.callback_query is None else None
    user, chat = update.effective_user, update.effective_chat
    if update.callback_query is not None:
        text = f"[button] {update.callback_query.data or ''}"
        message_id = update.callback_query.message.message_id if update.callback_query.message else None
    else:
        text = (message.text or message.caption or "") if message else ""
        message_id = message.message_id if message else None
    return ledger.Incoming(bot_id=bot_id, update_id=update.update_id, chat_id=chat.id if chat else None,
                           user_id=user.id if user else None, message_id=message_id, text=text,
                           sent_at=message.date if message else None)
