"""The broker work: which runs a transition starts (planning), what a run does
(execution, with its lease; cancelling; closing) and the sweep that catches orders
placed anyway.

A run (one per account in scope, per transition to halt or kill):
    pending -> cancelling -> [kill: closing] -> verifying -> completed
                                                            \\-> failed (+ alert event)
Each round cancels every working order in scope, for kill closes every position in
scope at market, then re-reads the broker. A run completes only when the re-read
shows no working order in scope (and, for kill, no position): an unverified run is
never reported as done.

Idempotency (a retry, a redelivered message or a restarted worker repeats a step):
- BrokerAction is unique per (run, key): a cancel's key is the broker order id, a
  close's key is its client reference.
- A closing order's action row, with its client reference ("ks-close-<run>-<symbol>-<n>"),
  is committed BEFORE the order is sent. A later attempt first resolves every open
  close action at the broker by that reference and sends a new closing order only
  when none is working or unknown, for the quantity a fresh position read shows.
  The paper broker also refuses a second order with the same reference.
- A worker holds a run through a lease (renewed at every step); a second worker
  waits for it to expire, so two workers never act on one run at once.
"""

from __future__ import annotations

from .execution import StepResult, execute_run, fail_run
from .planning import (
    accounts_in_scope,
    create_runs_for_event,
    dispatch_runs_for_event,
    enqueue_run,
    insert_runs_for_new_event,
    start_runs_for_event,
)
from .sweep import SweepReport, ensure_runs_for_missed_events, resume_stale_runs, sweep_once

__all__ = [
    "StepResult", "SweepReport", "accounts_in_scope", "create_runs_for_event", "dispatch_runs_for_event",
    "enqueue_run", "ensure_runs_for_missed_events", "execute_run", "fail_run", "insert_runs_for_new_event",
    "resume_stale_runs", "start_runs_for_event", "sweep_once",
]
