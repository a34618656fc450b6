"""`manage.py killswitch status [--json]`: every scope's level, since, cooldown and reason."""

from __future__ import annotations

from ..api import shapes
from ..selectors import scope_states, state_version
from ._common import emit_json, table, when

NAME = "status"
HELP = "Show every scope's level, reason, since and cooldown."


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print the API's answer (as GET /api/risk/kill-switch)")


def _left(seconds: float) -> str:
    if seconds <= 0:
        return "-"
    seconds = int(seconds + 0.999)
    return f"{seconds // 60}m{seconds % 60:02d}s"


def run(options, out, err) -> int:
    if options.get("json"):
        emit_json(out, shapes.status())
        return 0
    states = scope_states()
    out.write(f"state version {state_version()}\n")
    table(out, ["SCOPE", "LEVEL", "SINCE (UTC)", "COOLDOWN LEFT", "BY", "SOURCE", "REASON"],
          [(s.scope, s.level, when(s.since), _left(s.cooldown_remaining_seconds), s.actor, s.source, s.reason)
           for s in states])
    return 0
