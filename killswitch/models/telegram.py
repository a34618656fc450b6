"""Telegram: people linked to their Telegram user id, every update the bot received,
and kill/resume confirmations waiting for their typed word.

- `TelegramLink`: a command from Telegram acts as the linked Django user, with that
  user's role; an unlinked sender is refused (killswitch.chat).
- `TelegramUpdate`: one row per update, written before the update is acted on. A
  redelivered update finds its row and never acts twice; a row left unfinished by a
  crash is found on restart and its sender told what became of the command.
- `TelegramConfirmation`: a /kill or /resume waiting for the same person's KILL or
  RESUME; kept in the database so a restart neither loses nor doubles it.

Written by killswitch.chat only.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

# What a person types to confirm (the dashboard's words, as the seed has them).
KILL_WORD, RESUME_WORD = "KILL", "RESUME"


class TelegramLink(models.Model):
    """A Django user and the Telegram account that may act as them."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="telegram_link")
    telegram_user_id = models.PositiveBigIntegerField(
        unique=True, help_text="The person's numeric Telegram user id (the bot tells it on /start).")
    linked_at = models.DateTimeField(default=timezone.now)
    linked_by = models.CharField(max_length=150, help_text="Who linked it: a user, or cli:<login>.")

    class Meta:
        ordering = ["user__username"]
        verbose_name = "Telegram link"

    def __str__(self) -> str:
        return f"{self.user} ↔ telegram:{self.telegram_user_id}"


class UpdateState(models.TextChoices):
    RECEIVED = "received", "Received, not acted on yet"
    ACTING = "acting", "Service call in progress"
    ACTED = "acted", "Service answered, reply not confirmed"
    DONE = "done", "Done"


class TelegramUpdate(models.Model):
    """One update received by the bot. (bot_id, update_id) is unique: Telegram numbers
    updates per bot, and a redelivery carries the same number."""

    bot_id = models.BigIntegerField()
    update_id = models.BigIntegerField()
    chat_id = models.BigIntegerField(null=True, blank=True)
    telegram_user_id = models.BigIntegerField(null=True, blank=True)
    message_id = models.BigIntegerField(null=True, blank=True)
    text = models.TextField(blank=True, default="", help_text="The message text or the button's data.")
    sent_at = models.DateTimeField(null=True, blank=True, help_text="The message's date (Telegram's clock).")
    received_at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=16, choices=UpdateState.choices, default=UpdateState.RECEIVED)
    # Who the service call acted as, and the audit log's last seq when it started: what
    # a restart needs to find out whether a command interrupted mid-call was applied.
    actor_user_id = models.BigIntegerField(null=True, blank=True)
    acting_at = models.DateTimeField(null=True, blank=True)
    seq_before = models.PositiveBigIntegerField(null=True, blank=True)
    event_seq = models.PositiveBigIntegerField(null=True, blank=True)
    reply = models.TextField(blank=True, default="")
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["bot_id", "update_id"], name="telegramupdate_bot_update_unique")]
        indexes = [models.Index(fields=["bot_id", "state"], name="telegramupdate_bot_state")]

    def __str__(self) -> str:
        return f"update {self.update_id} from {self.telegram_user_id}: {self.state}"


class ConfirmationState(models.TextChoices):
    PENDING = "pending", "Waiting for the typed word"
    CONFIRMED = "confirmed", "Confirmed"
    REFUSED = "refused", "Wrong word"
    EXPIRED = "expired", "Not confirmed in time"
    CANCELLED = "cancelled", "Cancelled"
    SUPERSEDED = "superseded", "Replaced by a newer request"


class TelegramConfirmation(models.Model):
    """A /kill or /resume waiting for its requester's KILL / RESUME (or button)."""

    token = models.CharField(max_length=32, unique=True, help_text="In the buttons' callback data.")
    action = models.CharField(max_length=16, help_text="activate (kill) or deactivate (resume).")
    level = models.CharField(max_length=16)
    scope = models.CharField(max_length=80)
    reason = models.TextField(blank=True, default="")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    telegram_user_id = models.BigIntegerField()
    chat_id = models.BigIntegerField()
    request_message_id = models.BigIntegerField(null=True, blank=True)
    prompt_message_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    state = models.CharField(max_length=16, choices=ConfirmationState.choices, default=ConfirmationState.PENDING)
    resolved_at = models.DateTimeField(null=True, blank=True)
    event_seq = models.PositiveBigIntegerField(null=True, blank=True)
    detail = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["chat_id", "telegram_user_id", "state"], name="telegramconf_chat_user"),
            models.Index(fields=["state", "expires_at"], name="telegramconf_state_expires"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.scope} by {self.user}: {self.state}"

    @property
    def word(self) -> str:
        """What the requester must type: KILL for a kill, RESUME for a resume."""
        return KILL_WORD if self.action == "activate" else RESUME_WORD
