"""`manage.py killswitch verify-audit [--expect-head HASH]`: walk and replay the audit chain."""

from __future__ import annotations

from ..models import AuditHead
from ..services import verify_audit_chain

NAME = "verify-audit"
HELP = ("Walk the audit hash chain and replay it against the state; exit 1 naming the first "
        "problem. Prints the head hash to keep outside the database.")


def add_arguments(parser) -> None:
    parser.add_argument("--expect-head", metavar="HASH",
                        help="a head hash kept earlier (e.g. yesterday's report): fail unless that event is "
                             "still in the chain (a shortened tail)")


def run(options, out, err) -> int:
    report = verify_audit_chain(expect_head=options.get("expect_head") or None)
    if report.ok:
        head = AuditHead.objects.filter(pk=1).first()
        out.write(f"audit chain OK: {report.checked} events verified, state replayed\n")
        if head is not None and head.last_seq:
            out.write(f"head: #{head.last_seq} {head.last_hash}  (keep it; check later with --expect-head)\n")
        return 0
    where = f" at event #{report.first_bad_seq}" if report.first_bad_seq else ""
    err.write(f"audit chain BROKEN{where}: {report.problem}\n")
    return 1
