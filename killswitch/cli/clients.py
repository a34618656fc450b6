"""`manage.py killswitch clients`: trading processes, the level each sees, their acks."""

from __future__ import annotations

from .. import selectors
from ..policy import kill_switch_policy
from ..selectors import state_version
from ._common import emit_json, table, when

NAME = "clients"
HELP = "List trading processes, the level each sees, the version each acknowledged, and late ones."


def add_arguments(parser) -> None:
    parser.add_argument("--all", action="store_true", help="Include disconnected processes.")
    parser.add_argument("--json", action="store_true", help="print the API's answer (as GET /api/risk/clients)")


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}ms" if seconds < 10 else f"{seconds:.1f}s"


def _status(s) -> str:
    if s.late:
        status = f"LATE since {when(s.pending_since)}"
    elif not s.connected:
        status = "disconnected"
    else:
        status = "ok"
    return status + (f" (fails closed: {s.cause})" if s.cause else "")


def run(options, out, err) -> int:
    selectors.ingest_acknowledgements_safely()
    if options.get("json"):
        from ..api.clients import clients_page

        emit_json(out, clients_page(include_disconnected=bool(options.get("all"))))
        return 0
    statuses = selectors.client_statuses(include_disconnected=bool(options.get("all")))
    changes = selectors.recent_propagation(limit=10)
    timeout = kill_switch_policy().ack_timeout_seconds
    late = sum(1 for s in statuses if s.late)
    out.write(f"state version {state_version()}; {len(statuses)} process(es); {late} late "
              f"(not acknowledged within {timeout:g}s)\n")
    table(out, ["NAME", "HOST:PID", "ACCOUNT", "STRATEGY", "LEVEL", "VERSION", "LAST SEEN (UTC)", "STATUS"],
          [(s.name, f"{s.host}:{s.pid}", s.account, s.strategy, s.level,
            "-" if s.applied_version is None else s.applied_version, when(s.last_seen_at), _status(s))
           for s in statuses],
          empty="No trading process is connected (start one: .venv/bin/python examples/trading_loop.py).",
          right=["VERSION"])
    if changes:
        out.write("\nRecent changes (activation -> last acknowledgement):\n")
        table(out, ["VERSION", "EVENT", "SCOPE", "CHANGE", "ACKED", "LAST ACK AFTER", "LATE"],
              [(c["version"], f"#{c['seq']}", c["scope"], f"{c['previous_level']} -> {c['new_level']}",
                f"{c['acked_clients']}/{c['expected_clients']}", _age(c["seconds_to_last_ack"]),
                ", ".join(c["late_clients"])) for c in changes], right=["VERSION"])
    return 0
