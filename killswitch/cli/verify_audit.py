from __future__ import annotations

from ..services import verify_audit_chain

NAME = "verify-audit"
HELP = "Walk the audit hash chain; exit 1 naming the first bad event."


def add_arguments(parser) -> None:
    pass


def run(options, out, err) -> int:
    report = verify_audit_chain()
    if report.ok:
        out.write(f"audit chain OK: {report.checked} events verified\n")
        return 0
    err.write(f"audit chain BROKEN at event #{report.first_bad_seq}: {report.problem}\n")
    return 1
