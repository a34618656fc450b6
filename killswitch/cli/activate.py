"""`manage.py killswitch activate`: stop trading on a scope (halt by default, global)."""

from __future__ import annotations

from ..api import shapes
from ..services import KillSwitchError, activate
from ._common import cli_actor, emit_json, warn

NAME = "activate"
HELP = "Activate the kill switch (default level halt, global scope)."


def add_arguments(parser) -> None:
    parser.add_argument("--level", choices=["pause", "halt", "kill"], default=None,
                        help="pause: no new signals; halt: no orders, cancel working orders; "
                             "kill: also close positions and stop processes (default: halt)")
    parser.add_argument("--scope", default="global", help="global, account:ID, strategy:NAME or symbol:SYM")
    # Not required by argparse: the service refuses a missing reason and audits the attempt.
    parser.add_argument("--reason", default="", help="why (required, kept in the audit trail)")
    parser.add_argument("--user", help="act as this Django user (checks its role)")
    parser.add_argument("--json", action="store_true", help="print the API's answer (as POST /api/risk/kill-switch)")


def run(options, out, err) -> int:
    try:
        result = activate(scope=options["scope"], level=options["level"], reason=options["reason"],
                          actor=cli_actor(options.get("user")), source="cli")
    except KillSwitchError as error:
        err.write(error.message + "\n")
        return 1
    if options.get("json"):
        emit_json(out, shapes.activated(result))
        return 0
    out.write(result.message + "\n")
    out.flush()  # the result first, then what to know about it (stderr is not buffered)
    if result.pending_audit:
        warn(err, ["the database is unavailable: applied in Redis (every trading process obeys); the audit "
                   "event is written when the database is back"])
    warn(err, result.warnings)
    return 0
