"""Acknowledgements from trading processes: ingestion into the database, and reads.

Clients (killswitch_client) write to Redis:
- `killswitch:clients` (hash): client_id -> JSON {client_id, name, host, pid, account,
  strategy, version, level, scope, cause, acked_at, registered_at, last_seen, lib},
  refreshed every second and whenever the level the process sees changes;
- `killswitch:acks` (stream): one entry {client_id, version, level, acked_at} per
  state version a process applied.

`ingest_acknowledgements()` runs at the end of every reconciler round. It copies new
acknowledgements and registrations into TradingClient / Acknowledgement, marks
processes whose entry vanished as disconnected, and updates the Propagation row
of each recent change (never the Event row: events are append-only).

A process is *late* when a change it has not acknowledged is older than
kill_switch.ack_timeout_seconds. Times are the clients' wall clocks (hosts run NTP).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import F, Q
from killswitch_client.contract import KEY_ACKS, KEY_CLIENTS

from . import clock
from . import distribution as D
from .client_models import Acknowledgement, Propagation, TradingClient
from .models import Event, Outcome
from .policy import kill_switch_policy

logger = logging.getLogger("killswitch.acks")

BATCH = 5000
# A registration not refreshed for this long no longer counts as connected.
CONNECTED_WITHIN = timedelta(seconds=10)
# last_seen_at is written at most this often per process (the hash has it to the second).
LAST_SEEN_RESOLUTION = timedelta(seconds=2)
# Cadence of full registry reads, on the monotonic clock: the service clock may be moved
# (tests, drills) and must not stall ingestion.
REGISTRY_EVERY_SECONDS = 1.0
# Registrations older than this are removed from the Redis hash (crashed processes).
FORGET_AFTER = timedelta(hours=24)
# Changes whose propagation is still followed (late acknowledgements keep arriving).
PROPAGATION_WINDOW = timedelta(hours=1)


class _IngestState:
    """Where the previous ingestion stopped (per process; the stream is re-read after a
    restart and duplicates are ignored by the (client, version) constraint)."""

    def __init__(self) -> None:
        self.cursor = "0-0"
        self.registry_at: float | None = None

    def reset(self) -> None:
        self.__init__()


_state = _IngestState()


def _ts(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _parse_registration(raw: str) -> dict[str, Any] | None:
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict) or not data.get("client_id"):
        return None
    return data


def _client_fields(data: dict[str, Any], now: datetime) -> dict[str, Any]:
    version = data.get("version")
    return {
        "name": str(data.get("name") or "")[:150] or "unnamed",
        "host": str(data.get("host") or "")[:255],
        "pid": int(data.get("pid") or 0),
        "account": str(data.get("account") or "")[:64],
        "strategy": str(data.get("strategy") or "")[:64],
        "registered_at": _ts(data.get("registered_at")) or now,
        "last_seen_at": _ts(data.get("last_seen")) or now,
        "applied_version": int(version) if isinstance(version, int) else None,
        "acked_at": _ts(data.get("acked_at")),
        "level_seen": str(data.get("level") or "")[:16],
        "scope_seen": str(data.get("scope") or "")[:100],
        "cause": str(data.get("cause") or "")[:32],
        "lib_version": str(data.get("lib") or "")[:16],
    }


def _upsert_clients(entries: dict[str, str], now: datetime, *, full: bool) -> dict[str, TradingClient]:
    """Create or update TradingClient rows from registry entries. With `full`, rows
    absent from the registry are marked disconnected."""
    parsed = {cid: d for cid, raw in entries.items() if (d := _parse_registration(raw))}
    existing = {c.client_id: c for c in TradingClient.objects.filter(client_id__in=list(parsed))}
    to_create, to_update = [], []
    update_fields = ["name", "host", "pid", "account", "strategy", "registered_at", "last_seen_at",
                     "applied_version", "acked_at", "level_seen", "scope_seen", "cause",
                     "lib_version", "disconnected_at"]
    for cid, data in parsed.items():
        fields = _client_fields(data, now)
        row = existing.get(cid)
        if row is None:
            to_create.append(TradingClient(client_id=cid, **fields))
            continue
        changed = row.disconnected_at is not None
        for name, value in fields.items():
            if name == "last_seen_at":
                if value - row.last_seen_at >= LAST_SEEN_RESOLUTION:
                    changed = True
                    row.last_seen_at = value
            elif name == "applied_version":
                if value is not None and (row.applied_version is None or value > row.applied_version):
                    row.applied_version, changed = value, True
            elif name == "acked_at":
                continue  # follows applied_version (set from the acks stream)
            elif getattr(row, name) != value:
                setattr(row, name, value)
                changed = True
        row.disconnected_at = None
        if changed:
            to_update.append(row)
    if to_create:
        TradingClient.objects.bulk_create(to_create, ignore_conflicts=True)
    if to_update:
        TradingClient.objects.bulk_update(to_update, update_fields)
    if full:
        TradingClient.objects.filter(disconnected_at__isnull=True).exclude(
            client_id__in=list(parsed)).update(disconnected_at=now)
    return {c.client_id: c for c in TradingClient.objects.filter(client_id__in=list(parsed))}


def _read_acks(client) -> list[tuple[str, dict[str, str]]]:
    entries: list[tuple[str, dict[str, str]]] = []
    while True:
        start = "-" if _state.cursor == "0-0" else f"({_state.cursor}"
        batch = client.xrange(KEY_ACKS, min=start, max="+", count=BATCH)
        if not batch:
            break
        entries.extend(batch)
        _state.cursor = batch[-1][0]
        if len(batch) < BATCH:
            break
    return entries


def ingest_acknowledgements() -> int:
    """Copy new acknowledgements and registrations from Redis into the database.

    Returns the number of acknowledgements read from the stream (duplicates of rows
    already stored are ignored). Raises redis or database errors to the caller (the
    reconciler logs them and carries on).
    """
    client = D.get_redis()
    now = clock.now()
    acks = _read_acks(client)
    mono = time.monotonic()
    registry_due = _state.registry_at is None or mono - _state.registry_at >= REGISTRY_EVERY_SECONDS
    ack_client_ids = {fields.get("client_id", "") for _, fields in acks} - {""}
    if registry_due:
        entries = client.hgetall(KEY_CLIENTS)
        _state.registry_at = mono
    elif ack_client_ids:
        ids = sorted(ack_client_ids)
        entries = {cid: raw for cid, raw in zip(ids, client.hmget(KEY_CLIENTS, ids), strict=True) if raw}
    else:
        entries = {}
    if not acks and not entries and not registry_due:
        _update_propagation(now)
        return 0
    with transaction.atomic():
        clients = _upsert_clients(entries, now, full=registry_due)
        missing = ack_client_ids - set(clients)
        if missing:
            clients.update({c.client_id: c for c in TradingClient.objects.filter(client_id__in=missing)})
        rows, latest = [], {}
        for _, fields in acks:
            owner = clients.get(fields.get("client_id", ""))
            acked_at = _ts(fields.get("acked_at"))
            try:
                version = int(fields.get("version", ""))
            except ValueError:
                continue
            if owner is None or acked_at is None:
                continue  # a process that deregistered before we saw it: nothing to attach to
            rows.append(Acknowledgement(client=owner, version=version, level=str(fields.get("level", ""))[:16],
                                        acked_at=acked_at))
            if version >= latest.get(owner.pk, (-1, None))[0]:
                latest[owner.pk] = (version, acked_at)
        if rows:
            Acknowledgement.objects.bulk_create(rows, ignore_conflicts=True)
        for pk, (version, acked_at) in latest.items():
            TradingClient.objects.filter(pk=pk).filter(
                Q(applied_version__isnull=True) | Q(applied_version__lte=version)
            ).update(applied_version=version, acked_at=acked_at)
    if registry_due:
        stale = [cid for cid, raw in entries.items()
                 if (d := _parse_registration(raw)) is None
                 or (_ts(d.get("last_seen")) or now) < now - FORGET_AFTER]
        if stale:
            client.hdel(KEY_CLIENTS, *stale)
    _update_propagation(now)
    return len(acks)


def _change_events(since: datetime) -> Iterable[Event]:
    return (Event.objects.filter(outcome=Outcome.APPLIED, created_at__gte=since)
            .exclude(previous_level=F("new_level")).order_by("seq"))


def _expected_clients(at: datetime) -> list[TradingClient]:
    """Processes connected when a change was made: registered before it, seen since
    shortly before it, not disconnected before it."""
    return list(TradingClient.objects.filter(registered_at__lte=at, last_seen_at__gte=at - CONNECTED_WITHIN)
                .filter(Q(disconnected_at__isnull=True) | Q(disconnected_at__gt=at)))


def _update_propagation(now: datetime) -> None:
    timeout = timedelta(seconds=kill_switch_policy().ack_timeout_seconds)
    open_rows = {p.event_id: p for p in Propagation.objects.filter(
        event__created_at__gte=now - PROPAGATION_WINDOW)}
    for event in _change_events(now - PROPAGATION_WINDOW):
        row = open_rows.get(event.pk)
        if row is not None and row.complete:
            continue
        expected = _expected_clients(event.created_at)
        first_acks: dict[int, datetime] = {}
        for client_id, acked_at in (Acknowledgement.objects
                                    .filter(client__in=expected, version__gte=event.version)
                                    .order_by("acked_at").values_list("client_id", "acked_at")):
            first_acks.setdefault(client_id, acked_at)
        last = max(first_acks.values(), default=None)
        deadline = event.created_at + timeout
        late = []
        for c in expected:
            first = first_acks.get(c.pk)
            if (first is not None and first > deadline) or (first is None and now > deadline):
                late.append(c.client_id)
        complete = len(first_acks) == len(expected)
        values = dict(
            version=event.version, expected_clients=len(expected), acked_clients=len(first_acks),
            last_ack_at=last, complete=complete, late_clients=sorted(late), updated_at=now,
            seconds_to_last_ack=(last - event.created_at).total_seconds() if (last and complete) else None,
        )
        if row is None:
            Propagation.objects.create(event=event, **values)
        else:
            for name, value in values.items():
                setattr(row, name, value)
            row.save()


# --- Reads (API, CLI, admin) ---------------------------------------------------------------


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
    from .selectors import state_version

    now = clock.now()
    timeout = timedelta(seconds=kill_switch_policy().ack_timeout_seconds)
    current = state_version()
    rows = TradingClient.objects.all()
    if not include_disconnected:
        rows = rows.filter(disconnected_at__isnull=True, last_seen_at__gte=now - CONNECTED_WITHIN)
    changes = list(Event.objects.filter(outcome=Outcome.APPLIED).exclude(previous_level=F("new_level"))
                   .order_by("-seq").values_list("version", "created_at")[:200])
    created_by_version = dict(changes)
    result = []
    for row in rows:
        connected = row.disconnected_at is None and row.last_seen_at >= now - CONNECTED_WITHIN
        pending_since = None
        if connected and (row.applied_version or 0) < current:
            pending = [created for version, created in changes
                       if version > (row.applied_version or 0) and created >= row.registered_at]
            pending_since = min(pending) if pending else None
            if pending_since is None and row.applied_version is None:
                pending_since = row.registered_at
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
