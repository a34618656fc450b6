"""The broker runs on the open Risk pages, live (connected in apps.py): each run that
changed, with each order's outcome, is pushed as `killswitch.web.live.push("run")`.

Where the changes are found: the runs' code writes its progress with `UPDATE`s and
one bulk upsert per batch of cancels (brokers/runs: lease.touch, cancelling), which
send no model signal. So this module looks, at every reconciler heartbeat
(`kill_switch.heartbeat_interval_seconds`, 0.5 s), at the runs that are unfinished or
changed within the last minute, compares a small signature of each (state, updated_at,
attempts, the number of actions and their newest update) with the one it pushed, and
pushes those that differ. One aggregate query per heartbeat, in the reconciler (one
process per installation: the leader sends the heartbeat), whichever process made the
change: a Celery worker, the sweep, a run that failed. A person sees a step within a
heartbeat of its commit.

The row is the Risk page's runs panel's shape (`run_row`, also used by panels.py); a
run with many actions carries the first MAX_ACTIONS and a count per outcome.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

from django.db.models import Count, Max, Q
from django.utils import timezone

from killswitch import domain as L

from .models import TERMINAL_STATES, BrokerAction, BrokerRun
from .selectors import instrument_of, plain

logger = logging.getLogger("brokers")

# Finished runs are followed this long after their last change (then they cannot change).
WINDOW = timedelta(seconds=60)
# Actions shown per run; the rest are counted by outcome (`manage.py killswitch runs --id N`).
MAX_ACTIONS = 100


def _iso(value: Any) -> str | None:
    return value.isoformat() if value else None


def run_row(run: BrokerRun, actions: list[BrokerAction], outcomes: dict[str, int] | None = None) -> dict[str, Any]:
    """One run as the Risk page draws it, JSON-ready. `actions` are the ones shown;
    `outcomes` (outcome -> count over every action) defaults to theirs."""
    counts = outcomes if outcomes is not None else _count(actions)
    return {
        "id": run.pk, "event_seq": run.event_seq, "kind": run.kind,
        "scope": L.label(run.scope_kind, run.scope_key) if run.scope_kind in L.SCOPE_KINDS else run.scope_kind,
        "level": run.level, "account": run.account, "broker": run.broker, "state": run.state, "error": run.error,
        "notes": run.notes, "attempts": run.attempts, "created_at": _iso(run.created_at),
        "updated_at": _iso(run.updated_at), "finished_at": _iso(run.finished_at),
        "actions_total": sum(counts.values()), "outcomes": counts,
        "actions": [
            {"action": a.action, "account": a.account, "broker_order_id": a.broker_order_id,
             # The page shows `symbol`: the whole instrument, so an option never reads as its stock.
             "symbol": instrument_of(a).label or a.symbol, "instrument": instrument_of(a).as_dict(),
             "side": a.side, "quantity": plain(a.quantity),
             "filled_quantity": plain(a.filled_quantity), "outcome": a.outcome, "detail": a.detail}
            for a in actions
        ],
    }


def _count(actions: list[BrokerAction]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for a in actions:
        counts[a.outcome] = counts.get(a.outcome, 0) + 1
    return counts


def read_run(run_id: int) -> dict[str, Any] | None:
    """The run's row with its first MAX_ACTIONS actions and every action counted."""
    run = BrokerRun.objects.filter(pk=run_id).first()
    if run is None:
        return None
    actions = list(BrokerAction.objects.filter(run_id=run_id).order_by("pk")[:MAX_ACTIONS])
    outcomes = dict(BrokerAction.objects.filter(run_id=run_id).order_by().values("outcome")
                    .annotate(n=Count("pk")).values_list("outcome", "n"))
    return run_row(run, actions, outcomes)


class RunWatcher:
    """Finds the runs that changed since it last looked (see the module docstring)."""

    def __init__(self) -> None:
        self.pushed: dict[int, tuple[Any, ...]] = {}
        self.lock = threading.Lock()

    def changed(self) -> list[int]:
        """Ids of the runs whose signature differs from the one last returned, oldest first."""
        since = timezone.now() - WINDOW
        rows = (BrokerRun.objects
                .filter(Q(updated_at__gte=since) | Q(created_at__gte=since) | ~Q(state__in=TERMINAL_STATES))
                .annotate(n=Count("actions"), last=Max("actions__updated_at"))
                .order_by("pk").values_list("pk", "state", "updated_at", "attempts", "n", "last"))
        with self.lock:
            current = {pk: tuple(sig) for pk, *sig in rows}
            changed = [pk for pk, sig in current.items() if self.pushed.get(pk) != sig]
            self.pushed = current  # runs out of the window are forgotten
        return changed


watcher = RunWatcher()


def push_changed_runs(sender: Any = None, **kwargs: Any) -> int:
    """Receiver for killswitch.runtime.hooks.heartbeat_sent: push every run that changed.
    Returns how many were pushed. Never raises (a failed read is logged; the next
    heartbeat looks again, and a page re-reads everything when it reconnects)."""
    from killswitch.web import live

    try:
        pushed = 0
        for run_id in watcher.changed():
            row = read_run(run_id)
            if row is not None and live.push("run", {"run": row}):
                pushed += 1
        return pushed
    except Exception:
        logger.warning("broker runs could not be pushed to the Risk pages", exc_info=True)
        watcher.pushed.clear()  # look at everything again next time
        return 0


def connect() -> None:
    """Follow the reconciler's heartbeat (idempotent)."""
    from killswitch.runtime.hooks import heartbeat_sent

    heartbeat_sent.connect(push_changed_runs, dispatch_uid="brokers.live.push_runs")
