"""The API's response bodies, written once: the REST views answer with them and the
CLI's `--json` prints them, so a script gets the same shape (and the same ISO 8601
UTC times ending in Z) from `curl` and from `manage.py killswitch ... --json`.

Plain functions over service results and selectors: no request, no DRF.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from killswitch import domain as L
from killswitch import selectors
from killswitch.policy import kill_switch_policy


def zulu(value: datetime | None) -> str | None:
    """The seed's timestamp form: 2026-03-12T15:34:22Z (UTC)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def activated(result: Any) -> dict[str, Any]:
    """An activation's answer (the seed's status, reason, activated_at, and more).
    `warnings` is always there (empty when the scope is known); `pending_audit` only
    when the database was down and the audit event follows."""
    body: dict[str, Any] = {
        "status": "kill_switch_activated", "reason": result.reason, "activated_at": zulu(result.at),
        "level": result.level, "previous_level": result.previous_level, "scope": result.scope,
        "changed": result.changed, "message": result.message, "version": result.version,
        "cooldown_until": zulu(result.cooldown_until), "warnings": list(result.warnings),
    }
    if result.pending_audit:
        body["pending_audit"] = True
    return body


def resumed(result: Any) -> dict[str, Any]:
    """A resume's answer: kill_switch_deactivated (the seed's), or resume_requested when
    a second risk officer must approve; each with what is still open in the scope."""
    from killswitch.services import ResumeRequested

    still_open = selectors.open_in_scope(L.ScopeRef.parse(result.scope))
    if isinstance(result, ResumeRequested):
        return {
            "status": "resume_requested", "request": result.request_id, "expires_at": zulu(result.expires_at),
            "requested_by": result.requested_by, "requested_at": zulu(result.requested_at),
            "scope": result.scope, "level": result.level, "message": result.message, "seq": result.seq,
            "open": still_open,
        }
    return {
        "status": "kill_switch_deactivated", "deactivated_at": zulu(result.at),
        "level": result.level, "previous_level": result.previous_level, "scope": result.scope,
        "changed": result.changed, "message": result.message, "version": result.version,
        "open": still_open,
    }


def countdown_seconds(left: float) -> int:
    """A cooldown's seconds remaining as the status shows them (whole seconds, rounded up)."""
    return int(left + 0.999)


def exact_for(left: float) -> float:
    """How long a scope's countdown stays as shown, `left` seconds before its end: the
    answer shows countdown_seconds(left) and cooldown_until while left > 0; the first
    changes when left + 0.999 crosses a whole number, the second at 0."""
    return min((left + 0.999) % 1.0 or 1.0, left) if left > 0 else math.inf


def status() -> dict[str, Any]:
    """Every scope's level, reason, since, cooldown and version, and the global level."""
    return status_freshness_and_cooldowns()[0]


def status_freshness_and_cooldowns() -> tuple[dict[str, Any], float, list[tuple[int, float]]]:
    """The status; how many seconds it stays exactly what a new read would answer while
    nothing changes (a cooldown's whole seconds remaining tick; math.inf when no scope is
    in a cooldown); and (index in "scopes", end as a timestamp) of every scope counting
    down, whose countdowns the status read's replay redraws itself
    (riskcontrol/performance/replay.py)."""
    version, states = selectors.status()
    policy = kill_switch_policy()
    glob = states[0]
    fresh = min((exact_for(s.cooldown_remaining_seconds) for s in states), default=math.inf)
    return {
        "level": glob.level,
        "active": glob.level != L.RUNNING,
        "version": version,
        "http_enabled": policy.http_enabled,
        "cooldown_minutes": policy.cooldown_minutes,
        "scopes": [{
            "scope": s.scope, "kind": s.kind, "key": s.key, "level": s.level, "reason": s.reason,
            "actor": s.actor, "source": s.source, "since": zulu(s.since),
            "cooldown_until": zulu(s.cooldown_until) if s.cooldown_remaining_seconds > 0 else None,
            "cooldown_remaining_seconds": countdown_seconds(s.cooldown_remaining_seconds),
            "version": s.version,
        } for s in states],
    }, fresh, [(i, s.cooldown_until.timestamp()) for i, s in enumerate(states)
               if s.cooldown_remaining_seconds > 0 and s.cooldown_until is not None]


def event(e: Any) -> dict[str, Any]:
    """One audit event as the history lists it (the seed's action, reason, timestamp first)."""
    entry = selectors.event_as_dict(e)
    entry["timestamp"] = zulu(e.created_at)
    return entry


def history_page(events: list[Any], *, limit: int,
                 next_url: Callable[[int], str] | None = None) -> dict[str, Any]:
    """A page of the history: events newest first, the cursor of the next (older) page
    (`next_before`, None on the last page) and, given `next_url`, its URL."""
    next_before = events[-1].seq if len(events) == limit and events and events[-1].seq > 1 else None
    return {"events": [event(e) for e in events],
            "next": next_url(next_before) if next_url and next_before is not None else None,
            "next_before": next_before}
