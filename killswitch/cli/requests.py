"""`manage.py killswitch requests [--json]`: resume requests waiting for a second risk officer."""

from __future__ import annotations

from ..policy import kill_switch_policy
from ..services import open_requests
from ._common import emit_json, table, when

NAME = "requests"
HELP = "List resume requests waiting for a second risk officer (kill_switch.resume_approvals: 2)."


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print the API's answer (as GET /api/risk/resume-requests, without `open`)")


def run(options, out, err) -> int:
    rows = open_requests()
    if options.get("json"):
        emit_json(out, {"resume_approvals": kill_switch_policy().resume_approvals, "requests": rows})
        return 0
    if not rows:
        out.write("No resume request is waiting"
                  + ("" if kill_switch_policy().resume_approvals == 2 else " (kill_switch.resume_approvals is 1)")
                  + ".\n")
        return 0
    table(out, ["REQUEST", "SCOPE", "LEVEL", "ASKED BY", "ASKED AT (UTC)", "EXPIRES (UTC)"],
          [(r["request"], r["scope"], r["level"], r["requested_by"], when(r["requested_at"]), when(r["expires_at"]))
           for r in rows], right=["REQUEST"])
    out.write("approve with: .venv/bin/python manage.py killswitch approve --request N --user <another risk officer>\n")
    return 0
