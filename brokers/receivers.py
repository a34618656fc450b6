"""Connects the kill switch to the broker work.

The kill switch sends `event_committed` after commit for every event, whatever its
source (admin, API, CLI, Telegram, an out-of-band `redis-cli SET trading_switch`
turned into an event by the reconciler), so every transition to halt or kill gets
its runs here.
"""

from __future__ import annotations

import logging

from django.dispatch import receiver

from killswitch.signals import event_committed

from . import services

logger = logging.getLogger("brokers")


@receiver(event_committed, dispatch_uid="brokers.start_runs")
def start_runs(sender, event, changed: bool, **kwargs) -> None:
    if not changed:
        return
    runs = services.start_runs_for_event(event=event)  # decides which events get runs
    if not runs:
        return
    logger.info("started %s broker run(s) for event #%s", len(runs), event.seq,
                extra={"seq": event.seq, "runs": [r.pk for r in runs]})
