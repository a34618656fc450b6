"""Models for notification deliveries (Telegram, apprise URLs).

One `Notification` per (event, channel): what was to be sent where, and how it
ended. One `NotificationAttempt` per try, with its error, so a delivery that
needed three tries shows all three. Written by killswitch.notifications.services only.
Channel URLs are never stored whole: they carry secrets (bot tokens, passwords);
`target` is apprise's privacy-masked form.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RETRYING = "retrying", "Retrying"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class Notification(models.Model):
    """One event to be delivered to one channel."""

    event = models.ForeignKey("killswitch.Event", on_delete=models.PROTECT, related_name="notifications")
    channel = models.CharField(max_length=64, help_text="Stable channel id from the registry, e.g. telegram, apprise:1a2b3c4d5e6f.")
    kind = models.CharField(max_length=16, help_text="Transport kind: telegram, apprise.")
    target = models.CharField(max_length=300, blank=True, default="", help_text="Where it goes, secrets masked.")
    title = models.CharField(max_length=200)
    body = models.TextField()
    status = models.CharField(max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["event", "channel"], name="notification_event_channel_unique"),
        ]
        indexes = [models.Index(fields=["status", "created_at"], name="notification_status_created")]

    def __str__(self) -> str:
        return f"#{self.event_id} → {self.channel}: {self.status}"


class NotificationAttempt(models.Model):
    """One try to deliver a notification, successful or not."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="attempt_rows")
    number = models.PositiveIntegerField()
    at = models.DateTimeField(default=timezone.now)
    ok = models.BooleanField(default=False)
    permanent = models.BooleanField(default=False, help_text="The error says retrying cannot help.")
    error = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["notification_id", "number"]
        constraints = [
            models.UniqueConstraint(fields=["notification", "number"], name="notification_attempt_unique"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number}: {'ok' if self.ok else self.error[:60]}"
