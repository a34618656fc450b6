"""Reads of the kill switch state and history (no rules, no writes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from . import clock
from . import levels as L
from .models import AuditHead, Event, Scope

MAX_PAGE = 500


@dataclass(frozen=True)
class ScopeState:
    scope: str
    kind: str
    key: str
    level: str
    reason: str
    actor: str
    source: str
    since: datetime
    cooldown_until: datetime | None
    cooldown_remaining_seconds: float
    version: int


def scope_states(*, now: datetime | None = None) -> list[ScopeState]:
    """Every scope the switch knows (global first), with its cooldown remaining."""
    return _states_of(_sorted_rows(Scope.objects.all()), now or clock.now())


def state_version() -> int:
    head = AuditHead.objects.filter(pk=1).first()
    return head.state_version if head else 0


def status(*, now: datetime | None = None) -> tuple[int, list[ScopeState]]:
    """(state version, every scope's state) for the status endpoint, in one small query
    while nothing changed.

    The scope rows are kept per process under the key (state version, highest scope id,
    number of scopes): every applied change bumps the version and every new scope row
    adds one (the count also catches a row whose id was taken before a higher one but
    committed after it, as PostgreSQL sequences allow), so the key read before the rows
    tells whether the kept rows are still the database's. Rows read while a change
    commits are returned but not kept (their own versions, ids and count disagree with
    the key). Cooldowns remaining are computed on every call.
    """
    global _status_rows
    key = _status_key()
    kept = _status_rows
    if kept is not None and kept[0] == key:
        rows = kept[1]
    else:
        rows = _sorted_rows(Scope.objects.all())
        stored = [r for r in rows if r.pk is not None]
        if key == (max((r.version for r in stored), default=0), max((r.pk for r in stored), default=0),
                   len(stored)):
            _status_rows = (key, rows)
    return key[0], _states_of(rows, now or clock.now())


_status_rows: tuple[tuple[int, int, int], list[Scope]] | None = None


def _status_key() -> tuple[int, int, int]:
    # Plain SQL: this runs on every status read, and compiling the ORM query cost more
    # than running it (profiled: ~0.5 ms of a ~1 ms read).
    global _status_sql
    if _status_sql is None:
        q = connection.ops.quote_name
        head, scope = AuditHead._meta, Scope._meta
        _status_sql = (
            f"SELECT (SELECT {q(head.get_field('state_version').column)} FROM {q(head.db_table)} "
            f"WHERE {q(head.pk.column)} = 1), "
            f"(SELECT MAX({q(scope.pk.column)}) FROM {q(scope.db_table)}), (SELECT COUNT(*) FROM {q(scope.db_table)})"
        )
    with connection.cursor() as cursor:
        cursor.execute(_status_sql)
        version, max_scope_id, scopes = cursor.fetchone()
    return version or 0, max_scope_id or 0, scopes or 0


_status_sql: str | None = None


def _sorted_rows(rows: Any) -> list[Scope]:
    ordered = sorted(rows, key=lambda r: (L.SCOPE_KINDS.index(r.kind), r.key))
    if not ordered or ordered[0].kind != L.GLOBAL:
        ordered.insert(0, Scope(kind=L.GLOBAL, key=""))
    return ordered


def _states_of(rows: list[Scope], now: datetime) -> list[ScopeState]:
    return [
        ScopeState(r.label, r.kind, r.key, r.level, r.reason, r.actor, r.source, r.since,
                   r.cooldown_until, r.cooldown_remaining_seconds(now), r.version)
        for r in rows
    ]


def global_level() -> str:
    row = Scope.objects.filter(kind=L.GLOBAL, key="").first()
    return row.level if row else L.RUNNING


def effective_level(*, account: str | None = None, strategy: str | None = None,
                    symbol: str | None = None) -> tuple[str, str]:
    """The most severe level among the scopes matching (account, strategy, symbol)."""
    levels = {r.label: r.level for r in Scope.objects.all()}
    return L.effective_level(levels, account=account, strategy=strategy, symbol=symbol)


def history(*, scope: L.ScopeRef | None = None, action: str | None = None, actor: str | None = None,
            source: str | None = None, since: datetime | None = None, until: datetime | None = None,
            before_seq: int | None = None, limit: int = 50) -> list[Event]:
    """Events newest first. Keyset pagination on `seq` (pass the last seq seen as
    `before_seq`), so page 10,000 costs what page 1 costs."""
    qs: QuerySet[Event] = Event.objects.all()
    if scope is not None:
        qs = qs.filter(scope_kind=scope.kind, scope_key=scope.key)
    if action:
        qs = qs.filter(action=action)
    if actor:
        qs = qs.filter(actor=actor)
    if source:
        qs = qs.filter(source=source)
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    if before_seq is not None:
        qs = qs.filter(seq__lt=before_seq)
    return list(qs.order_by("-seq")[: max(1, min(limit, MAX_PAGE))])


def event_as_dict(event: Event) -> dict[str, Any]:
    entry = event.as_log_entry()
    entry.update({
        "timestamp": event.created_at,
        "requested_level": event.requested_level,
        "client_address": event.client_address,
        "hash": event.hash,
    })
    return entry
