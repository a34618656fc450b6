"""Notifications: real Celery worker, real HTTP endpoint (apprise json:// URL), every
attempt recorded, and the switch never waiting on them."""

from __future__ import annotations

import pytest

from killswitch import services
from killswitch.models import Event, Notification, Scope
from killswitch.notifications import services as notifications
from tests.conftest import wait_for
from tests.events import event_of

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def endpoints(notify_endpoints, celery_worker, monkeypatch):
    """The worker and this process share the same channel list (NOTIFY_URLS)."""
    monkeypatch.setenv("NOTIFY_URLS", notify_endpoints.env)
    with notify_endpoints.inbox.lock:
        notify_endpoints.inbox.received.clear()
        notify_endpoints.inbox.failures.clear()
        notify_endpoints.inbox.fail_next = 0
    yield notify_endpoints
    # The module's worker must be done writing this test's deliveries before the test
    # database is flushed: on PostgreSQL the flush's TRUNCATE deadlocks with its writes.
    from killswitch.models import NotificationStatus

    wait_for(lambda: not Notification.objects.filter(
        status__in=[NotificationStatus.PENDING, NotificationStatus.RETRYING]).exists(), timeout=30)


def rows_for(event: Event) -> dict[str, Notification]:
    return {n.target.split("/")[-1].split("?")[0]: n for n in Notification.objects.filter(event=event)}


def test_activation_arrives_at_the_webhook_with_the_events_fields(endpoints, risk_officer):
    result = services.activate(scope="account:DU123", level="halt", reason="Market crash, VIX 47",
                               actor=risk_officer, source="api", client_address="10.0.0.7")
    inbox = endpoints.inbox
    posted = wait_for(lambda: next((m["json"] for m in inbox.received
                                    if m["json"]["title"].startswith("Kill switch activated")), None), timeout=20)
    assert posted["title"] == "Kill switch activated: account:DU123 (running → halt)"
    body = posted["message"]
    for line in ("Scope: account:DU123", "Level: running → halt", "Reason: Market crash, VIX 47",
                 "Actor: rita_risk", "Source: api", f"Event: #{result.seq} activate/applied"):
        assert line in body
    assert result.at.strftime("%Y-%m-%dT%H:%M:%SZ") in body
    good = wait_for(lambda: rows_for(event_of(result)).get("hook") if rows_for(event_of(result)).get("hook")
                    and rows_for(event_of(result))["hook"].status == "sent" else None, timeout=20)
    assert good.attempts == 1 and good.attempt_rows.get().ok


def test_failing_channel_is_retried_recorded_and_does_not_touch_the_switch(endpoints, trader):
    result = services.activate(scope="global", level="halt", reason="crash", actor=trader, source="cli")
    # The switch is applied and answered before any delivery was tried.
    assert result.changed and Scope.objects.get(kind="global").level == "halt"

    def dead_failed():
        row = rows_for(event_of(result)).get("dead")
        return row if row and row.status == "failed" else None

    dead = wait_for(dead_failed, timeout=30)
    attempts = list(dead.attempt_rows.order_by("number"))
    assert [a.number for a in attempts] == [1, 2, 3]  # NOTIFY_MAX_ATTEMPTS=3 in the worker
    assert all(not a.ok and not a.permanent and "Connection" in a.error for a in attempts)
    assert "Connection" in dead.last_error
    # The other channel still got it, and nothing about the switch changed.
    assert wait_for(lambda: rows_for(event_of(result))["hook"].status == "sent", timeout=20)
    assert Scope.objects.get(kind="global").level == "halt"
    assert services.verify_audit_chain().ok


def test_transient_server_error_is_retried_until_delivered(endpoints, trader, set_policy):
    set_policy(cooldown_minutes=0)
    endpoints.inbox.fail_next = 1
    event = event_of(services.activate(scope="strategy:momo", level="pause", reason="drift", actor=trader,
                              source="api"))

    def hook_sent():
        row = rows_for(event).get("hook")
        return row if row and row.status == "sent" else None

    row = wait_for(hook_sent, timeout=30)
    attempts = list(row.attempt_rows.order_by("number"))
    assert [(a.number, a.ok) for a in attempts] == [(1, False), (2, True)]
    assert "500" in attempts[0].error or "Internal Server Error" in attempts[0].error
    assert len(endpoints.inbox.failures) == 1 and len(endpoints.inbox.received) == 1


def test_cooldown_violation_and_deactivation_are_sent_noops_are_not(endpoints, trader, risk_officer, set_policy):
    services.activate(scope="global", level="halt", reason="crash", actor=trader, source="api")
    services.activate(scope="global", level="halt", reason="again", actor=trader, source="api")  # no-op
    with pytest.raises(services.CooldownActive):
        services.deactivate(scope="global", actor=risk_officer, source="api")
    set_policy(cooldown_minutes=0)
    Scope.objects.filter(kind="global").update(cooldown_until=None)
    services.deactivate(scope="global", actor=risk_officer, source="api", reason="clear")
    def titles():
        # Broker runs started by these activations may add alerts of their own.
        return sorted(m["json"]["title"] for m in endpoints.inbox.received
                      if not m["json"]["title"].startswith("Kill switch alert"))

    wait_for(lambda: len(titles()) >= 3, timeout=20)
    titles = titles()
    assert titles == ["Kill switch activated: global (running → halt)",
                      "Kill switch cooldown violation: global (stays halt)",
                      "Kill switch deactivated: global (halt → running)"]
    assert not Notification.objects.filter(event__outcome="noop").exists()


def test_queuing_twice_sends_once(endpoints, trader):
    event = event_of(services.activate(scope="global", level="halt", reason="crash", actor=trader, source="api"))
    assert notifications.queue_for_event(event=event) == []  # the receiver already queued both channels
    assert Notification.objects.filter(event=event).count() == 2


def test_a_notification_queued_while_the_broker_was_down_is_delivered_later(endpoints, trader, monkeypatch):
    """The Celery broker refused the task at commit (as kombu does when Redis is down):
    the row stays pending; the reconciler's pass queues it again once it is overdue."""
    from datetime import timedelta

    from django.utils import timezone

    from killswitch.notifications import tasks
    from killswitch.runtime import background

    def broker_down(*args, **kwargs):
        raise ConnectionError("Error 111 connecting to the Celery broker")

    with monkeypatch.context() as patch:
        patch.setattr(tasks.deliver, "apply_async", broker_down)
        result = services.activate(scope="symbol:TSLA", level="halt", reason="broker down", actor=trader,
                                   source="api")
        background.flush()  # deliveries are published from the notify lane, after the request
    # The broker is back.
    rows = rows_for(event_of(result))
    assert rows and all(r.status == "pending" and r.attempts == 0 for r in rows.values())
    assert notifications.requeue_stuck() == []  # not overdue yet: a worker may be on it
    Notification.objects.filter(event=event_of(result)).update(updated_at=timezone.now() - timedelta(minutes=1))
    assert sorted(notifications.requeue_stuck()) == sorted(r.pk for r in rows.values())
    assert notifications.requeue_stuck() == []  # touched: left alone for the grace period
    hook = wait_for(lambda: rows_for(event_of(result))["hook"].status == "sent" and rows_for(event_of(result))["hook"],
                    timeout=30)
    assert hook.attempts == 1
    assert wait_for(lambda: any(m["json"]["title"].startswith("Kill switch activated: symbol:TSLA")
                                for m in endpoints.inbox.received), timeout=20)
