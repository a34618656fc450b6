"""Celery task that delivers one notification. Takes an id, re-reads the row, calls
one service; retried with exponential backoff while the error is transient."""

from __future__ import annotations

from celery import shared_task

from . import services


@shared_task(bind=True, name="killswitch.notifications.deliver", acks_late=True, max_retries=None,
             ignore_result=True)
def deliver(self, notification_id: int) -> str:
    # The service counts attempts and decides when to stop (NOTIFY_MAX_ATTEMPTS);
    # max_retries=None leaves that decision in one place.
    result = services.deliver(notification_id=notification_id)
    if result.retry:
        raise self.retry(countdown=services.backoff_seconds(result.attempt, result.retry_after))
    return result.status
