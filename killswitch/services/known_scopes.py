"""Known scopes: which accounts, strategies and symbols the installation knows, the
warning an activation on an unknown one gets, and what the Kill dialog suggests.

A stop is never refused for naming an unknown scope (the desk may know an account the
configuration does not yet, and a typo must not cost the seconds a stop is for): the
activation is applied and answered with a warning naming the known ones and the
closest match, so that the person sees at once that no broker run can act on it and no
trading process reads it.

Where the knowledge comes from:
- accounts and symbols held: the app that owns the brokers registers them from its
  AppConfig.ready (`register(...)`), so killswitch imports nothing of it;
- strategies: what trading processes reported (TradingClient.strategy).
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from killswitch import domain as L

logger = logging.getLogger("killswitch")

# How many known names a warning lists before "and N more".
LISTED = 8


@dataclass(frozen=True)
class KnownScopes:
    # Every account a configured broker has (the broker runs can act on these only).
    accounts: Callable[[], Iterable[str]]
    # Symbols with an open position at a broker that can be read from here.
    symbols_held: Callable[[], Iterable[str]]


_registered: KnownScopes | None = None


def register(known: KnownScopes) -> None:
    """Set where known accounts and held symbols come from (the last registration wins)."""
    global _registered
    _registered = known


def _read(name: str) -> list[str] | None:
    """The registered names of `name`, sorted; None when nothing is registered or the
    read failed (logged): then nothing is known and nothing is warned about."""
    if _registered is None:
        return None
    try:
        return sorted({str(v) for v in getattr(_registered, name)() if v})
    except Exception:
        logger.warning("known %s could not be read", name, exc_info=True)
        return None


def known_accounts() -> list[str] | None:
    return _read("accounts")


def symbols_held() -> list[str] | None:
    return _read("symbols_held")


def strategies_seen() -> list[str]:
    """Every strategy a trading process has reported, connected or not."""
    from killswitch.models import TradingClient

    return sorted(set(TradingClient.objects.exclude(strategy="").values_list("strategy", flat=True)))


def closest(name: str, known: list[str]) -> str | None:
    """The known name closest to `name`, compared case-insensitively (difflib's
    similarity ratio; on a tie, the first in sorted order), or None when nothing is known."""
    if not known:
        return None
    lowered = name.lower()
    return max(sorted(known), key=lambda k: difflib.SequenceMatcher(None, lowered, k.lower()).ratio())


def _listed(names: list[str]) -> str:
    shown = ", ".join(names[:LISTED])
    return shown + (f" and {len(names) - LISTED} more" if len(names) > LISTED else "")


def scope_warnings(ref: L.ScopeRef) -> list[str]:
    """Warnings for an activation on `ref`: an account no configured broker has, a
    strategy no trading process has reported. Empty for known scopes, the global and
    symbol scopes (any symbol may be stopped), and when nothing is known to compare with.
    Never raises: a failed read means no warning (the stop is applied either way)."""
    try:
        if ref.kind == L.ACCOUNT:
            known = known_accounts()
            if known is None or ref.key in known:
                return []
            what = (f"{ref} is not an account of any configured broker (brokers: in risk_limits.yaml), "
                    "so no broker run can cancel or close anything there")
            listed = f"Known accounts: {_listed(known)}" if known else "No broker account is configured"
        elif ref.kind == L.STRATEGY:
            known = strategies_seen()
            if ref.key in known:
                return []
            what = f"{ref} is a strategy no trading process has reported"
            listed = f"Strategies seen: {_listed(known)}" if known else "No process has reported a strategy yet"
        else:
            return []
        match = closest(ref.key, known)
        hint = f"; closest match: {ref.kind}:{match}" if match else ""
        return [f"{what}. {listed}{hint}. The switch is applied all the same."]
    except Exception:  # never let a lookup spoil the answer to a stop that is applied
        logger.warning("known scopes could not be checked for %s", ref, exc_info=True)
        return []


def suggestions() -> list[str]:
    """What the Kill dialog's scope field suggests: global, every configured account,
    every strategy seen from processes and every symbol held."""
    out = [L.GLOBAL]
    out += [L.label(L.ACCOUNT, a) for a in known_accounts() or []]
    try:
        out += [L.label(L.STRATEGY, s) for s in strategies_seen()]
    except Exception:
        logger.warning("strategies seen could not be read", exc_info=True)
    out += [L.label(L.SYMBOL, s) for s in symbols_held() or []]
    return list(dict.fromkeys(out))
