"""Acknowledgements from trading processes: ingestion into the database.

Clients (killswitch_client) append to two Redis streams (killswitch_client.contract):
- `killswitch:clients`: {client_id, registration: JSON {client_id, name, host, pid,
  account, strategy, version, level, scope, cause, acked_at, registered_at, last_seen,
  lib, market_data, deadman}} every second and whenever the level the process sees
  changes, and {client_id, bye} on a clean exit;
- `killswitch:acks`: one entry {client_id, version, level, acked_at} per state version
  a process applied.

`ingest_acknowledgements()` runs at the end of every reconciler round. It copies new
acknowledgements and registrations into TradingClient / Acknowledgement, marks
processes that said goodbye or went quiet as disconnected, and updates the
Propagation row of each recent change (never the Event row: events are append-only).

A process is *late* when a change it has not acknowledged is older than
kill_switch.ack_timeout_seconds. Times are the clients' wall clocks (hosts run NTP).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db.models import F, Q

from killswitch.distribution.connection import get_redis
from killswitch.domain import KEY_ACKS, KEY_CLIENTS
from killswitch.models import Acknowledgement, Event, Outcome, Propagation, TradingClient
from killswitch.policy import kill_switch_policy
from killswitch.runtime import clock
from killswitch.runtime.hooks import clients_changed

from .audit import bounded_transaction

logger = logging.getLogger("killswitch.acks")

BATCH = 5000
# A registration not refreshed for this long no longer counts as connected.
CONNECTED_WITHIN = timedelta(seconds=10)
# The longest the ingestion waits for a lock held by another session (a peer reconciler
# frozen inside this same transaction): past it the round's ingestion fails, is logged,
# and the next round reads the same stream entries again (the cursors move only after a
# commit), so nothing is lost and the reconciler's rounds never stop behind it.
LOCK_TIMEOUT_MS = 1000
# last_seen_at is written at most this often per process (the hash has it to the second).
LAST_SEEN_RESOLUTION = timedelta(seconds=2)
# Changes whose propagation is still followed (late acknowledgements keep arriving).
PROPAGATION_WINDOW = timedelta(hours=1)


class _IngestState:
    """Where the previous ingestion stopped (per process; the stream is re-read after a
    restart and duplicates are ignored by the (client, version) constraint)."""

    def __init__(self) -> None:
        self.cursor = "0-0"  # KEY_ACKS
        self.clients_cursor = "0-0"  # KEY_CLIENTS

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


def _upsert_clients(entries: dict[str, str], now: datetime) -> tuple[dict[str, TradingClient], list[str], bool]:
    """Create or update TradingClient rows from the newest registration of each process.
    Returns the rows by client id, the names of the processes that joined (new rows or
    a disconnected one back) and whether any row changed."""
    parsed = {cid: d for cid, raw in entries.items() if (d := _parse_registration(raw))}
    existing = {c.client_id: c for c in TradingClient.objects.filter(client_id__in=list(parsed))}
    to_create, to_update, joined = [], [], []
    update_fields = ["name", "host", "pid", "account", "strategy", "registered_at", "last_seen_at",
                     "applied_version", "acked_at", "level_seen", "scope_seen", "cause",
                     "lib_version", "disconnected_at"]
    for cid, data in parsed.items():
        fields = _client_fields(data, now)
        row = existing.get(cid)
        if row is None:
            to_create.append(TradingClient(client_id=cid, **fields))
            joined.append(fields["name"])
            continue
        was_gone = row.disconnected_at is not None
        changed = was_gone
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
        if row.last_seen_at >= now - CONNECTED_WITHIN:
            row.disconnected_at = None  # a registration replayed from long ago revives nothing
            if was_gone:
                joined.append(row.name)
        if changed:
            to_update.append(row)
    if to_create:
        TradingClient.objects.bulk_create(to_create, ignore_conflicts=True)
    if to_update:
        TradingClient.objects.bulk_update(to_update, update_fields)
    rows = {c.client_id: c for c in TradingClient.objects.filter(client_id__in=list(parsed))}
    return rows, joined, bool(to_create or to_update)


def _read_stream(client, key: str, cursor: str) -> tuple[list[tuple[str, dict[str, str]]], str]:
    """Entries of stream `key` after `cursor`, and the new cursor."""
    entries: list[tuple[str, dict[str, str]]] = []
    while True:
        start = "-" if cursor == "0-0" else f"({cursor}"
        batch = client.xrange(key, min=start, max="+", count=BATCH)
        if not batch:
            break
        entries.extend(batch)
        cursor = batch[-1][0]
        if len(batch) < BATCH:
            break
    return entries, cursor


def ingest_acknowledgements() -> int:
    """Copy new acknowledgements and registrations from Redis into the database.

    Both come from append-only streams that trading processes write (KEY_ACKS, and
    KEY_CLIENTS for registrations and clean exits). A process is disconnected when it
    said goodbye or its newest registration is older than CONNECTED_WITHIN. Returns the
    number of acknowledgements read (duplicates of stored rows are ignored). Once a
    change to the processes has committed (one joined, left, acknowledged or changed what
    it reports), `hooks.clients_changed` is sent. Raises redis or database errors to the
    caller (the reconciler logs them and carries on).
    """
    client = get_redis()
    now = clock.now()
    acks, ack_cursor = _read_stream(client, KEY_ACKS, _state.cursor)
    registrations, clients_cursor = _read_stream(client, KEY_CLIENTS, _state.clients_cursor)
    newest: dict[str, str] = {}
    gone: set[str] = set()
    for _, fields in registrations:
        cid = fields.get("client_id", "")
        if not cid:
            continue
        if fields.get("bye"):
            gone.add(cid)
            newest.pop(cid, None)
        elif fields.get("registration"):
            newest[cid] = fields["registration"]
            gone.discard(cid)
    stale = TradingClient.objects.filter(disconnected_at__isnull=True, last_seen_at__lt=now - CONNECTED_WITHIN)
    joined, updated, left, rows = [], False, [], []
    # Only with something to write: a write transaction takes SQLite's one write lock,
    # which every writer (an activation too) would wait for, at every reconciler round.
    if newest or gone or acks or stale.exists():
        joined, updated, left, rows = _write(newest, gone, acks, now)
    _state.cursor, _state.clients_cursor = ack_cursor, clients_cursor
    _update_propagation(now)
    if updated or left or rows:
        # After commit: the open Risk pages redraw the processes (killswitch.web.live).
        clients_changed.send_robust(sender=ingest_acknowledgements, joined=joined, left=left, acks=len(rows))
    return len(acks)


def _write(newest: dict[str, str], gone: set[str], acks: list, now: datetime) -> tuple[list, bool, list, list]:
    """Registrations, exits and acknowledgements into the database, in one transaction:
    (joined, updated, left, acknowledgement rows)."""
    ack_client_ids = {fields.get("client_id", "") for _, fields in acks} - {""}
    with bounded_transaction(LOCK_TIMEOUT_MS):
        clients, joined, updated = _upsert_clients(newest, now)
        leaving = TradingClient.objects.filter(disconnected_at__isnull=True).filter(
            Q(client_id__in=gone) | Q(last_seen_at__lt=now - CONNECTED_WITHIN))
        left = list(leaving.values_list("name", flat=True))
        if left:
            leaving.update(disconnected_at=now)
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
    return joined, updated, left, rows


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


def disagreeing_clients(levels: dict[str, str]) -> list[tuple[TradingClient, str]]:
    """Connected processes whose reported level is not the one the service gives them
    (the effective level of the global scope, their account and their strategy), with
    that expected level."""
    from killswitch import domain as L

    found = []
    for row in TradingClient.objects.filter(disconnected_at__isnull=True).exclude(level_seen=""):
        expected, _ = L.effective_level(levels, account=row.account or None, strategy=row.strategy or None)
        if row.level_seen != expected:
            found.append((row, expected))
    return found
