"""A worker holds a run through a lease (renewed at every step and by a background
thread during long steps), so two workers never act on one run at once and a dead
worker's run is taken over once its lease runs out."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from datetime import timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from ..config import brokers_config
from ..models import TERMINAL_STATES, BrokerRun

logger = logging.getLogger("brokers")


def worker_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def claim(run_id: int, token: str, *, seconds: float | None = None) -> tuple[bool, BrokerRun | None]:
    """Take run `run_id` unless a live lease of someone else holds it (or it ended).
    Returns (claimed, the run as it is now). `seconds`: a shorter lease (the sweep
    holds runs only while it cancels beside them)."""
    now = timezone.now()
    lease = timedelta(seconds=brokers_config().runs.lease_seconds if seconds is None else seconds)
    claimed = (
        BrokerRun.objects.filter(pk=run_id)
        .exclude(state__in=TERMINAL_STATES)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now) | Q(lease_owner=token))
        # updated_at is left alone: it says when a worker last did something (the sweep's
        # stall alert reads it), and a claim alone is no work.
        .update(lease_owner=token, lease_until=now + lease)
    )
    return bool(claimed), BrokerRun.objects.filter(pk=run_id).first()


def touch(run: BrokerRun, **fields: Any) -> None:
    """Save `fields` and renew the lease (only while this worker still holds it)."""
    now = timezone.now()
    fields.update(updated_at=now, lease_until=now + timedelta(seconds=brokers_config().runs.lease_seconds))
    BrokerRun.objects.filter(pk=run.pk, lease_owner=run.lease_owner).update(**fields)
    for name, value in fields.items():
        setattr(run, name, value)


class LeaseKeeper:
    """Renews the run's lease from a background thread while a step runs, so a long
    step (1,000 IB cancels at the pacing limit) never looks like a dead worker. If the
    worker process dies, the thread dies with it and the lease runs out."""

    def __init__(self, run: BrokerRun, *, seconds: float | None = None) -> None:
        self.run_id, self.owner = run.pk, run.lease_owner
        self.seconds = seconds
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"lease-{run.pk}", daemon=True)

    def _loop(self) -> None:
        from django.db import connection

        seconds = self.seconds or brokers_config().runs.lease_seconds
        try:
            while not self.stop.wait(seconds / 3):
                BrokerRun.objects.filter(pk=self.run_id, lease_owner=self.owner).update(
                    lease_until=timezone.now() + timedelta(seconds=seconds))
        except Exception:  # the main step's own touches still renew it
            logger.warning("lease renewal for run %s failed", self.run_id, exc_info=True)
        finally:
            connection.close()

    def __enter__(self) -> LeaseKeeper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def release(run: BrokerRun) -> None:
    BrokerRun.objects.filter(pk=run.pk, lease_owner=run.lease_owner).update(lease_owner="", lease_until=None)


def note(run: BrokerRun, text: str) -> None:
    if text not in run.notes:
        run.notes = (run.notes + "\n" + text).strip()
        touch(run, notes=run.notes)
