from __future__ import annotations

import signal
import threading

from ..distribution.reconciler import Reconciler

NAME = "reconcile"
HELP = ("Run the reconciler: keep Redis equal to the database, audit out-of-band writes, heartbeat. "
        "Start it on several hosts: one leads (a lease in Redis), the others take over within 3 s.")


def add_arguments(parser) -> None:
    parser.add_argument("--once", action="store_true", help="one round, then exit (holds no lease)")


def run(options, out, err) -> int:
    reconciler = Reconciler()
    if options.get("once"):
        out.write(reconciler.run_once() + "\n")
        return 0
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        # A clean stop (systemctl stop, Ctrl-C) releases the lease, so a follower takes
        # over at its next poll instead of after the lease expires.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    reconciler.run_forever(stop)
    return 0
