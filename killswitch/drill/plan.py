"""What the drill may do, checked before anything happens: its inputs, its accounts,
and that every drilled scope starts from `running`."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from killswitch import domain as L
from killswitch import services
from killswitch.models import Scope
from killswitch.policy import kill_switch_policy
from killswitch.runtime import clock

DRILL_ACCOUNT = "DRILL01"
DRILL_ACTOR = "system:drill"
REASON = "Kill switch drill"
MAX_CLIENTS = 50
MIN_COOLDOWN_SECONDS = 1.0
STRATEGIES = ("momentum", "mean_reversion", "index_arb")
# The seed's refusal, e.g. "Kill switch cooldown active. 37 minutes remaining (cooldown: 60 minutes).",
# in seconds for a drill's sub-minute cooldown ("... 2 seconds remaining (cooldown: 2 seconds).").
SEED_COOLDOWN_MESSAGE = re.compile(
    r"^Kill switch cooldown active\. \d+ (minute|second)s? remaining \(cooldown: [\d.]+ (minutes|seconds)\)\.$")


class DrillRefused(Exception):
    """The drill was asked to do something unsafe or impossible; nothing was changed.
    The CLI exits 2."""


class DrillError(Exception):
    """The drill could not be set up (services, clients); nothing was activated.
    The CLI exits 1."""


@dataclass(frozen=True)
class Bounds:
    """The figures' bounds. `ack_timeout_seconds` None: the policy's."""

    max_propagation_ms: float = 1000.0
    ack_timeout_seconds: float | None = None
    min_client_exits_pct: float = 100.0
    max_orders_left: int = 0
    max_positions_left: int = 0


def check_inputs(clients: int, cooldown_seconds: float) -> None:
    if not 1 <= clients <= MAX_CLIENTS:
        raise DrillRefused(f"--clients {clients} is invalid; expected 1 to {MAX_CLIENTS}.")
    policy_seconds = kill_switch_policy().cooldown_minutes * 60
    if not MIN_COOLDOWN_SECONDS <= cooldown_seconds <= policy_seconds:
        raise DrillRefused(
            f"--cooldown-seconds {cooldown_seconds:g} is invalid; expected {MIN_COOLDOWN_SECONDS:g} to the "
            f"policy's cooldown ({policy_seconds:g} s): a resume must be tried inside it.")


def check_scopes(accounts: list[str], dedicated: bool, actor: Any, say: Callable[[str], None]) -> None:
    """Every drilled account must start from `running`, globally too. The dedicated
    account is reset from an earlier, interrupted drill once its cooldown is over."""
    from killswitch.selectors import effective_level

    for account in accounts:
        ref = L.ScopeRef(L.ACCOUNT, account)
        row = Scope.objects.filter(kind=ref.kind, key=ref.key).first()
        if row is not None and row.level != L.RUNNING:
            remaining = row.cooldown_remaining_seconds(clock.now())
            if not dedicated:
                raise DrillRefused(f"{ref} is at {row.level} (set by {row.actor}: {row.reason!r}); the drill "
                                   "starts only from running and never lifts a level somebody else set.")
            if remaining > 0:
                raise DrillRefused(f"{ref} is still at {row.level} from an earlier drill; its cooldown ends in "
                                   f"{math.ceil(remaining)} s. Run the drill again after that.")
            services.deactivate(scope=ref, actor=actor, source="cli",
                                reason=f"{REASON}: reset of the drill account before a new drill")
            say(f"reset {ref} from {row.level} (left by an earlier drill)")
        level, scope = effective_level(account=account)
        if level != L.RUNNING:
            raise DrillRefused(f"Trading processes of account {account} read {level}, set on {scope}"
                               f"{_set_by(scope)}. The drill starts only from running and never lifts a level "
                               f"somebody else set. {_how_to_lift(scope)}")


def _set_by(scope: str) -> str:
    ref = L.ScopeRef.parse(scope)
    row = Scope.objects.filter(kind=ref.kind, key=ref.key).first()
    if row is None:
        return ""
    return f" by {row.actor} at {row.since:%H:%M:%S} UTC" + (f" ({row.reason})" if row.reason else "")


def _how_to_lift(scope: str) -> str:
    """What a person does to let the drill run: resume that scope once its cooldown is
    over (or, on a demo stack, reset the demo)."""
    from killswitch.policy import get_policy

    ref = L.ScopeRef.parse(scope)
    row = Scope.objects.filter(kind=ref.kind, key=ref.key).first()
    flag = "" if ref.kind == L.GLOBAL else f" --scope {ref}"
    how = f'.venv/bin/python manage.py killswitch deactivate{flag} --reason "..."'
    remaining = row.cooldown_remaining_seconds(clock.now()) if row is not None else 0
    if remaining > 0:
        text = (f"Lift it when its cooldown ends ({row.cooldown_until:%H:%M:%S} UTC, in "
                f"{math.ceil(remaining / 60) if remaining >= 60 else math.ceil(remaining)}"
                f"{' min' if remaining >= 60 else ' s'}): {how}")
    else:
        text = f"Lift it first (its cooldown is over): {how}"
    if get_policy().demo:
        text += "; or, on this demo stack, .venv/bin/python manage.py killswitch demo-reset"
    return text + ". Then run the drill again."
