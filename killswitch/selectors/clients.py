"""Reads of the trading processes and how each change propagated to them (API, CLI,
Risk page). Written by killswitch.services.acknowledgements."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import F

from killswitch.models import Event, Outcome, Propagation, TradingClient
from killswitch.policy import kill_switch_policy
from killswitch.runtime import clock
from killswitch.services.acknowledgements import CONNECTED_WITHIN, ingest_acknowledgements

logger = logging.getLogger("killswitch.acks")

@dataclass(frozen=True)
class ClientStatus:
    client_id: str
    name: str
    host: str
    pid: int
    account: str
    strategy: str
    connected: bool
    registered_at: datetime
    last_seen_at: datetime
    disconnected_at: datetime | None
    applied_version: int | None
    acked_at: datetime | None
    level: str
    scope: str
    cause: str
    pending_since: datetime | None  # the oldest change it has not acknowledged
    late: bool  # pending longer than ack_timeout_seconds
    acks: list[dict[str, Any]]


def client_statuses(*, include_disconnected: bool = False, acks_per_client: int = 10) -> list[ClientStatus]:
    """Every connected process (and, on request, the disconnected ones), with the
    level each sees, its recent acknowledgements and whether it is late."""
    from .scopes import state_version

    now = clock.now()
    timeout = timedelta(seconds=kill_switch_policy().ack_timeout_seconds)
    current = state_version()
    rows = TradingClient.objects.all()
    if not include_disconnected:
        rows = rows.filter(disconnected_at__isnull=True, last_seen_at__gte=now - CONNECTED_WITHIN)
    changes = _recent_changes()
    created_by_version = dict(changes)
    result = []
    for row in rows:
        connected = row.disconnected_at is None and row.last_seen_at >= now - CONNECTED_WITHIN
        pending_since = (_pending_since(row.applied_version, row.registered_at, changes, current)
                         if connected else None)
        late = pending_since is not None and now - pending_since > timeout
        acks = [
            {"version": a.version, "level": a.level, "acked_at": a.acked_at,
             "seconds": ((a.acked_at - created_by_version[a.version]).total_seconds()
                         if a.version in created_by_version else None)}
            for a in row.acks.order_by("-version")[:acks_per_client]
        ]
        result.append(ClientStatus(
            row.client_id, row.name, row.host, row.pid, row.account, row.strategy, connected,
            row.registered_at, row.last_seen_at, row.disconnected_at, row.applied_version,
            row.acked_at, row.level_seen, row.scope_seen, row.cause, pending_since, late, acks,
        ))
    return result


def _pending_since(applied: int | None, registered_at: datetime, changes: list[tuple[int, datetime]],
                   current: int) -> datetime | None:
    """When the oldest change a connected process has not acknowledged was made (only
    changes made since it registered count), or None when it is up to date."""
    if (applied or 0) >= current:
        return None
    pending = [created for version, created in changes if version > (applied or 0) and created >= registered_at]
    if pending:
        return min(pending)
    return registered_at if applied is None else None


def _recent_changes() -> list[tuple[int, datetime]]:
    return list(Event.objects.filter(outcome=Outcome.APPLIED).exclude(previous_level=F("new_level"))
                .order_by("-seq").values_list("version", "created_at")[:200])


def client_counts() -> dict[str, int]:
    """Trading processes per state, for /metrics, in two queries whatever their number:
    `connected` (seen in the last 10 s), of those `late` (a change older than
    `ack_timeout_seconds` not acknowledged, as client_statuses says) and `fail_closed`
    (reading halt for a cause of their own: Redis lost, heartbeat stale, ...), and
    `disconnected` (known, deregistered or silent; removed after a day)."""
    from .scopes import state_version

    now = clock.now()
    timeout = timedelta(seconds=kill_switch_policy().ack_timeout_seconds)
    current = state_version()
    changes = _recent_changes()
    counts = {"connected": 0, "late": 0, "fail_closed": 0, "disconnected": 0}
    for disconnected_at, last_seen, applied, registered, cause in TradingClient.objects.values_list(
            "disconnected_at", "last_seen_at", "applied_version", "registered_at", "cause"):
        if disconnected_at is not None or last_seen < now - CONNECTED_WITHIN:
            counts["disconnected"] += 1
            continue
        counts["connected"] += 1
        counts["fail_closed"] += bool(cause)
        pending = _pending_since(applied, registered, changes, current)
        counts["late"] += pending is not None and now - pending > timeout
    return counts


def recent_propagation(*, limit: int = 20) -> list[dict[str, Any]]:
    """The last `limit` changes: when made, by whom, and how fast connected processes acknowledged."""
    rows = Propagation.objects.select_related("event").order_by("-version")[:limit]
    return [
        {"seq": p.event.seq, "version": p.version, "scope": p.event.scope_label,
         "previous_level": p.event.previous_level, "new_level": p.event.new_level,
         "actor": p.event.actor, "created_at": p.event.created_at,
         "expected_clients": p.expected_clients, "acked_clients": p.acked_clients,
         "last_ack_at": p.last_ack_at, "seconds_to_last_ack": p.seconds_to_last_ack,
         "complete": p.complete, "late_clients": p.late_clients}
        for p in rows
    ]


def ingest_acknowledgements_safely() -> None:
    """Ingest before a read (CLI), but show what the database has if Redis is down."""
    import redis

    try:
        ingest_acknowledgements()
    except (redis.RedisError, OSError):
        logger.warning("could not read acknowledgements from Redis; showing stored data")
