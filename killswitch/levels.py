"""Levels, scopes and the effective-level rule, with no Django import.

Shared by the service and by the client library that trading processes import
(which needs only `redis`), so both apply exactly the same rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

RUNNING, PAUSE, HALT, KILL = "running", "pause", "halt", "kill"
LEVELS: tuple[str, ...] = (RUNNING, PAUSE, HALT, KILL)
SEVERITY: dict[str, int] = {level: rank for rank, level in enumerate(LEVELS)}
ACTIVE_LEVELS: tuple[str, ...] = (PAUSE, HALT, KILL)

GLOBAL, ACCOUNT, STRATEGY, SYMBOL = "global", "account", "strategy", "symbol"
SCOPE_KINDS: tuple[str, ...] = (GLOBAL, ACCOUNT, STRATEGY, SYMBOL)
MAX_SCOPE_KEY = 64


class ScopeError(ValueError):
    """A scope string that is not `global` or `account:ID`, `strategy:NAME`, `symbol:SYM`."""


def normalize_level(raw: str | bytes | None) -> str | None:
    """The level a raw value names, as the seed reads it (strip, lower), or None."""
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    value = raw.strip().lower()
    return value if value in SEVERITY else None


@dataclass(frozen=True, slots=True)
class ScopeRef:
    """A scope: `global`, or one account, strategy or symbol."""

    kind: str
    key: str = ""

    def __post_init__(self) -> None:
        if self.kind not in SCOPE_KINDS:
            raise ScopeError(f"unknown scope kind {self.kind!r}; expected one of {', '.join(SCOPE_KINDS)}")
        if self.kind == GLOBAL and self.key:
            raise ScopeError("the global scope takes no key; use 'global'")
        if self.kind != GLOBAL:
            if not self.key or not self.key.strip():
                raise ScopeError(f"scope {self.kind!r} needs a key, e.g. '{self.kind}:NAME'")
            if len(self.key) > MAX_SCOPE_KEY:
                raise ScopeError(f"scope key is {len(self.key)} characters; at most {MAX_SCOPE_KEY}")
            if any(c.isspace() or not c.isprintable() for c in self.key):
                raise ScopeError("scope key must not contain spaces or control characters")

    @classmethod
    def parse(cls, text: str | None) -> ScopeRef:
        """`global` (or empty), `account:DU123`, `strategy:momo`, `symbol:AAPL`."""
        if text is None or not str(text).strip() or str(text).strip().lower() == GLOBAL:
            return cls(GLOBAL)
        text = str(text).strip()
        kind, sep, key = text.partition(":")
        if not sep:
            raise ScopeError(
                f"scope {text!r} is not understood; expected 'global', 'account:ID', 'strategy:NAME' or 'symbol:SYM'"
            )
        kind = kind.strip().lower()
        key = key.strip()
        if kind == SYMBOL:
            key = key.upper()
        return cls(kind, key)

    def __str__(self) -> str:
        return GLOBAL if self.kind == GLOBAL else f"{self.kind}:{self.key}"


def matching_scopes(*, account: str | None = None, strategy: str | None = None,
                    symbol: str | None = None) -> list[str]:
    """The scope names that apply to a process (and, if given, an order's symbol)."""
    names = [GLOBAL]
    if account:
        names.append(f"{ACCOUNT}:{account}")
    if strategy:
        names.append(f"{STRATEGY}:{strategy}")
    if symbol:
        names.append(f"{SYMBOL}:{symbol.upper()}")
    return names


def effective_level(levels: Mapping[str, str], *, account: str | None = None,
                    strategy: str | None = None, symbol: str | None = None) -> tuple[str, str]:
    """The most severe level among the matching scopes, and the scope that set it.

    A scope absent from `levels` is running. Ties go to the broadest scope, which
    is the one an operator would look at first.
    """
    best_level, best_scope = RUNNING, GLOBAL
    for name in matching_scopes(account=account, strategy=strategy, symbol=symbol):
        level = levels.get(name, RUNNING)
        if SEVERITY.get(level, SEVERITY[HALT]) > SEVERITY[best_level]:
            # An unknown value in a matching scope reads as halt: fail closed.
            best_level, best_scope = (level if level in SEVERITY else HALT), name
    return best_level, best_scope
