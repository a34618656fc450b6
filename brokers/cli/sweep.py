"""`manage.py killswitch sweep [--once] [--interval S]`: the sweep loop.

While a scope is at halt or kill, any working order that appears in it anyway (a
process ignoring the switch, a manual order) is cancelled within a few seconds and
recorded as a sweep run. The loop also re-enqueues runs whose worker died.

Why a dedicated loop process and not Celery beat + a periodic task: the sweep must
keep running when the Celery queue is busy (a run cancelling 10,000 orders, or a
worker stuck on a broker) - it is the backstop for exactly those moments; it keeps
its broker sessions open between passes (IB: its own client id, no reconnect every
second); and it needs no extra schedule storage. `make run` starts it beside the
worker; it is stateless, so restarting it is always safe.

Start it on several hosts for availability: the loop holds the `sweep` lease
(killswitch.runtime.leadership), so one process sweeps (two would cancel the same
orders twice) and the others take over within 3 s when it stops or hangs.
"""

from __future__ import annotations

import logging
import signal
import threading

from killswitch.runtime.leadership import Lease, run_as_leader

from ..config import brokers_config
from ..runs import sweep_once

NAME = "sweep"
HELP = "Cancel working orders that appear in halted/killed scopes (runs until stopped)."

logger = logging.getLogger("brokers")
LEASE = "sweep"
LEASE_TTL_SECONDS = 2.0
# A pass cancelling thousands of orders takes a while; one stuck longer than this lets
# the lease lapse so that a healthy sweep on another host takes over.
MAX_PASS_SECONDS = 60.0


def add_arguments(parser) -> None:
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    parser.add_argument("--interval", type=float, help="seconds between passes (brokers.sweep.interval_seconds)")


def run(options, out, err, stop: threading.Event | None = None) -> int:
    interval = options.get("interval") or brokers_config().sweep.interval_seconds
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    adapters: dict = {}

    def one_pass() -> None:
        try:
            report = sweep_once(adapters=adapters, still_leading=lease.renew)
        except Exception:  # a database hiccup must not end the backstop
            logger.exception("sweep pass failed")
            return
        for r in report.runs:
            out.write(f"sweep run {r.pk}: {r.actions.count()} order(s) in {r.scope_label} "
                      f"({r.level}) account {r.account}: {r.state}\n")
        for run_id in report.resumed:
            out.write(f"resumed run {run_id}\n")
        for error in report.errors:
            err.write(f"sweep: {error}\n")
        out.flush()

    lease = Lease(LEASE, ttl=LEASE_TTL_SECONDS)
    try:
        if options.get("once"):
            if not lease.hold():
                err.write("sweep --once: not run: another sweep holds the lease, or Redis does not answer\n")
                return 1
            one_pass()
            lease.release()
            return 0
        out.write(f"sweep loop: every {interval:g}s (lease {lease.token})\n")
        out.flush()
        run_as_leader(lease, one_pass, interval=interval, stop=stop, max_round=MAX_PASS_SECONDS)
    finally:
        for adapter in adapters.values():
            adapter.close()
    return 0
