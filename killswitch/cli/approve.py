"""`manage.py killswitch approve --request N [--user NAME]`: the second risk officer's approval."""

from __future__ import annotations

from ..models import ResumeRequest
from ..services import KillSwitchError, deactivate
from ._common import cli_actor, emit_json, resumed_json

NAME = "approve"
HELP = "Approve a resume request (kill_switch.resume_approvals: 2): resumes its scope."


def add_arguments(parser) -> None:
    parser.add_argument("--request", type=int, required=True, help="the request's number (`killswitch requests`)")
    parser.add_argument("--reason", default="", help="why trading may resume (kept in the audit trail)")
    parser.add_argument("--user", help="act as this Django user (checks its role)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(options, out, err) -> int:
    asked = ResumeRequest.objects.filter(pk=options["request"]).first()
    scope = asked.scope_label if asked is not None else "global"
    try:
        result = deactivate(scope=scope, reason=options["reason"], actor=cli_actor(options.get("user")),
                            source="cli", request=options["request"])
    except KillSwitchError as error:
        err.write(error.message + "\n")
        return 1
    if options.get("json"):
        emit_json(out, resumed_json(result))
    else:
        out.write(result.message + "\n")
    return 0
