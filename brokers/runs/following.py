"""Runs follow the switch: the one rule that decides, from the database (the truth),
what broker work a run, a re-enqueue or the sweep may still do.

- A run's scope is in force at the most severe level of its own scope and of
  `global` (which contains every scope). The run may do the work of the lesser of
  that level and its own: at halt or kill it cancels, only at kill it closes.
- Below halt (the scope was lifted, or lowered to pause), the run is superseded: it
  ends `superseded` and sends nothing more.
- For one order or position (the sweep), the level in force is the most severe of
  every scope that matches it: global, its account, its strategy, and a symbol scope
  naming its symbol or its local symbol (`symbol:ES` and `symbol:ESZ6` both cover the
  December ES future).
"""

from __future__ import annotations

from dataclasses import dataclass

from killswitch import domain as L
from killswitch.models import Scope

from ..adapters.base import Instrument, compact_symbol
from ..models import BrokerRun


def scope_levels() -> dict[str, str]:
    """Every scope's current level, by label, as the database holds it now."""
    return {L.label(kind, key): level for kind, key, level in Scope.objects.values_list("kind", "key", "level")}


def _lesser(a: str, b: str) -> str:
    return a if L.SEVERITY.get(a, L.SEVERITY[L.HALT]) <= L.SEVERITY.get(b, L.SEVERITY[L.HALT]) else b


@dataclass(frozen=True)
class Allowed:
    """What a run may still do now."""

    level: str  # the level whose work it may do (running/pause: none)
    in_force: str  # the level of its scope in force now

    @property
    def superseded(self) -> bool:
        return self.level not in L.BROKER_LEVELS

    @property
    def may_close(self) -> bool:
        return self.level == L.KILL


def allowed_for(run: BrokerRun, levels: dict[str, str] | None = None) -> Allowed:
    """The work `run` may do now: re-read from the database unless `levels` is given
    (a caller deciding for many runs at once reads them once)."""
    levels = scope_levels() if levels is None else levels
    own = L.label(run.scope_kind, run.scope_key) if run.scope_kind in L.SCOPE_KINDS else L.GLOBAL
    global_level = levels.get(L.GLOBAL, L.RUNNING)
    own_level = levels.get(own, L.RUNNING)
    in_force = own_level if L.more_severe(own_level, global_level) else global_level
    return Allowed(level=_lesser(run.level, in_force), in_force=in_force)


def level_for(levels: dict[str, str], *, account: str, strategy: str = "",
              instrument: Instrument | None = None) -> tuple[str, str]:
    """The level in force for one order or position, and the scope that sets it."""
    symbols = []
    if instrument is not None:
        symbols = list(dict.fromkeys(s for s in (compact_symbol(instrument.symbol),
                                                 compact_symbol(instrument.local_symbol)) if s))
    best = L.effective_level(levels, account=account, strategy=strategy or None)
    for symbol in symbols:
        found = L.effective_level(levels, account=account, strategy=strategy or None, symbol=symbol)
        if L.more_severe(found[0], best[0]):
            best = found
    return best
