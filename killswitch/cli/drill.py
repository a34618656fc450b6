"""`manage.py killswitch drill`: the yearly kill-switch test, on paper accounts only.

Exit codes: 0 every figure within its bound; 1 a figure missed its bound, or the
drill could not be set up; 2 refused input (a non-paper account, a bad value).
See the README, "The yearly kill-switch drill", for the runbook.
"""

from __future__ import annotations

from pathlib import Path

from ..drill import DRILL_ACCOUNT, Bounds, DrillError, DrillRefused, run_drill
from ._common import cli_actor

NAME = "drill"
HELP = ("Kill switch drill on paper accounts: kill, measure propagation, acknowledgements, "
        "cancellation and flattening, resume after a shortened cooldown, write a report.")


def add_arguments(parser) -> None:
    parser.add_argument("--account", action="append", dest="accounts", metavar="ACCOUNT",
                        help=f"a paper account to drill (repeatable; default: the drill account {DRILL_ACCOUNT}, "
                             "required when PAPER_ONLY is false)")
    parser.add_argument("--clients", type=int, default=5, help="trading client processes to start (default 5)")
    parser.add_argument("--cooldown-seconds", type=float, default=10.0,
                        help="the drill's shortened cooldown (default 10; never longer than the policy's)")
    parser.add_argument("--report-dir", type=Path, default=None, help="where reports go (default var/drills/)")
    parser.add_argument("--no-start-services", dest="start_services", action="store_false",
                        help="fail instead of starting a reconciler / Celery worker when none is running")
    parser.add_argument("--run-timeout", type=float, default=60.0,
                        help="seconds to wait for the broker run to finish (default 60)")
    bounds = parser.add_argument_group("bounds (a figure outside its bound makes the exit code 1)")
    bounds.add_argument("--max-propagation-ms", type=float, default=Bounds.max_propagation_ms,
                        help="activation to the last client's acknowledgement (default 1000)")
    bounds.add_argument("--ack-timeout-seconds", type=float, default=None,
                        help="every client acknowledges within this (default: kill_switch.ack_timeout_seconds)")
    bounds.add_argument("--min-client-exits-pct", type=float, default=Bounds.min_client_exits_pct,
                        help="share of client processes that must exit with code 1 (default 100)")
    bounds.add_argument("--max-orders-left", type=int, default=Bounds.max_orders_left,
                        help="working orders allowed to remain in scope (default 0)")
    bounds.add_argument("--max-positions-left", type=int, default=Bounds.max_positions_left,
                        help="open positions allowed to remain in scope (default 0)")


def run(options, out, err) -> int:
    bounds = Bounds(
        max_propagation_ms=options["max_propagation_ms"], ack_timeout_seconds=options.get("ack_timeout_seconds"),
        min_client_exits_pct=options["min_client_exits_pct"], max_orders_left=options["max_orders_left"],
        max_positions_left=options["max_positions_left"],
    )

    def progress(message: str) -> None:
        try:
            out.write(f"  {message}\n")
            out.flush()
        except OSError:  # stdout closed (a pager quit): the drill goes on and writes its report
            pass

    try:
        report = run_drill(
            accounts=options.get("accounts"), clients=options["clients"],
            cooldown_seconds=options["cooldown_seconds"], bounds=bounds, report_dir=options.get("report_dir"),
            start_services=options["start_services"], run_timeout=options["run_timeout"],
            actor=f"{cli_actor(None).name} (drill)", progress=progress,
        )
    except DrillRefused as refused:
        err.write(f"Drill refused: {refused}\n")
        return 2
    except DrillError as error:
        err.write(f"Drill could not run: {error}\n")
        return 1
    width = max(len(f.label) for f in report.figures)
    out.write(f"\nKILL SWITCH DRILL {'PASSED' if report.ok else 'FAILED'} on {', '.join(report.accounts)}\n")
    for f in report.figures:
        out.write(f"  {'PASS' if f.ok else 'FAIL'}  {f.label:<{width}}  {f.value}  (bound {f.bound})\n")
        if not f.ok and f.detail:
            out.write(f"        {f.detail}\n")
    for note in report.notes:
        out.write(f"  note: {note}\n")
    out.write(f"report: {report.html_path}\n        {report.json_path}\n")
    return 0 if report.ok else 1
