"""`manage.py killswitch clients`: trading processes, the level each sees, their acks."""

from __future__ import annotations

from dataclasses import asdict

from .. import selectors
from ..policy import kill_switch_policy
from ..selectors import state_version
from ._common import emit_json

NAME = "clients"
HELP = "List trading processes, the level each sees, the version each acknowledged, and late ones."


def add_arguments(parser) -> None:
    parser.add_argument("--all", action="store_true", help="Include disconnected processes.")
    parser.add_argument("--json", action="store_true")


def _age(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f}ms" if seconds < 10 else f"{seconds:.1f}s"


def run(options, out, err) -> int:
    selectors.ingest_acknowledgements_safely()
    statuses = selectors.client_statuses(include_disconnected=bool(options.get("all")))
    changes = selectors.recent_propagation(limit=10)
    version = state_version()
    timeout = kill_switch_policy().ack_timeout_seconds
    if options.get("json"):
        emit_json(out, {"version": version, "ack_timeout_seconds": timeout,
                        "clients": [asdict(s) for s in statuses], "changes": changes})
        return 0
    late = sum(1 for s in statuses if s.late)
    out.write(f"state version {version}; {len(statuses)} process(es); {late} late "
              f"(not acknowledged within {timeout:g}s)\n")
    out.write(f"{'NAME':<20} {'HOST:PID':<26} {'ACCOUNT':<10} {'STRATEGY':<10} {'LEVEL':<8} "
              f"{'VERSION':>7}  {'LAST SEEN':<19} STATUS\n")
    for s in statuses:
        if s.late:
            status = f"LATE since {s.pending_since:%H:%M:%S}"
        elif not s.connected:
            status = "disconnected"
        else:
            status = "ok"
        if s.cause:
            status += f" (fails closed: {s.cause})"
        version_text = "-" if s.applied_version is None else str(s.applied_version)
        out.write(f"{s.name[:20]:<20} {(s.host + ':' + str(s.pid))[:26]:<26} {s.account[:10] or '-':<10} "
                  f"{s.strategy[:10] or '-':<10} {s.level:<8} {version_text:>7}  "
                  f"{s.last_seen_at:%Y-%m-%d %H:%M:%S} {status}\n")
    if changes:
        out.write("\nRECENT CHANGES (activation -> last acknowledgement)\n")
        for c in changes:
            out.write(f"v{c['version']:<6} #{c['seq']:<6} {c['scope']:<24} {c['previous_level']}->{c['new_level']:<8} "
                      f"{c['acked_clients']}/{c['expected_clients']} acked, last after "
                      f"{_age(c['seconds_to_last_ack'])}"
                      + (f"; late: {', '.join(c['late_clients'])}" if c['late_clients'] else "") + "\n")
    return 0
