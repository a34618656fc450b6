"""Kill and resume requests waiting for their requester's typed KILL / RESUME (or the
confirm button), kept in the database: a restart neither loses nor doubles one.

Guarantees:
- At most one pending request per person and chat: a newer one supersedes it.
- `claim` moves a request from pending to confirmed under a row lock, once: a double
  tap, a redelivered update or a second instance cannot act on it twice.
- A request not confirmed within `confirm_timeout_seconds` is expired by `expire_due`
  (the bot's sweeper) and the unconfirmed attempt is audited as refused.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from killswitch import services
from killswitch.models import ConfirmationState, Source, TelegramConfirmation

State = ConfirmationState
OK, EXPIRED = "ok", "expired"
# How long after it ended a request still explains a late KILL ("it expired at ...").
REMEMBER = timedelta(minutes=10)


def open_request(*, action: str, level: str, scope: str, reason: str, user: Any, telegram_user_id: int,
                 chat_id: int, request_message_id: int | None, timeout_seconds: float,
                 ) -> tuple[TelegramConfirmation, list[TelegramConfirmation]]:
    """A new pending request, and the requester's earlier pending ones in this chat,
    now superseded (their prompts need editing)."""
    now = timezone.now()
    with transaction.atomic():
        earlier = list(TelegramConfirmation.objects.select_for_update().select_related("user").filter(
            chat_id=chat_id, telegram_user_id=telegram_user_id, state=State.PENDING))
        for row in earlier:
            row.state, row.resolved_at, row.detail = State.SUPERSEDED, now, "replaced by a newer request"
            row.save(update_fields=["state", "resolved_at", "detail"])
        row = TelegramConfirmation.objects.create(
            token=secrets.token_hex(8), action=action, level=level, scope=scope, reason=reason, user=user,
            telegram_user_id=telegram_user_id, chat_id=chat_id, request_message_id=request_message_id,
            created_at=now, expires_at=now + timedelta(seconds=timeout_seconds))
    return row, earlier


def set_prompt(pk: int, message_id: int) -> None:
    TelegramConfirmation.objects.filter(pk=pk).update(prompt_message_id=message_id)


def by_token(token: str) -> TelegramConfirmation | None:
    return TelegramConfirmation.objects.select_related("user").filter(token=token).first()


def for_prompt(chat_id: int, message_id: int) -> TelegramConfirmation | None:
    """The request whose prompt is this bot message (a reply to it confirms)."""
    return (TelegramConfirmation.objects.select_related("user")
            .filter(chat_id=chat_id, prompt_message_id=message_id).first())


def latest(chat_id: int, telegram_user_id: int, *, now: datetime | None = None) -> TelegramConfirmation | None:
    """This person's latest request in this chat: pending, or ended in the last minutes."""
    now = now or timezone.now()
    return (TelegramConfirmation.objects.select_related("user")
            .filter(chat_id=chat_id, telegram_user_id=telegram_user_id, created_at__gte=now - REMEMBER)
            .order_by("-created_at", "-id").first())


def claim(pk: int, *, now: datetime | None = None) -> tuple[str, TelegramConfirmation]:
    """Confirm a pending request, once. Returns (OK, row) for the one caller that moved
    it to confirmed; (EXPIRED, row) when its time ran out (it is marked expired);
    otherwise (its state, row) — it was confirmed, refused or cancelled before."""
    now = now or timezone.now()
    with transaction.atomic():
        row = TelegramConfirmation.objects.select_for_update().select_related("user").get(pk=pk)
        if row.state != State.PENDING:
            return row.state, row
        if now > row.expires_at:
            _expire(row, now)
            return EXPIRED, row
        row.state, row.resolved_at = State.CONFIRMED, now
        row.save(update_fields=["state", "resolved_at"])
    return OK, row


def settle(pk: int, *, state: str, detail: str = "", event_seq: int | None = None) -> bool:
    """End a pending request (wrong word, cancel), or note a confirmed one's outcome.
    Returns False when the request was no longer pending (for a wrong word or cancel)."""
    now = timezone.now()
    if state == State.CONFIRMED:
        TelegramConfirmation.objects.filter(pk=pk).update(detail=detail[:2000], event_seq=event_seq)
        return True
    return bool(TelegramConfirmation.objects.filter(pk=pk, state=State.PENDING).update(
        state=state, resolved_at=now, detail=detail[:2000], event_seq=event_seq))


def timeout_message(row: TelegramConfirmation) -> str:
    seconds = round((row.expires_at - row.created_at).total_seconds())
    return (f"Not confirmed: {row.word} was not typed by {row.user.get_username()} within {seconds} s "
            "of the request. Nothing was done.")


def _expire(row: TelegramConfirmation, now: datetime) -> None:
    """Mark expired and audit the unconfirmed attempt (inside the caller's transaction)."""
    error = services.record_refusal(
        attempted=row.action, scope=row.scope, actor=row.user, source=Source.TELEGRAM,
        error=services.InvalidRequest(timeout_message(row), field="confirm"), reason=row.reason,
        requested_level=row.level)
    row.state, row.resolved_at, row.detail = State.EXPIRED, now, error.message
    row.event_seq = error.seq
    row.save(update_fields=["state", "resolved_at", "detail", "event_seq"])


def expire_due(*, now: datetime | None = None) -> list[TelegramConfirmation]:
    """Expire every pending request past its time; returns them (their prompts need editing)."""
    now = now or timezone.now()
    expired = []
    for pk in TelegramConfirmation.objects.filter(state=State.PENDING, expires_at__lt=now).values_list("pk", flat=True):
        with transaction.atomic():
            row = TelegramConfirmation.objects.select_for_update().select_related("user").get(pk=pk)
            if row.state == State.PENDING:  # a claim may have won meanwhile
                _expire(row, now)
                expired.append(row)
    return expired
