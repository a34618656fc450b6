"""Connects the kill switch to the broker work.

The kill switch sends `event_recorded` inside the event's transaction and
`event_committed` after commit, for every event, whatever its source (admin, API,
CLI, Telegram, an out-of-band `redis-cli SET trading_switch` turned into an event by
the reconciler), so every transition to halt or kill gets its runs here: created with
the event (one transaction, so no crash can leave a halt without its runs), handed to
the Celery workers once it has committed.
"""

from __future__ import annotations

import logging

from django.dispatch import receiver

from killswitch.runtime.hooks import event_committed, event_recorded

from . import runs

logger = logging.getLogger("brokers")


def create_runs(*, event, changed: bool) -> None:
    """Inside the event's transaction: the runs of a halt or kill commit with it."""
    if changed:
        runs.insert_runs_for_new_event(event=event)  # decides which events get runs


@receiver(event_committed, dispatch_uid="brokers.start_runs")
def start_runs(sender, event, changed: bool, **kwargs) -> None:
    """After commit: publish the runs' tasks (creating the runs if the receiver above failed)."""
    if not changed:
        return
    started = runs.dispatch_runs_for_event(event=event)
    if not started:
        return
    logger.info("started %s broker run(s) for event #%s", len(started), event.seq,
                extra={"seq": event.seq, "runs": started})


event_recorded.connect(create_runs, dispatch_uid="brokers.create_runs")
