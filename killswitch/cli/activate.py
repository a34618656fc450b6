from __future__ import annotations

from ..services import KillSwitchError, activate
from ._common import cli_actor, emit_json

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
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(options, out, err) -> int:
    try:
        result = activate(scope=options["scope"], level=options["level"], reason=options["reason"],
                          actor=cli_actor(options.get("user")), source="cli")
    except KillSwitchError as error:
        err.write(error.message + "\n")
        return 1
    if result.pending_audit:
        err.write("WARNING: the database is unavailable. " + result.message + "\n")
    if options.get("json"):
        emit_json(out, {"status": "kill_switch_activated" if result.changed else "already_active",
                        "audit": "pending" if result.pending_audit else "recorded",
                        "scope": result.scope, "level": result.level, "version": result.version,
                        "activated_at": result.at, "cooldown_until": result.cooldown_until})
    elif not result.pending_audit:
        out.write(result.message + "\n")
    return 0
