"""Every update the bot receives, recorded before it is acted on.

Telegram redelivers an update until a getUpdates with a higher offset confirms it.
The bot confirms only after handling (killswitch.chat.poller), so a crash never loses
a command; this ledger makes the redelivery harmless:

- `admit` inserts the row (unique per bot and update id). A row already `done` is a
  duplicate and is skipped; a row left unfinished is an interrupted command.
- `acting` is committed just before the one service call, `acted` just after it with
  the audit event's seq and the reply, `finish` once the reply went out.
- On start, `unfinished` rows are the commands a crash interrupted: `outcome_of` says
  whether the interrupted service call committed, so the sender is told exactly what
  became of it, and nothing is executed a second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from killswitch.models import AuditHead, Event, Source, TelegramUpdate, UpdateState

ADMITTED, DUPLICATE, UNFINISHED = "admitted", "duplicate", "unfinished"
KEEP_DONE = timedelta(days=7)
MAX_TEXT = 4000


@dataclass(frozen=True)
class Incoming:
    """What the ledger keeps of one update."""

    bot_id: int
    update_id: int
    chat_id: int | None
    user_id: int | None
    message_id: int | None
    text: str
    sent_at: datetime | None


def admit(incoming: Incoming) -> tuple[str, TelegramUpdate]:
    """Record `incoming`. Returns (ADMITTED, new row), (DUPLICATE, done row) or
    (UNFINISHED, a row an earlier run left unfinished)."""
    try:
        with transaction.atomic():
            row = TelegramUpdate.objects.create(
                bot_id=incoming.bot_id, update_id=incoming.update_id, chat_id=incoming.chat_id,
                telegram_user_id=incoming.user_id, message_id=incoming.message_id,
                text=incoming.text[:MAX_TEXT], sent_at=incoming.sent_at, received_at=timezone.now())
        return ADMITTED, row
    except IntegrityError:
        row = TelegramUpdate.objects.get(bot_id=incoming.bot_id, update_id=incoming.update_id)
        return (DUPLICATE if row.state == UpdateState.DONE else UNFINISHED), row


def acting(row_id: int, *, actor_user_id: int | None) -> None:
    """Committed before the service call: a crash from here on is looked up, not repeated."""
    head = AuditHead.objects.filter(pk=1).values_list("last_seq", flat=True).first()
    TelegramUpdate.objects.filter(pk=row_id).update(
        state=UpdateState.ACTING, actor_user_id=actor_user_id, acting_at=timezone.now(), seq_before=head or 0)


def acted(row_id: int, *, event_seq: int | None, reply: str) -> None:
    TelegramUpdate.objects.filter(pk=row_id).update(state=UpdateState.ACTED, event_seq=event_seq,
                                                    reply=reply[:MAX_TEXT])


def finish(row_id: int) -> None:
    TelegramUpdate.objects.filter(pk=row_id).update(state=UpdateState.DONE, finished_at=timezone.now())


def unfinished(bot_id: int) -> list[TelegramUpdate]:
    """Rows a crash left behind, oldest first."""
    return list(TelegramUpdate.objects.filter(bot_id=bot_id).exclude(state=UpdateState.DONE)
                .order_by("received_at", "id"))


def outcome_of(row: TelegramUpdate) -> Event | None:
    """For a row interrupted while `acting`: the event its service call committed, or
    None when it committed nothing.

    The bot handles one update at a time and one poller holds the token, so the first
    Telegram event by the same user after the audit log's last seq at `acting` is that
    call's (seqs, unlike clocks, only grow).
    """
    if row.state != UpdateState.ACTING or row.seq_before is None:
        return None
    return (Event.objects.filter(source=Source.TELEGRAM, actor_user_id=row.actor_user_id,
                                 seq__gt=row.seq_before)
            .order_by("seq").first())


def prune(*, now: datetime | None = None) -> int:
    """Forget finished rows older than a week (a redelivery comes within seconds)."""
    cutoff = (now or timezone.now()) - KEEP_DONE
    deleted, _ = TelegramUpdate.objects.filter(state=UpdateState.DONE, finished_at__lt=cutoff).delete()
    return deleted
