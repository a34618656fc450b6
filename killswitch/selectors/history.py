"""Reads of the audit log: filtered, newest first, keyset-paginated."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import QuerySet

from killswitch import domain as L
from killswitch.models import Event

MAX_PAGE = 500

# Events are numbered (seq) in the order they are written and stamped (created_at) under
# the same lock, by the clock of whichever host writes them. Those clocks are kept on NTP
# (the heartbeats need it too) and never disagree by anything near this bound, so time
# order and seq order never differ by more than it. That makes a time range a seq range,
# found with two seeks on the created_at index, and the newest-first scan on seq starts
# where the range ends instead of crossing every event outside it (measured with
# bench/bench_history.py: an old `until` over 1,000,000 events went from a scan of the whole
# log to a seek).
TIME_ORDER_SLACK = timedelta(hours=1)


def within(qs: QuerySet[Event], *, since: datetime | None = None, until: datetime | None = None) -> QuerySet[Event]:
    """`qs` narrowed to events stamped at or after `since` and before `until`, with the
    seq bounds those imply added, so that ordering by seq reads only the range.

    The bounds are exact as long as no event is stamped more than TIME_ORDER_SLACK
    earlier than one written before it: an event stamped at or after `until + slack`
    was written after every event stamped before `until`; one stamped before
    `since - slack` was written before every event stamped at or after `since`.
    """
    if since is not None:
        qs = qs.filter(created_at__gte=since)
        below = (Event.objects.filter(created_at__lt=since - TIME_ORDER_SLACK).order_by("-created_at")
                 .values_list("seq", flat=True).first())
        if below is not None:
            qs = qs.filter(seq__gt=below)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
        above = (Event.objects.filter(created_at__gte=until + TIME_ORDER_SLACK).order_by("created_at")
                 .values_list("seq", flat=True).first())
        if above is not None:
            qs = qs.filter(seq__lt=above)
    return qs


def history(*, scope: L.ScopeRef | None = None, action: str | None = None, actor: str | None = None,
            source: str | None = None, since: datetime | None = None, until: datetime | None = None,
            before_seq: int | None = None, limit: int = 50) -> list[Event]:
    """Events newest first. Keyset pagination on `seq` (pass the last seq seen as
    `before_seq`), so page 10,000 costs what page 1 costs; a time range costs what its
    own events cost, however long the log is (see `within`)."""
    qs: QuerySet[Event] = within(Event.objects.all(), since=since, until=until)
    if scope is not None:
        qs = qs.filter(scope_kind=scope.kind, scope_key=scope.key)
    if action:
        qs = qs.filter(action=action)
    if actor:
        qs = qs.filter(actor=actor)
    if source:
        qs = qs.filter(source=source)
    if before_seq is not None:
        qs = qs.filter(seq__lt=before_seq)
    return list(qs.order_by("-seq")[: max(1, min(limit, MAX_PAGE))])


def event_as_dict(event: Event) -> dict[str, Any]:
    entry = event.as_log_entry()
    entry.update({
        "timestamp": event.created_at,
        "requested_level": event.requested_level,
        "client_address": event.client_address,
        "hash": event.hash,
    })
    return entry
