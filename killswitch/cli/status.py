from __future__ import annotations

from ..selectors import scope_states, state_version
from ._common import emit_json

NAME = "status"
HELP = "Show every scope's level, reason, since and cooldown."


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true")


def run(options, out, err) -> int:
    states = scope_states()
    if options.get("json"):
        emit_json(out, {"version": state_version(), "scopes": [vars(s) for s in states]})
        return 0
    out.write(f"state version {state_version()}\n")
    out.write(f"{'SCOPE':<28} {'LEVEL':<8} {'SINCE':<20} {'COOLDOWN':<10} REASON\n")
    for s in states:
        cooldown = f"{int(s.cooldown_remaining_seconds // 60)}m{int(s.cooldown_remaining_seconds % 60):02d}s" \
            if s.cooldown_remaining_seconds > 0 else "-"
        out.write(f"{s.scope:<28} {s.level:<8} {s.since:%Y-%m-%d %H:%M:%S}  {cooldown:<10} {s.reason}\n")
    return 0
