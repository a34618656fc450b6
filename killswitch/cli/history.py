"""`manage.py killswitch history [filters] [--json]`: the audit trail, newest first."""

from __future__ import annotations

from datetime import datetime

from ..api import shapes
from ..domain import ScopeError, ScopeRef
from ..selectors import history
from ._common import emit_json, table, when

NAME = "history"
HELP = "Show the audit trail, newest first."


def add_arguments(parser) -> None:
    parser.add_argument("--scope", help="global, account:ID, strategy:NAME or symbol:SYM")
    parser.add_argument("--action", help="activate, deactivate, cooldown_violation, refused, out_of_band, "
                                         "restored, alert")
    parser.add_argument("--actor")
    parser.add_argument("--source", help="admin, api, cli, redis, telegram, automatic")
    parser.add_argument("--since", type=datetime.fromisoformat, help="ISO time, e.g. 2026-03-12T15:00:00Z")
    parser.add_argument("--until", type=datetime.fromisoformat, help="ISO time (events before it)")
    parser.add_argument("--before", type=int, help="show events older than this sequence number")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--json", action="store_true",
                        help="print the API's answer (as GET /api/risk/kill-switch/history)")


def _said(e) -> str:
    """The reason; for refusals, no-ops and findings also the detail (what was decided)."""
    if e.outcome == "applied" and e.reason:
        return e.reason
    return " — ".join(filter(None, [e.reason, e.detail]))


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
        emit_json(out, shapes.history_page(events, limit=options["limit"]))
        return 0
    table(out, ["#", "TIME (UTC)", "ACTION", "OUTCOME", "SCOPE", "LEVEL", "SOURCE", "ACTOR", "REASON / DETAIL"],
          [(e.seq, when(e.created_at), e.action, e.outcome, e.scope_label,
            f"{e.previous_level or '-'} -> {e.new_level or '-'}", e.source, e.actor,
            _said(e))
           for e in events], empty="No events.", right=["#"])
    return 0
