"""The yearly kill-switch drill (`manage.py killswitch drill`), safe to run any day.

What it proves, on paper accounts (or, named with --account, MetaTrader 5 demo
accounts: the broker side decides, see hooks), with real processes:
1. an activation of `kill` on `account:<drill account>` reaches every trading process
   of that account (each process acknowledges the new state version) within the
   propagation bound, and within `kill_switch.ack_timeout_seconds`;
2. every such process exits with code 1, as the client library promises on kill;
3. the broker run cancels every working order and closes every position of the
   account, verified at the (paper) broker, and ends `completed`;
4. a resume inside the (shortened) cooldown is refused with the seed's message and
   recorded as a cooldown violation; a resume after it is accepted;
5. the audit hash chain still verifies.

Safety (why it can run on a live installation):
- It never touches the global scope, nor any scope but `account:<A>` of the drill's
  accounts, and every one of them must be one the broker side allows: an account of
  the paper broker (`brokers.paper.accounts`), or an MT5 account its terminal reports
  as demo. Anything else is refused before anything happens.
- With PAPER_ONLY=false (a live installation) the accounts must be named with
  `--account`: the operator says in writing which paper accounts may be killed.
- The default account is a fixed one, `DRILL01`, reset at every drill. A fixed name
  and not one per run: broker accounts are a static, validated list in
  risk_limits.yaml that the Celery worker and the sweep read at start-up, so a fresh
  name per drill would be unknown to them (its run would fail "not configured") and
  would leave one more scope row behind every year. Nothing but the drill trades on
  DRILL01, so resetting it (cancel what is left, set the drill's positions) harms
  no one. It must be listed under `brokers.paper.accounts`.
- The cooldown is shortened with `services.activate(drill_cooldown_minutes=...)`,
  which can only shorten the policy's cooldown and says so on the event.

Services: the drill needs the reconciler (heartbeat, acknowledgement ingestion) and
a Celery worker (the broker run). It looks for them (a fresh heartbeat in Redis; a
worker answering a Celery ping) and, with `start_services` (the default), starts
the missing ones for the drill's duration and stops them at the end; otherwise it
refuses with a message naming what is missing. A trading process that cannot reach
a reconciler reads `halt` (fails closed), so a drill without one would prove nothing.

Modules: plan (inputs, accounts, scopes checked before anything happens), processes
(services and trading clients), run (the sequence), measure (the figures, pure
functions of what was recorded), report (JSON and HTML), hooks (the broker side,
registered by the brokers app).
"""

from __future__ import annotations

from .plan import DRILL_ACCOUNT, Bounds, DrillError, DrillRefused
from .run import run_drill

__all__ = ["DRILL_ACCOUNT", "Bounds", "DrillError", "DrillRefused", "run_drill"]
