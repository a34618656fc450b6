"""Reads for the operators' metrics (killswitch.ops.metrics): counts derived from the
database at scrape time, identical whichever server process answers the scrape."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence

from django.db.models import Count, Max, Q, Sum

from killswitch.models import Event, Notification, NotificationStatus, Propagation

_tally_lock = threading.Lock()
# (seq, hash) of the last event counted, and the counts up to it. Events are append-only
# (the ORM and database triggers refuse UPDATE and DELETE), so counts up to a seq never
# change: each scrape only counts the events after it. The hash of that event is checked
# on every scrape, so a database replaced under the process (a restore, a test flush)
# is counted again from the start instead of trusted.
_tally: dict[str, object] = {"seq": 0, "hash": "", "counts": Counter()}


def event_counts() -> dict[tuple[str, str, str], int]:
    """Audit events per (action, outcome, source), every event ever recorded.

    The counts equal a GROUP BY over the whole table, but cost one only on the first
    call of a process; later calls read the events recorded since (an index range on
    seq)."""
    with _tally_lock:
        seq, digest, counts = _tally["seq"], _tally["hash"], _tally["counts"]
        if seq and Event.objects.filter(seq=seq).values_list("hash", flat=True).first() != digest:
            seq, counts = 0, Counter()
        top = Event.objects.aggregate(top=Max("seq"))["top"] or 0
        if top < seq:  # fewer events than counted: another database
            seq, counts = 0, Counter()
        if top > seq:
            counts = Counter(counts)
            rows = (Event.objects.filter(seq__gt=seq, seq__lte=top).order_by()
                    .values_list("action", "outcome", "source").annotate(n=Count("id")))
            for action, outcome, source, n in rows:
                counts[(action, outcome, source)] += n
            digest = Event.objects.filter(seq=top).values_list("hash", flat=True).first() or ""
            _tally.update(seq=top, hash=digest, counts=counts)
        return dict(counts)


def propagation_histogram(buckets: Sequence[float]) -> tuple[list[tuple[float, int]], float, int]:
    """(cumulative count per upper bound, sum, count) of the seconds from each applied
    change to the last acknowledgement of the processes connected at the time, over the
    changes every such process acknowledged (complete; a late one shows as a late client)."""
    done = Propagation.objects.filter(complete=True, seconds_to_last_ack__isnull=False)
    figures = done.aggregate(
        total=Sum("seconds_to_last_ack"), n=Count("id"),
        **{f"le_{i}": Count("id", filter=Q(seconds_to_last_ack__lte=bound)) for i, bound in enumerate(buckets)})
    cumulative = [(bound, figures[f"le_{i}"]) for i, bound in enumerate(buckets)]
    return cumulative, float(figures["total"] or 0.0), figures["n"]


def notification_outcomes() -> dict[str, int]:
    """Deliveries that ended, per outcome (`sent`, `failed`): both are final."""
    counts = {NotificationStatus.SENT.value: 0, NotificationStatus.FAILED.value: 0}
    rows = (Notification.objects.filter(status__in=list(counts)).order_by()
            .values_list("status").annotate(n=Count("id")))
    counts.update({status: n for status, n in rows})
    return counts
