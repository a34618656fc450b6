from __future__ import annotations

from datetime import datetime

from ..domain import ScopeError, ScopeRef
from ..selectors import event_as_dict, history
from ._common import emit_json

NAME = "history"
HELP = "Show the audit trail, newest first."


def add_arguments(parser) -> None:
    parser.add_argument("--scope")
    parser.add_argument("--action")
    parser.add_argument("--actor")
    parser.add_argument("--source")
    parser.add_argument("--since", type=datetime.fromisoformat, help="ISO time, e.g. 2026-03-12T15:00:00+00:00")
    parser.add_argument("--until", type=datetime.fromisoformat)
    parser.add_argument("--before", type=int, help="show events older than this sequence number")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--json", action="store_true")


def run(options, out, err) -> int:
    try:
        scope = ScopeRef.parse(options["scope"]) if options.get("scope") else None
    except ScopeError as exc:
        err.write(f"Invalid scope: {exc}\n")
        return 2
    events = history(scope=scope, action=options.get("action"), actor=options.get("actor"),
                     source=options.get("source"), since=options.get("since"),
                     until=options.get("until"), before_seq=options.get("before"),
                     limit=options["limit"])
    if options.get("json"):
        emit_json(out, [event_as_dict(e) for e in events])
        return 0
    for e in events:
        change = f"{e.previous_level or '-'}->{e.new_level or '-'}"
        out.write(f"#{e.seq:<6} {e.created_at:%Y-%m-%d %H:%M:%S} {e.action:<18} {e.outcome:<8} "
                  f"{e.scope_label:<22} {change:<15} {e.source:<9} {e.actor:<20} {e.reason or e.detail}\n")
    return 0
