from __future__ import annotations

from ..services import KillSwitchError, deactivate
from ._common import cli_actor, emit_json, resumed_json

NAME = "deactivate"
HELP = "Resume trading on a scope once its cooldown has expired."


def add_arguments(parser) -> None:
    parser.add_argument("--scope", default="global", help="global, account:ID, strategy:NAME or symbol:SYM")
    parser.add_argument("--reason", default="", help="why trading may resume (kept in the audit trail)")
    parser.add_argument("--user", help="act as this Django user (checks its role)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(options, out, err) -> int:
    try:
        result = deactivate(scope=options["scope"], reason=options["reason"],
                            actor=cli_actor(options.get("user")), source="cli")
    except KillSwitchError as error:
        err.write(error.message + "\n")
        return 1
    if options.get("json"):
        emit_json(out, resumed_json(result))
    else:
        out.write(result.message + "\n")
    return 0
