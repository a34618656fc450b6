"""Long polling that confirms an update only once it has been handled.

Hand-written on python-telegram-bot's `Bot.get_updates` instead of PTB's `Updater`,
because the Updater (22.8, observed in tests/fake_telegram) confirms an update with
its next getUpdates *before* the handler has finished, so a crash loses the command,
and it ends polling silently on a 401. Here:

- the offset moves past an update only after `handle(update)` returned True, so
  Telegram redelivers whatever a crash interrupted (the ledger makes that harmless);
- a 409 Conflict (another process polling the token) is logged as an error every
  time and reported to `on_conflict`; polling goes on with backoff;
- a 401/404 (token revoked) is reported to `on_token_refused` and retried slowly, so
  the rest of the stack keeps running while the alert says why the bot is deaf;
- 429 waits `retry_after`; 5xx and network errors back off 1 s, x1.5, up to 30 s;
- it polls only while this process holds the poller lease (killswitch.chat.lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from telegram import Bot, Update
from telegram.error import Conflict, InvalidToken, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.warnings import PTBDeprecationWarning

from .lease import LOST, PollerLease

logger = logging.getLogger("killswitch.chat")

ALLOWED_UPDATES = ("message", "callback_query")
FIRST_DELAY, MAX_DELAY, FACTOR = 1.0, 30.0, 1.5
TOKEN_REFUSED_DELAY = 60.0


class Backoff:
    def __init__(self) -> None:
        self.delay = FIRST_DELAY

    def next(self) -> float:
        delay, self.delay = self.delay, min(MAX_DELAY, self.delay * FACTOR)
        return delay

    def reset(self) -> None:
        self.delay = FIRST_DELAY


async def sleep_unless(event: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less if `event` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)


class Poller:
    """Polls `bot` and hands each update to `handle`, in order, one at a time."""

    def __init__(self, bot: Bot, handle: Callable[[Update], Awaitable[bool]], *, lease: PollerLease,
                 lease_seconds: float, timeout: int,
                 on_conflict: Callable[[Conflict], Awaitable[None]] | None = None,
                 on_token_refused: Callable[[TelegramError], Awaitable[None]] | None = None) -> None:
        self.bot, self.handle, self.lease = bot, handle, lease
        self.lease_seconds, self.timeout = lease_seconds, timeout
        self.on_conflict, self.on_token_refused = on_conflict, on_token_refused
        self.offset: int | None = None
        self.polling = asyncio.Event()  # set while this process holds the lease and polls

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set. An update being handled is finished first."""
        while not stop.is_set():
            if not await self._wait_for_lease(stop):
                return
            lost = asyncio.Event()
            keeper = asyncio.create_task(self._keep_lease(lost, stop))
            self.polling.set()
            try:
                await self._poll(stop, lost)
            finally:
                self.polling.clear()
                keeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await keeper

    async def _wait_for_lease(self, stop: asyncio.Event) -> bool:
        told = False
        while not stop.is_set():
            if await asyncio.to_thread(self.lease.acquire) != LOST:
                if told:
                    logger.warning("took over the Telegram poller lease; polling")
                return True
            if not told:
                holder = await asyncio.to_thread(self.lease.holder)
                logger.error("another instance holds the Telegram poller lease (%s); this one waits and "
                             "takes over if it stops", holder, extra={"lease_holder": holder})
                told = True
            await sleep_unless(stop, self.lease_seconds / 2)
        return False

    async def _keep_lease(self, lost: asyncio.Event, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await sleep_unless(stop, self.lease_seconds / 3)
            if await asyncio.to_thread(self.lease.acquire) == LOST:
                logger.error("lost the Telegram poller lease to another instance; this one stops polling")
                lost.set()
                return

    async def _fetch(self, stop: asyncio.Event, lost: asyncio.Event) -> tuple[Update, ...] | None:
        """One getUpdates, abandoned (unconfirmed, so nothing is lost) when stopping."""
        fetch = asyncio.ensure_future(self.bot.get_updates(
            offset=self.offset, timeout=self.timeout, allowed_updates=ALLOWED_UPDATES))
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(lost.wait())]
        try:
            await asyncio.wait([fetch, *waiters], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if not fetch.done():
            fetch.cancel()
            with contextlib.suppress(asyncio.CancelledError, TelegramError):
                await fetch
            return None
        return fetch.result()

    async def _poll(self, stop: asyncio.Event, lost: asyncio.Event) -> None:
        backoff = Backoff()
        while not stop.is_set() and not lost.is_set():
            try:
                updates = await self._fetch(stop, lost)
            except Conflict as exc:
                logger.error("Telegram answered 409 Conflict: another process is polling this bot token, or a "
                             "webhook is set for it (%s). Only one may: stop the other instance.", exc.message)
                if self.on_conflict:
                    await self.on_conflict(exc)
                await sleep_unless(stop, backoff.next())
                continue
            except RetryAfter as exc:
                await sleep_unless(stop, retry_seconds(exc))
                continue
            except InvalidToken as exc:
                logger.critical("Telegram refused the bot token while polling (%s): the bot hears nothing "
                                "until the token is fixed; retrying every %.0f s", exc.message, TOKEN_REFUSED_DELAY)
                if self.on_token_refused:
                    await self.on_token_refused(exc)
                await sleep_unless(stop, TOKEN_REFUSED_DELAY)
                continue
            except (TimedOut, NetworkError) as exc:
                logger.warning("getUpdates failed (%s); retrying", exc.message)
                await sleep_unless(stop, backoff.next())
                continue
            except Exception:  # an answer PTB could not parse, or a bug: never stop listening
                logger.exception("getUpdates failed; retrying")
                await sleep_unless(stop, backoff.next())
                continue
            if updates is None:
                return
            backoff.reset()
            for update in updates:
                if not await self.handle(update):
                    # Not handled (the database and Telegram both failing): leave it
                    # unconfirmed, Telegram gives it again.
                    await sleep_unless(stop, backoff.next())
                    break
                self.offset = update.update_id + 1
                if stop.is_set() or lost.is_set():
                    break
        if self.offset is not None:
            await self._confirm()

    async def _confirm(self) -> None:
        """Confirm what was handled before stopping, so a successor does not see it again."""
        with contextlib.suppress(TelegramError):
            await self.bot.get_updates(offset=self.offset, timeout=0, limit=1, allowed_updates=ALLOWED_UPDATES)


def retry_seconds(error: RetryAfter) -> float:
    """A 429's retry_after in seconds: an int in PTB 22 (with a deprecation warning on
    every read), a timedelta in later versions or with PTB_TIMEDELTA=1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value: Any = error.retry_after
    return value.total_seconds() if hasattr(value, "total_seconds") else float(value)
