"""Every rule about notifications: which events are sent, to whom, and how a try ends.

Guarantees:
- Never delays or breaks the switch: rows are written and tasks queued after the
  event has committed; a failure here is logged, never raised into the transition.
- One row per (event, channel): queuing the same event twice sends it once.
- Every try is stored (NotificationAttempt) with its error; the row says how it ended:
  sent, retrying (transient error, attempts left) or failed (permanent error, or out
  of attempts).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, timedelta
from functools import partial

from django.db import IntegrityError, transaction
from django.utils import timezone

from ..models import Action, Event, Notification, NotificationAttempt, NotificationStatus, Outcome
from ..runtime import background
from . import registry
from .base import Message, TransportError

logger = logging.getLogger("killswitch")

DEFAULT_MAX_ATTEMPTS = 6
DEFAULT_BACKOFF_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 300.0


def max_attempts() -> int:
    return max(1, int(os.environ.get("NOTIFY_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS)))


def backoff_seconds(attempt: int, retry_after: float | None = None) -> float:
    """Delay before try `attempt + 1`: base, 2×base, 4×base, ... capped at 5 minutes, and
    never shorter than the channel's own `retry_after` (Telegram's flood limit)."""
    base = float(os.environ.get("NOTIFY_RETRY_BACKOFF_SECONDS", DEFAULT_BACKOFF_SECONDS))
    return max(min(MAX_BACKOFF_SECONDS, base * (2 ** max(0, attempt - 1))), retry_after or 0)


def _what(event: Event) -> str | None:
    """The notification a committed event deserves, or None.

    Activations, deactivations (applied), cooldown violations, out-of-band changes
    (applied or reverted) and alerts (a broker run that failed, a client that did not
    obey) are sent. No-ops, permission refusals and restorations are not: they are in
    the audit log, and a channel that cries wolf is muted by the people it should wake.
    """
    if event.action == Action.ACTIVATE and event.outcome == Outcome.APPLIED:
        return "activated"
    if event.action == Action.DEACTIVATE and event.outcome == Outcome.APPLIED:
        return "deactivated"
    if event.action == Action.COOLDOWN_VIOLATION:
        return "cooldown violation"
    if event.action == Action.OUT_OF_BAND and event.outcome in (Outcome.APPLIED, Outcome.REVERTED):
        return "changed out of band" if event.outcome == Outcome.APPLIED else "out-of-band change reverted"
    if event.action == Action.ALERT:
        return "alert"
    return None


def render(event: Event, what: str) -> Message:
    """The title and plain-text body for `event`: every field a risk officer needs."""
    scope = event.scope_label if event.scope_kind else (event.scope_key or "?")
    if event.previous_level != event.new_level:
        change = f"{event.previous_level} → {event.new_level}"
    else:
        change = f"stays {event.new_level or event.previous_level or 'unchanged'}"
    if event.action == Action.ALERT:  # alerts change no level: say what happened instead
        first_line = (event.detail or event.reason or "").splitlines()[0:1]
        title = f"Kill switch alert: {scope}" + (f": {first_line[0][:150]}" if first_line else "")
    else:
        title = f"Kill switch {what}: {scope} ({change})"
    at = event.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    lines = [
        title,
        f"Scope: {scope}",
        f"Level: {change}",
        f"Reason: {event.reason or '-'}",
        f"Actor: {event.actor}",
        f"Source: {event.source}",
        f"Time: {at}",
        f"Event: #{event.seq} {event.action}/{event.outcome}, version {event.version}",
    ]
    if event.requested_level:
        lines.insert(3, f"Requested level: {event.requested_level}")
    if event.detail:
        lines.append(f"Detail: {event.detail}")
    return Message(title=title[:200], body="\n".join(lines))


def queue_for_event(*, event: Event) -> list[Notification]:
    """Create one pending row per configured channel for `event` (if it deserves one)
    and queue a delivery task for each after commit. Idempotent per (event, channel)."""
    what = _what(event)
    if what is None:
        return []
    channels = registry.channels()
    if not channels:
        return []
    message = render(event, what)
    created: list[Notification] = []
    with transaction.atomic():
        for channel in channels:
            try:
                with transaction.atomic():
                    row = Notification.objects.create(
                        event=event, channel=channel.id, kind=channel.kind, target=channel.target,
                        title=message.title, body=message.body,
                    )
            except IntegrityError:
                continue  # already queued for this channel
            created.append(row)
            # Published from a background lane: the request that committed the event
            # never waits on the Celery broker for a notification.
            transaction.on_commit(partial(background.notify.submit, _enqueue, row.pk))
    return created


def _enqueue(notification_id: int) -> None:
    from .tasks import deliver

    try:
        # retry=False: with the broker down, fail at once instead of stalling the caller;
        # the row stays pending and is visible in the admin.
        deliver.apply_async((notification_id,), retry=False)
    except Exception:
        logger.error("could not queue notification %s", notification_id, exc_info=True)


# A pending row untouched this long has no task (the Celery broker was down when it was
# queued, or the message was lost); a retrying row this long past its next try likewise.
STUCK_AFTER_SECONDS = 30.0


def requeue_stuck(*, now=None) -> list[int]:
    """Queue again the notifications nobody is delivering, and return their ids.

    Found by the reconciler every few seconds (reconciler.py). Each one is touched
    (updated_at) so the next pass leaves it alone for STUCK_AFTER_SECONDS. Delivery is
    at least once: a task that was merely slow may also run; deliver() skips a row
    already sent or failed, so only tries running at the same moment can both send.
    """
    now = now or timezone.now()
    grace = timedelta(seconds=STUCK_AFTER_SECONDS)
    due = []
    rows = (Notification.objects
            .filter(status__in=[NotificationStatus.PENDING, NotificationStatus.RETRYING],
                    updated_at__lt=now - grace)
            .values_list("pk", "status", "attempts", "updated_at"))
    for pk, status, attempts, updated_at in rows:
        next_try = updated_at + timedelta(
            seconds=backoff_seconds(attempts) if status == NotificationStatus.RETRYING else 0)
        if next_try + grace <= now:
            due.append(pk)
    if due:
        Notification.objects.filter(pk__in=due).update(updated_at=now)
        logger.warning("re-queuing %s notification(s) nobody was delivering", len(due),
                       extra={"notifications": due})
        for pk in due:
            _enqueue(pk)
    return due


@dataclass(frozen=True)
class DeliveryResult:
    notification_id: int
    status: str
    attempt: int
    error: str = ""
    retry_after: float | None = None  # the channel asked to wait at least this long

    @property
    def retry(self) -> bool:
        return self.status == NotificationStatus.RETRYING


def deliver(*, notification_id: int) -> DeliveryResult:
    """Make one try at delivering a notification and record it.

    A row already sent or failed is left alone (a redelivered task is a no-op).
    Raises Notification.DoesNotExist when the row is gone.
    """
    row = Notification.objects.get(pk=notification_id)
    if row.status in (NotificationStatus.SENT, NotificationStatus.FAILED):
        return DeliveryResult(row.pk, row.status, row.attempts, row.last_error)
    number = row.attempts + 1
    started = time.monotonic()
    error: TransportError | None = None
    channel = registry.channel(row.channel)
    if channel is None:
        error = TransportError(f"channel {row.channel} ({row.target}) is no longer configured", permanent=True)
    else:
        try:
            channel.transport.notify(Message(title=row.title, body=row.body))
        except TransportError as exc:
            error = exc
        except Exception as exc:  # a transport bug is recorded like any failure, and retried
            error = TransportError(f"{type(exc).__name__}: {exc}")
    duration_ms = int((time.monotonic() - started) * 1000)
    now = timezone.now()
    if error is None:
        status = NotificationStatus.SENT
    elif error.permanent or number >= max_attempts():
        status = NotificationStatus.FAILED
    else:
        status = NotificationStatus.RETRYING
    with transaction.atomic():
        NotificationAttempt.objects.create(
            notification=row, number=number, at=now, ok=error is None,
            permanent=bool(error and error.permanent), error=error.message if error else "",
            duration_ms=duration_ms,
        )
        Notification.objects.filter(pk=row.pk).update(
            attempts=number, status=status, last_error=error.message if error else "",
            sent_at=now if error is None else None, updated_at=now,
        )
    if error is not None:
        logger.warning("notification %s to %s failed (attempt %s, %s): %s", row.pk, row.channel, number,
                       status, error.message)
    return DeliveryResult(row.pk, status, number, error.message if error else "",
                          error.retry_after if error else None)


def on_event_committed(sender, event: Event, changed: bool = False, **kwargs) -> None:
    """Receiver for killswitch.runtime.hooks.event_committed. Never raises."""
    try:
        queue_for_event(event=event)
    except Exception:
        logger.error("could not queue notifications for event #%s", event.seq, exc_info=True)


def connect() -> None:
    from ..runtime.hooks import event_committed

    event_committed.connect(on_event_committed, dispatch_uid="killswitch.notifications.queue")
