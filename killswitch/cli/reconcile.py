from __future__ import annotations

from ..distribution.reconciler import Reconciler

NAME = "reconcile"
HELP = "Run the reconciler: keep Redis equal to the database, audit out-of-band writes, heartbeat."


def add_arguments(parser) -> None:
    parser.add_argument("--once", action="store_true", help="one round, then exit")


def run(options, out, err) -> int:
    reconciler = Reconciler()
    if options.get("once"):
        out.write(reconciler.run_once() + "\n")
        return 0
    try:
        reconciler.run_forever()
    except KeyboardInterrupt:
        pass
    return 0
