"""Telegram notifications go to the Bot API URL the bot uses (TELEGRAM_API_URL), here
our fake Bot API server: what arrives, and how each Telegram answer ends a try."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from killswitch import policy, services
from killswitch.notifications import registry
from killswitch.notifications import services as notifications
from killswitch.notifications.base import Message, TransportError
from killswitch.notifications.telegram import TelegramTransport
from tests.events import event_of
from tests.fake_telegram import FakeBotApi

pytestmark = pytest.mark.django_db
DESK = -1001234567890


@pytest.fixture
def api(monkeypatch) -> Iterator[FakeBotApi]:
    with FakeBotApi() as fake:
        fake.send_user_message(4242, DESK, "hello desk", chat_type="supergroup")  # the chat exists
        monkeypatch.setenv("TELEGRAM_API_URL", fake.api_url)
        monkeypatch.setenv("TELEGRAM_BOT_TOKEN", fake.token)
        monkeypatch.setenv("TELEGRAM_CHAT_ID", str(DESK))
        monkeypatch.delenv("NOTIFY_URLS", raising=False)
        base = policy.get_policy()
        enabled = dataclasses.replace(base, kill_switch=dataclasses.replace(base.kill_switch, telegram_enabled=True))
        monkeypatch.setattr(registry, "get_policy", lambda: enabled)
        yield fake


def test_an_activation_reaches_the_chat_through_the_bot_api_with_its_event_number(api, trader):
    result = services.activate(scope="account:DU123", level="halt", reason="Market crash", actor=trader, source="telegram")
    [row] = notifications.queue_for_event(event=event_of(result))
    assert row.target == f"telegram bot {api.token.split(':')[0]} → chat {DESK}"
    assert api.token.split(":")[1] not in row.target  # the secret half is never stored
    assert notifications.deliver(notification_id=row.pk).status == "sent"
    [sent] = api.requests("sendMessage")
    assert sent.params["chat_id"] == DESK
    message = api.wait_for_message(DESK, contains="Kill switch activated")
    assert message["text"].startswith("Kill switch activated: account:DU123 (running → halt)")
    assert f"Event: #{result.seq} activate/applied" in message["text"]
    assert "Actor: tom_trader" in message["text"] and "Source: telegram" in message["text"]


def test_a_flood_limit_is_retried_no_sooner_than_telegram_asks(api, trader):
    api.fail_next("sendMessage", 429, retry_after=42)
    [row] = notifications.queue_for_event(event=event_of(
        services.activate(scope="global", level="pause", reason="x", actor=trader, source="api")))
    result = notifications.deliver(notification_id=row.pk)
    assert result.status == "retrying" and result.retry_after == 42
    assert result.error == "Telegram answered 429: Too Many Requests: retry after 42"
    assert notifications.backoff_seconds(result.attempt, result.retry_after) == 42
    assert notifications.deliver(notification_id=row.pk).status == "sent"


@pytest.mark.parametrize("fault, permanent, error", [
    (("sendMessage", 502), False, "Telegram answered 502: Bad Gateway"),
    (("sendMessage", 403, "Forbidden: bot was kicked from the supergroup chat"), True,
     "Telegram answered 403: Forbidden: bot was kicked from the supergroup chat"),
    (("sendMessage", 400, "Bad Request: chat not found"), True, "Telegram answered 400: Bad Request: chat not found"),
])
def test_each_telegram_answer_says_whether_retrying_can_help(api, fault, permanent, error):
    api.fail_next(*fault)
    with pytest.raises(TransportError) as info:
        TelegramTransport().notify(Message("t", "t\nbody"))
    assert info.value.permanent is permanent
    assert info.value.message.startswith(error)


def test_telegram_unreachable_is_transient_and_the_token_is_never_in_the_error(api):
    api.go_down()
    with pytest.raises(TransportError) as info:
        TelegramTransport().notify(Message("t", "body"))
    assert not info.value.permanent and info.value.message.startswith("Telegram unreachable: ConnectError")
    assert api.token not in info.value.message
