"""The bot under test: the real python-telegram-bot against our fake Bot API server,
on the real test database (transactional: the bot's database thread sees what the
test commits) and the real Redis (the poller lease). The personas of tests/conftest.py,
each linked to a Telegram account of their own."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from killswitch.chat import config as chat_config
from killswitch.chat.bot import KillSwitchBot
from killswitch.chat.config import TelegramConfig
from killswitch.chat.links import link
from killswitch.models import Event
from killswitch.notifications.telegram import BotApi
from tests.fake_telegram import FakeBotApi
from tests.stack import ROOT

# Telegram user ids of the personas (a private chat's id is its person's id).
VIEWER, TRADER, RISK, NOBODY, STRANGER = 5001, 5002, 5003, 5004, 5999
DESK = -1001234567890  # the desk's group chat

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api() -> Iterator[FakeBotApi]:
    with FakeBotApi() as fake:
        yield fake


@pytest.fixture
def tg_config() -> TelegramConfig:
    """Short polls and lease so that stops and restarts are quick; the policy's
    defaults otherwise (60 s age limit, 60 s to confirm)."""
    return TelegramConfig(poll_timeout_seconds=1, lease_seconds=3)


@pytest.fixture
def people(transactional_db, viewer, trader, risk_officer, nobody) -> dict[str, Any]:
    for user, telegram_id in ((viewer, VIEWER), (trader, TRADER), (risk_officer, RISK), (nobody, NOBODY)):
        link(username=user.username, telegram_user_id=telegram_id, by="test")
    return {"viewer": viewer, "trader": trader, "risk": risk_officer, "nobody": nobody}


class RunningBot:
    """Starts and stops the product's bot on the test's event loop."""

    def __init__(self, api: FakeBotApi, config: TelegramConfig) -> None:
        self.api, self.config = api, config
        self.bot: KillSwitchBot | None = None
        self.task: asyncio.Task | None = None
        self.stop_event = asyncio.Event()

    async def start(self, *, wait: bool = True) -> KillSwitchBot:
        self.stop_event = asyncio.Event()
        self.bot = KillSwitchBot(BotApi(self.api.api_url, self.api.token), self.config)
        self.task = asyncio.create_task(self.bot.run(self.stop_event))
        if wait:
            await self.wait_polling()
        return self.bot

    async def wait_polling(self, timeout: float = 15) -> None:
        async def polling() -> None:
            while not (self.bot and self.bot.poller.polling.is_set()):
                if self.task and self.task.done():
                    self.task.result()  # raises what stopped it
                await asyncio.sleep(0.02)

        await asyncio.wait_for(polling(), timeout)

    async def stop(self) -> None:
        if self.task is None:
            return
        self.stop_event.set()
        try:
            await asyncio.wait_for(self.task, 20)
        finally:
            self.task = None


@pytest.fixture
async def make_bot(api, tg_config, people, redis_client) -> AsyncIterator[Callable[..., RunningBot]]:
    """make_bot(**config changes) -> a RunningBot, not started; all are stopped at the end."""
    made: list[RunningBot] = []

    def make(**changes: Any) -> RunningBot:
        config = dataclasses.replace(tg_config, **changes)
        made.append(RunningBot(api, config))
        return made[-1]

    yield make
    for running in made:
        await running.stop()


@pytest.fixture
async def bot(make_bot) -> RunningBot:
    running = make_bot()
    await running.start()
    return running


async def db(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run ORM code from an async test (on asgiref's one sync thread)."""
    return await sync_to_async(fn)(*args, **kwargs)


async def events(**filters: Any) -> list[Event]:
    return await db(lambda: list(Event.objects.filter(**filters).order_by("seq")))


async def wait_events(timeout: float = 10, **filters: Any) -> list[Event]:
    """Events matching `filters`, waiting (bounded) until there is at least one."""
    deadline = time.monotonic() + timeout
    while True:
        found = await events(**filters)
        if found:
            return found
        assert time.monotonic() < deadline, f"no event matching {filters} within {timeout} s"
        await asyncio.sleep(0.05)


async def say(api: FakeBotApi, user_id: int, text: str, *, chat_id: int | None = None, contains: str | None = None,
              timeout: float = 10, **kwargs: Any) -> dict[str, Any]:
    """`user_id` writes `text` (in their private chat unless `chat_id`); returns the
    bot's first answer in that chat after it (containing `contains`, if given)."""
    chat = user_id if chat_id is None else chat_id
    mark = api.checkpoint()
    if chat_id is not None and chat_id < 0:
        kwargs.setdefault("chat_type", "supergroup")
    api.send_user_message(user_id, chat, text, **kwargs)
    return await api.wait_for_message_async(chat, contains=contains, since=mark, timeout=timeout)


@contextlib.contextmanager
def policy_file_telegram(monkeypatch, **section: Any) -> Iterator[None]:
    """The policy's telegram: section as the config loader reads it."""
    from killswitch import policy

    base = policy.get_policy()
    new = dataclasses.replace(base, extra={**base.extra, "telegram": section})
    monkeypatch.setattr(chat_config, "get_policy", lambda: new)
    yield


class BotProcess:
    """`manage.py killswitch telegram run` as a real OS process on the test database,
    the test Redis and the fake Bot API: what a test kills (SIGKILL) and starts again."""

    def __init__(self, api: FakeBotApi, tmp_path: Path, *, env: dict[str, str] | None = None, **telegram: Any) -> None:
        from django.conf import settings

        from riskcontrol.env import current_database_url

        section = {"poll_timeout_seconds": 1, "lease_seconds": 2, **telegram}
        policy = tmp_path / "risk_limits.yaml"
        policy.write_text("kill_switch:\n  telegram_enabled: true\ntelegram:\n"
                          + "".join(f"  {key}: {value}\n" for key, value in section.items()))
        self.api = api
        self.log = tmp_path / "telegram-bot.log"
        self.env = {**os.environ, "DATABASE_URL": current_database_url(), "REDIS_URL": settings.REDIS_URL,
                    "RISK_LIMITS_PATH": str(policy), "TELEGRAM_BOT_TOKEN": api.token,
                    "TELEGRAM_API_URL": api.api_url, "KILLSWITCH_TESTING": "1", "PYTHONUNBUFFERED": "1",
                    "DJANGO_SETTINGS_MODULE": "riskcontrol.settings"}
        self.env.pop("TELEGRAM_CHAT_ID", None)
        self.env.update(env or {})
        self.process: subprocess.Popen | None = None

    def start(self) -> BotProcess:
        polls = len(self.api.requests("getUpdates"))
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen([sys.executable, "manage.py", "killswitch", "telegram", "run"], cwd=ROOT,
                                            env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while len(self.api.requests("getUpdates")) <= polls:
            if self.process.poll() is not None:
                raise RuntimeError(f"the bot exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the bot did not poll within 60 s:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        return self

    def kill(self) -> None:
        """SIGKILL: no clean-up runs, as when the machine or the OOM killer stops it."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def bot_process(api, people, redis_client, tmp_path) -> Iterator[Callable[..., BotProcess]]:
    made: list[BotProcess] = []

    def make(*, env: dict[str, str] | None = None, **telegram: Any) -> BotProcess:
        made.append(BotProcess(api, tmp_path, env=env, **telegram))
        return made[-1]

    yield make
    for process in made:
        process.stop()
