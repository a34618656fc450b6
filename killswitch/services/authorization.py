"""Who may do what: the one place the rule lives.

Three permissions, granted to people by their role (a Django group, killswitch.services.roles):
`view` (read), `activate` (raise a level) and `deactivate` (resume, or lower a level).
Lowering a level needs `deactivate` whichever interface asks. Every interface asks
here: the API (before and after parsing a request), the admin and the Risk page, the
WebSocket consumer, the CLI, the reconciler for out-of-band writes; the services ask
again on every write, so a rule never depends on an interface remembering it.

System actors are named, and their grants are explicit (never "any non-anonymous
name"): `cli:<login>` (an operator on the server, who can reach the database anyway)
may do everything; `redis-cli` (an out-of-band write of `trading_switch`, turned into
an event by the reconciler) may activate and, after the cooldown, resume as the
seed's RESET does, unless `kill_switch.redis_resume` is false; `system:*` actors of
the service itself may only record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from killswitch import domain as L

VIEW, ACTIVATE, DEACTIVATE = "view", "activate", "deactivate"
PERMISSIONS = (VIEW, ACTIVATE, DEACTIVATE)
ROLE_OF = {VIEW: "viewer", ACTIVATE: "trader", DEACTIVATE: "risk_officer"}

CLI_PREFIX = "cli:"
BREAKER_PREFIX = "breaker:"
REDIS_CLI_ACTOR = "redis-cli"
ANONYMOUS = "anonymous"


def codename(what: str) -> str:
    """The Django permission behind `what` (view, activate, deactivate)."""
    if what not in PERMISSIONS:
        raise ValueError(f"unknown permission {what!r}; expected one of {', '.join(PERMISSIONS)}")
    return f"killswitch.{what}_killswitch"


def user_may(user: Any, what: str) -> bool:
    """Whether a Django user may `what`: authenticated, active, and granted by a role."""
    return bool(user is not None and getattr(user, "is_authenticated", False)
                and getattr(user, "is_active", False) and user.has_perm(codename(what)))


def permission_for_change(current: str, target: str) -> str:
    """Raising a level needs `activate`; resuming or lowering needs `deactivate`."""
    return ACTIVATE if L.SEVERITY[target] > L.SEVERITY[current] else DEACTIVATE


def permission_for_action(action: Any) -> str:
    """The permission a request's `action` needs (API, Risk page, chat): `deactivate` for
    a resume or its approval, `activate` for anything else that changes the switch."""
    return DEACTIVATE if action in ("deactivate", "approve") else ACTIVATE


def missing_role_message(name: str, what: str) -> str:
    verb = {VIEW: "read the kill switch", ACTIVATE: "activate the kill switch",
            DEACTIVATE: "deactivate the kill switch"}[what]
    return f"{name} may not {verb}; the {ROLE_OF[what]} role is required."


def lowering_refused_message(actor: Actor, scope: str, current: str, target: str) -> str:
    """Why `actor` may not lower `scope` from `current` to `target`."""
    if actor.name == REDIS_CLI_ACTOR and actor.user is None:
        return (f"A resume written to Redis (SET trading_switch {target}) is not honoured: "
                "kill_switch.redis_resume is false. Resume from the dashboard, the API or the CLI "
                "(risk_officer role).")
    return (f"{actor.name} may not lower {scope} from {current} to {target}; "
            "the risk_officer role (deactivate permission) is required.")


def _system_grants(name: str) -> frozenset[str]:
    if name.startswith(CLI_PREFIX):
        return frozenset(PERMISSIONS)
    if name.startswith(BREAKER_PREFIX):
        return frozenset({ACTIVATE})
    if name == REDIS_CLI_ACTOR:
        from killswitch.policy import kill_switch_policy

        resume = {DEACTIVATE} if kill_switch_policy().redis_resume else set()
        return frozenset({VIEW, ACTIVATE} | resume)
    return frozenset()


@dataclass(frozen=True)
class Actor:
    """Who acted: a Django user, or a named system actor with explicit grants."""

    name: str
    user: Any = None
    grants: frozenset[str] = field(default=frozenset())

    @classmethod
    def of(cls, actor: Any) -> Actor:
        """An Actor for a user, a system actor's name, an Actor, or None (anonymous)."""
        if isinstance(actor, Actor):
            return actor
        if isinstance(actor, str) and actor and actor != ANONYMOUS:
            return cls.system(actor)
        if actor is not None and getattr(actor, "is_authenticated", False):
            return cls(actor.get_username(), actor)
        return cls(ANONYMOUS)

    @classmethod
    def system(cls, name: str, *, grants: frozenset[str] | None = None) -> Actor:
        """A system actor; its grants follow its name unless given (e.g. a breaker may only activate)."""
        return cls(name, None, _system_grants(name) if grants is None else frozenset(grants))

    @property
    def user_id(self) -> int | None:
        return getattr(self.user, "pk", None)

    def may(self, what: str) -> bool:
        """Whether this actor may `what` (view, activate, deactivate). Reads the
        database for users (their roles); raises DatabaseError when it is down."""
        if self.user is not None:
            return user_may(self.user, what)
        codename(what)  # an unknown permission is a programming error
        return what in self.grants
