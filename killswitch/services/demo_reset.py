"""The demo reset (`manage.py killswitch demo-reset`): a demo that can be undone.

It resumes every scope that is not running, at once (the cooldown waived and said so in
each event), then restores the demo book at the paper broker (the brokers app registers
how: `register_book_reset`). What a risk officer would accept, and nothing more:

- only on a demo stack (`make demo`: policy.demo) and only with PAPER_ONLY: on any other
  installation it is refused and the refusal audited, and nothing changes;
- every resume is an ordinary audited `deactivate` event of the person who ran it
  (actor `cli:<login> (demo reset)`, reason "demo reset"), never a silent rewrite;
- the book is restored only after the levels are lifted, so the sweep of a halted scope
  never cancels the demo orders as they are placed again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from killswitch import domain as L
from killswitch import policy
from killswitch.models import Action, Scope, Source

from .authorization import Actor
from .errors import InvalidRequest
from .refusals import refuse
from .transitions import TransitionResult, transition

REASON = "demo reset"

_book_reset: Callable[[], dict[str, Any]] | None = None


def register_book_reset(reset: Callable[[], dict[str, Any]]) -> None:
    """How the demo book is restored (the brokers app registers it); it returns counts
    for the answer, e.g. {"accounts": 2, "positions": 4, "orders": 5}."""
    global _book_reset
    _book_reset = reset


@dataclass
class DemoResetResult:
    resumed: list[TransitionResult] = field(default_factory=list)
    book: dict[str, Any] | None = None  # None when no app registered a book reset


def refusal_reason() -> str | None:
    """Why this installation may not be demo-reset, or None when it may."""
    if not policy.get_policy().demo:
        return ("demo-reset is for demo stacks only: it resumes every scope at once, without waiting for "
                "cooldowns, which only a paper-only demo may do. Start one with `make demo` "
                f"({policy.DEMO_ENV}=1). Here, resume each scope after its cooldown: "
                '.venv/bin/python manage.py killswitch deactivate --scope S --reason "..."')
    if not getattr(settings, "PAPER_ONLY", True):
        return "demo-reset needs PAPER_ONLY=true: it never touches a real broker's account."
    return None


def demo_reset(*, actor: Any, source: str = Source.CLI) -> DemoResetResult:
    """Resume every scope that is not running and restore the demo book.

    Raises InvalidRequest (audited, nothing changed) unless refusal_reason() is None.
    A resume that fails raises what the transition raised; scopes resumed before it stay
    resumed (each has its event).
    """
    actor = Actor.of(actor)
    why = refusal_reason()
    if why is not None:
        raise refuse(InvalidRequest(why), attempted="deactivate", scope=L.ScopeRef(L.GLOBAL), actor=actor, source=source,
                     reason=REASON, requested_level=L.RUNNING, client_address=None)
    result = DemoResetResult()
    # Narrow scopes first, global last: trading stays stopped until everything is reset.
    stopped = sorted(Scope.objects.exclude(level=L.RUNNING), key=lambda s: s.kind == L.GLOBAL)
    for row in stopped:
        result.resumed.append(transition(
            ref=L.ScopeRef(row.kind, row.key), target=L.RUNNING, actor=actor, source=source, reason=REASON,
            action=Action.DEACTIVATE, client_address=None,
            waive_cooldown="demo reset (demo stack, paper broker only)"))
    if _book_reset is not None:
        result.book = _book_reset()
    return result
