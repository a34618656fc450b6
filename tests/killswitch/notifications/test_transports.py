"""Transports and channel configuration, without a worker (nothing here is committed)."""

from __future__ import annotations

import pytest

from killswitch import services
from killswitch.notifications import registry
from killswitch.notifications import services as notifications
from killswitch.notifications.apprise_transport import AppriseTransport
from killswitch.notifications.base import Message, TransportError
from tests.events import event_of

pytestmark = pytest.mark.django_db


def test_telegram_enabled_without_token_is_a_recorded_permanent_failure(monkeypatch, trader, settings):
    import dataclasses

    from killswitch import policy

    base = policy.get_policy()
    enabled = dataclasses.replace(base, kill_switch=dataclasses.replace(base.kill_switch, telegram_enabled=True))
    monkeypatch.setattr(policy, "get_policy", lambda: enabled)
    monkeypatch.setattr(registry, "get_policy", lambda: enabled)
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "12345")
    monkeypatch.delenv("NOTIFY_URLS", raising=False)
    assert [c.id for c in registry.channels()] == ["telegram"]
    event = event_of(services.activate(scope="global", level="halt", reason="crash", actor=trader, source="api"))
    # Not transactional: nothing is committed, so no worker sees it; queued and delivered
    # here, in-process, by the same services the receiver and the worker call.
    [row] = notifications.queue_for_event(event=event)
    assert (row.channel, row.target) == ("telegram", "telegram (missing TELEGRAM_BOT_TOKEN)")
    result = notifications.deliver(notification_id=row.pk)
    assert result.status == "failed"
    row.refresh_from_db()
    assert row.last_error == "telegram_enabled is true but TELEGRAM_BOT_TOKEN is not set in the environment"
    assert row.attempt_rows.get().permanent


def test_channels_come_from_config_and_notify_urls_without_duplicates(monkeypatch):
    import dataclasses

    from killswitch import policy

    base = policy.get_policy()
    configured = dataclasses.replace(
        base, notifications=dataclasses.replace(base.notifications, urls=("json://127.0.0.1:9/a",)))
    monkeypatch.setattr(registry, "get_policy", lambda: configured)
    monkeypatch.setenv("NOTIFY_URLS", " json://127.0.0.1:9/a , ntfy://topic ,")
    found = registry.channels()
    assert [c.kind for c in found] == ["apprise", "apprise"]
    assert found[0].id.startswith("apprise:") and len(found[0].id) == len("apprise:") + 12
    assert found[1].target.startswith("ntfy")


def test_url_apprise_does_not_understand_is_a_permanent_error():
    transport = AppriseTransport("nonsense://whatever")
    with pytest.raises(TransportError) as info:
        transport.notify(Message("t", "b"))
    assert info.value.permanent
    assert "does not understand" in info.value.message
