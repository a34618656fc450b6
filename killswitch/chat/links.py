"""Linking people: which Telegram account acts as which Django user (CLI, admin).

Guarantees: one Telegram account per user and one user per Telegram account (the
database enforces both); a link names who made it and when; every change is logged.
A link grants nothing by itself: commands act with the linked user's role.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from killswitch.models import TelegramLink

logger = logging.getLogger("killswitch.chat")

# Telegram user ids are positive and below 2**52 (Bot API: "at most 52 significant bits").
MAX_TELEGRAM_ID = 2**52


class LinkError(ValueError):
    """A link that cannot be made or removed; `message` says what was wrong and what is expected."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_telegram_user_id(value: Any) -> int:
    """A Telegram user id from text or a number. Raises LinkError saying what is expected."""
    text = str(value).strip()
    if not text.isdigit() or not 0 < int(text) < MAX_TELEGRAM_ID:
        raise LinkError(
            f"Telegram user id {value!r} is invalid; expected the person's numeric Telegram user id, "
            "a positive whole number (the bot tells it to anyone who sends it /start).")
    return int(text)


def _user(username: str) -> Any:
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise LinkError(f"No user named {username!r}; expected the username of an existing Django user.")
    return user


def link(*, username: str, telegram_user_id: Any, by: str) -> tuple[TelegramLink, int | None]:
    """Link `username` to a Telegram account (replacing the user's earlier link).

    Returns the link and the Telegram id it replaced (None if the user had none).
    Raises LinkError for an unknown user, a malformed id, or an id linked to someone else.
    """
    telegram_id = parse_telegram_user_id(telegram_user_id)
    user = _user(username)
    holder = TelegramLink.objects.filter(telegram_user_id=telegram_id).exclude(user=user).select_related("user").first()
    if holder is not None:
        raise LinkError(f"Telegram user {telegram_id} is already linked to {holder.user.get_username()}; "
                        f"unlink {holder.user.get_username()} first.")
    try:
        with transaction.atomic():
            row = TelegramLink.objects.select_for_update().filter(user=user).first()
            previous = row.telegram_user_id if row else None
            if row is None:
                row = TelegramLink(user=user)
            row.telegram_user_id, row.linked_at, row.linked_by = telegram_id, timezone.now(), by[:150]
            row.save()
    except IntegrityError:  # linked to someone else meanwhile
        raise LinkError(f"Telegram user {telegram_id} is already linked to another user.") from None
    logger.info("telegram link: %s -> %s", username, telegram_id,
                extra={"user": username, "telegram_user_id": telegram_id, "previous": previous, "by": by})
    return row, previous


def unlink(*, username: str, by: str) -> int | None:
    """Remove `username`'s link. Returns the Telegram id it had (None: there was none).
    Raises LinkError for an unknown user."""
    user = _user(username)
    row = TelegramLink.objects.filter(user=user).first()
    if row is None:
        return None
    row.delete()
    logger.info("telegram unlink: %s (was %s)", username, row.telegram_user_id,
                extra={"user": username, "telegram_user_id": row.telegram_user_id, "by": by})
    return row.telegram_user_id


def all_links() -> list[TelegramLink]:
    return list(TelegramLink.objects.select_related("user").order_by("user__username"))


def linked_user(telegram_user_id: int) -> Any:
    """The Django user linked to this Telegram account, or None."""
    row = TelegramLink.objects.select_related("user").filter(telegram_user_id=telegram_user_id).first()
    return row.user if row else None
