"""The broker runs panel of the Risk page (registered in apps.py): the latest runs with
each order's outcome, in the row shape the live pushes use (brokers/live.py)."""

from __future__ import annotations

from typing import Any

from .live import read_run
from .models import BrokerRun

RECENT_RUNS = 5


def recent_runs() -> list[dict[str, Any]]:
    """The latest broker runs with their per-order actions (the first live.MAX_ACTIONS of
    each, every action counted by outcome), JSON-ready."""
    ids = BrokerRun.objects.order_by("-created_at", "-pk").values_list("pk", flat=True)[:RECENT_RUNS]
    return [row for pk in ids if (row := read_run(pk)) is not None]
