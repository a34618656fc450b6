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
"""

from __future__ import annotations

import logging
import signal
import threading

from ..config import brokers_config
from ..runs import sweep_once

NAME = "sweep"
HELP = "Cancel working orders that appear in halted/killed scopes (runs until stopped)."

logger = logging.getLogger("brokers")


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
    if not options.get("once"):
        out.write(f"sweep loop: every {interval:g}s\n")
        out.flush()
    try:
        while True:
            try:
                report = sweep_once(adapters=adapters)
            except Exception:  # a database hiccup must not end the backstop
                logger.exception("sweep pass failed")
            else:
                for r in report.runs:
                    out.write(f"sweep run {r.pk}: {r.actions.count()} order(s) in {r.scope_label} "
                              f"({r.level}) account {r.account}: {r.state}\n")
                for run_id in report.resumed:
                    out.write(f"resumed run {run_id}\n")
                for error in report.errors:
                    err.write(f"sweep: {error}\n")
                out.flush()
            if options.get("once") or stop.wait(interval):
                break
    finally:
        for adapter in adapters.values():
            adapter.close()
    return 0
