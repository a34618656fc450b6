"""Hooks for what happens when a kill switch event is recorded.

Both signals carry `event` (killswitch.models.Event) and `changed` (True when a
scope's level changed).

`event_recorded` is sent inside the event's transaction, right after the event row
is written and while the audit chain's lock is held: for rows that must commit
together with the event or not at all (the broker runs of a halt or kill, so no
crash between commit and a later hook can leave a halt without its runs). Each
receiver runs in its own savepoint; one that raises is rolled back and logged, and
the event still commits. Keep receivers to a few inserts: every transition waits.

`event_committed` is sent once per event, after its transaction commits, also with
`snapshot` (distribution.publish.Snapshot: every scope as read after the commit and just
published to Redis; None when nothing changed or it could not be read). Broker
task dispatch, live dashboard pushes and notifications connect to it, so the switch
itself never waits on them longer than a message send and never depends on them
succeeding.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, connection, transaction
from django.dispatch import Signal

logger = logging.getLogger("killswitch")


class InTransactionHook:
    """A signal sent inside a transaction: each receiver runs in its own savepoint, so
    a receiver that fails is rolled back alone (on PostgreSQL a failed statement would
    otherwise abort the whole transaction, the event with it) and the error logged.

    If the savepoint itself cannot be rolled back (the connection or the disk failed),
    the transaction is lost: DatabaseError is raised so that the caller never reports a
    change that did not commit.

    Receivers are called as `receiver(event=..., changed=...)`; `dispatch_uid` makes
    connecting idempotent, as with Django's signals.
    """

    def __init__(self) -> None:
        self._receivers: dict[str, Callable[..., Any]] = {}

    def connect(self, receiver: Callable[..., Any], *, dispatch_uid: str) -> None:
        self._receivers[dispatch_uid] = receiver

    def disconnect(self, *, dispatch_uid: str) -> None:
        self._receivers.pop(dispatch_uid, None)

    def send(self, **kwargs: Any) -> None:
        for uid, receiver in list(self._receivers.items()):
            try:
                with transaction.atomic():
                    receiver(**kwargs)
            except Exception as exc:
                if connection.closed_in_transaction or transaction.get_rollback():
                    # The savepoint could not be rolled back alone (the connection dropped,
                    # the disk is full): the whole transaction is lost. Swallowing this
                    # would let the caller report a change that never committed; raise,
                    # so the caller takes its database-failure path.
                    raise DatabaseError(
                        f"in-transaction receiver {uid} failed and took the transaction with it: {exc}"
                    ) from exc
                logger.exception("in-transaction receiver %s failed; rolled back alone", uid)


event_recorded = InTransactionHook()
event_committed = Signal()
# Sent by the reconciler after each heartbeat it writes (`version`): the open Risk pages'
# liveness signal (killswitch.web.live), on which each page re-checks its person's roles.
heartbeat_sent = Signal()
