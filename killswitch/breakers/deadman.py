"""Renewing a dead-man's switch from outside a trading process (the service behind
`POST /api/risk/deadman/<name>`), like BitMEX's cancelAllAfter or Binance's
countdownCancelAll but for any broker: a `dead_man` breaker is armed by its first
heartbeat and trips when no renewal came within `timeout_seconds`.

The rule lives here: the actor needs the activate permission (the trader role), the
name must be a configured `dead_man` breaker, and a refusal is audited like any other.
Renewals themselves are not audit events (one every few seconds would bury the log):
the newest one, with who sent it, is kept in Redis (inputs.DEADMAN_KEY) and shown by
every breaker view; the trip it prevents or causes is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from killswitch.distribution.connection import get_redis
from killswitch.services import (
    Actor,
    DatabaseUnavailable,
    InvalidRequest,
    PermissionRefused,
    record_refusal,
)
from killswitch.services.authorization import ACTIVATE, missing_role_message

from . import config as C
from . import inputs


class UnknownDeadMan(InvalidRequest):
    code = "not_found"


@dataclass(frozen=True)
class Renewed:
    name: str
    renewed_at: datetime
    timeout_seconds: float
    expires_at: datetime
    by: str
    scope: str
    level: str


def renew_dead_man(*, name: str, actor: Any, source: str, client_address: str | None = None) -> Renewed:
    """Renew the dead-man's switch `name` at the Redis server's time now (arming it if it
    was not). Raises UnknownDeadMan (no dead_man breaker of that name), PermissionRefused
    (not the trader role), DatabaseUnavailable (Redis cannot take it: the switch then
    expires, which fails safe); each refusal is audited."""
    actor = Actor.of(actor)
    breaker = C.by_name(name) if isinstance(name, str) else None
    scope = breaker.scope_label if breaker else "global"
    attempted = f"renew dead-man's switch {str(name)[:64]}"
    if breaker is None or breaker.kind != C.DEAD_MAN:
        known = [b.name for b in C.configured() if b.kind == C.DEAD_MAN]
        raise record_refusal(attempted=attempted, scope=scope, actor=actor, source=source,
                             client_address=client_address, error=UnknownDeadMan(
                                 f"No dead_man breaker named {str(name)[:64]!r} in the policy; configured: "
                                 f"{', '.join(known) or 'none'}.", field="name"))
    if not actor.may(ACTIVATE):
        raise record_refusal(attempted=attempted, scope=scope, actor=actor, source=source,
                             client_address=client_address,
                             error=PermissionRefused(missing_role_message(actor.name, ACTIVATE)))
    try:
        renewal = inputs.renew(get_redis(), name, by=f"{source}:{actor.name}")
    except (redis.RedisError, OSError):
        raise DatabaseUnavailable(
            f"Redis is unreachable: the dead-man's switch {name} was not renewed and trips after "
            f"{breaker.limit:g} s without a renewal.") from None
    at = datetime.fromtimestamp(renewal.at, UTC)
    return Renewed(name, at, breaker.limit, datetime.fromtimestamp(renewal.at + breaker.limit, UTC),
                   renewal.by, scope, breaker.level)
