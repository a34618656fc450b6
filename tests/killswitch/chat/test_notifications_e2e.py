"""One client, one URL: while the bot runs, a halt from chat is notified to the desk's
chat (TELEGRAM_CHAT_ID) by the real Celery worker through the same Bot API URL the bot
uses, carrying the audit event's number."""

from __future__ import annotations

import dataclasses

import pytest
from django.conf import settings

from brokers.demo import seed_demo_data
from killswitch import policy
from killswitch.models import Notification, NotificationStatus
from killswitch.notifications import registry
from tests.brokers.conftest import Worker, worker_env
from tests.conftest import wait_for
from tests.killswitch.chat.conftest import DESK, TRADER, db, events, say

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def telegram_channel(api, monkeypatch, tmp_path, django_db_blocker):
    """This process and a real worker both configured for Telegram on the fake Bot API."""
    api.send_user_message(TRADER, DESK, "morning all", chat_type="supergroup")  # the desk's chat exists
    env = {"TELEGRAM_API_URL": api.api_url, "TELEGRAM_BOT_TOKEN": api.token, "TELEGRAM_CHAT_ID": str(DESK)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("NOTIFY_URLS", raising=False)
    base = policy.get_policy()
    enabled = dataclasses.replace(base, kill_switch=dataclasses.replace(base.kill_switch, telegram_enabled=True))
    monkeypatch.setattr(registry, "get_policy", lambda: enabled)
    path = tmp_path / "risk_limits.yaml"
    path.write_text("kill_switch:\n  telegram_enabled: true\n")
    with django_db_blocker.unblock():
        worker = Worker({**worker_env(path, paper_only=True), **env}, tmp_path,
                        queues=f"{settings.BROKER_QUEUE},{settings.NOTIFY_QUEUE}").start()
    yield worker
    # Deliveries finish before the test database is flushed (PostgreSQL's TRUNCATE
    # would wait on the worker's writes).
    wait_for(lambda: not Notification.objects.filter(
        status__in=[NotificationStatus.PENDING, NotificationStatus.RETRYING]).exists(), timeout=30)
    worker.stop()


async def test_a_halt_from_chat_is_notified_to_the_desk_through_the_same_bot_api(bot, api, telegram_channel):
    await db(seed_demo_data)
    reply = await say(api, TRADER, "/halt account:DU111111 desk drill")
    [event] = await events(source="telegram")
    assert reply["text"].startswith(f"#{event.seq} ")
    notice = await api.wait_for_message_async(DESK, contains=f"Event: #{event.seq} activate/applied", timeout=30)
    assert notice["text"].startswith("Kill switch activated: account:DU111111 (running → halt)")
    assert "Actor: tom_trader" in notice["text"] and "Source: telegram" in notice["text"]
    row = await db(wait_for, lambda: Notification.objects.filter(
        event__seq=event.seq, channel="telegram", status="sent").first(), timeout=20)
    assert row.attempts == 1 and row.target == f"telegram bot {api.token.split(':')[0]} → chat {DESK}"
