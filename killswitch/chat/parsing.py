"""Reading a command's words: `/halt [scope] reason`, `/history [n]`.

The first word is a scope when it is `global` or starts with `account:`, `strategy:`
or `symbol:` (any case); anything else starts the reason and the scope is global.
So `/halt VIX at 47` halts everything (the seed's "don't hesitate"), and a mistyped
scope is never silently read as another one: it is refused by the service when it
has a known kind (`/halt account: x`), or shown in the kill/resume prompt before
anything happens.
"""

from __future__ import annotations

from dataclasses import dataclass

from killswitch import domain as L

HISTORY_DEFAULT = 10
HISTORY_MAX = 50
_SCOPE_PREFIXES = tuple(f"{kind}:" for kind in L.SCOPE_KINDS if kind != L.GLOBAL)


@dataclass(frozen=True)
class Args:
    scope: str  # as typed ("global" when none was given); the service parses it
    reason: str
    scope_given: bool


def command_and_rest(text: str) -> tuple[str, str]:
    """('/halt', 'account:DU1 crash') from '/halt@some_bot account:DU1 crash'; the rest
    keeps its inner spacing and newlines."""
    head, _, rest = text.strip().partition(" ")
    if "\n" in head:  # "/halt\nreason on the next line"
        head, _, more = head.partition("\n")
        rest = f"{more} {rest}".strip() if rest else more
    return head.split("@", 1)[0].lower(), rest.strip()


# What each command attempts, as the audit log names it (the API's actions), and the
# level it asks for.
_ATTEMPTS = {"/pause": ("activate", L.PAUSE), "/halt": ("activate", L.HALT), "/kill": ("activate", L.KILL),
             "/resume": ("deactivate", L.RUNNING)}


def attempt_of(command: str) -> tuple[str, str]:
    """('activate', 'halt') for '/halt'; (command, '') for a read such as '/status'."""
    return _ATTEMPTS.get(command, (command[:40] or "telegram", ""))


def scope_and_reason(rest: str) -> Args:
    """Split a command's arguments into scope and reason (see the module docstring)."""
    words = rest.split(None, 1)
    if words:
        first = words[0]
        if first.lower() == L.GLOBAL or first.lower().startswith(_SCOPE_PREFIXES):
            return Args(first, words[1].strip() if len(words) > 1 else "", True)
    return Args(L.GLOBAL, rest.strip(), False)


def history_count(rest: str) -> int:
    """The n of `/history [n]`: 1 to 50, 10 when omitted.

    Raises ValueError saying what is expected.
    """
    text = rest.strip()
    if not text:
        return HISTORY_DEFAULT
    if not text.isdigit() or not 1 <= int(text) <= HISTORY_MAX:
        raise ValueError(f"/history takes how many events to show, 1 to {HISTORY_MAX} (got {text[:20]!r}); "
                         f"e.g. /history 20. Without a number it shows {HISTORY_DEFAULT}.")
    return int(text)
