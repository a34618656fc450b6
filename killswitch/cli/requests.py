"""`manage.py killswitch requests [--json]`: resume requests waiting for a second risk officer."""

from __future__ import annotations

from ..policy import kill_switch_policy
from ..services import open_requests
from ._common import emit_json

NAME = "requests"
HELP = "List resume requests waiting for a second risk officer (kill_switch.resume_approvals: 2)."


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true")


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
    out.write(f"{'REQUEST':<8} {'SCOPE':<28} {'LEVEL':<6} {'ASKED BY':<20} {'ASKED AT (UTC)':<20} EXPIRES (UTC)\n")
    for r in rows:
        out.write(f"{r['request']:<8} {r['scope']:<28} {r['level']:<6} {r['requested_by']:<20} "
                  f"{r['requested_at']:%Y-%m-%d %H:%M:%S}  {r['expires_at']:%Y-%m-%d %H:%M:%S}\n")
    out.write("approve with: manage.py killswitch approve --request N --user <another risk officer>\n")
    return 0
