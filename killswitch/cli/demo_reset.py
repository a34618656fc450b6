"""`manage.py killswitch demo-reset`: undo a demo (demo stacks only, paper broker only).

Exit codes: 0 reset; 2 refused (not a demo stack, or not PAPER_ONLY: nothing changed,
the refusal is audited)."""

from __future__ import annotations

from ..services import Actor, KillSwitchError
from ..services.demo_reset import demo_reset
from ._common import cli_actor

NAME = "demo-reset"
HELP = ("Demo stacks only (make demo): resume every scope at once (cooldowns waived, each resume audited) "
        "and restore the paper demo book (positions, working orders, prices).")


def add_arguments(parser) -> None:
    parser.add_argument("--user", help="act as this Django user (needs the risk_officer role)")


def run(options, out, err) -> int:
    # As the drill does: the operator's own CLI actor, marked so the events say what it was.
    actor = cli_actor(options["user"]) if options.get("user") else Actor.system(f"{cli_actor(None).name} (demo reset)")
    try:
        result = demo_reset(actor=actor)
    except KillSwitchError as error:
        err.write(f"Demo reset refused: {error.message}\n")
        return 2
    for resumed in result.resumed:
        out.write(resumed.message + "\n")
    if not result.resumed:
        out.write("every scope was already running\n")
    if result.book is not None:
        b = result.book
        out.write(f"demo book restored: {b['accounts']} accounts, {b['positions']} positions, "
                  f"{b['orders']} working orders\n")
    return 0
