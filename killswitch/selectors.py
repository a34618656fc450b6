"""Reads of the kill switch state and history (no rules, no writes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

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
    now = now or clock.now()
    rows = sorted(Scope.objects.all(), key=lambda r: (L.SCOPE_KINDS.index(r.kind), r.key))
    if not rows or rows[0].kind != L.GLOBAL:
        rows.insert(0, Scope(kind=L.GLOBAL, key=""))
    return [
        ScopeState(r.label, r.kind, r.key, r.level, r.reason, r.actor, r.source, r.since,
                   r.cooldown_until, r.cooldown_remaining_seconds(now), r.version)
        for r in rows
    ]


def state_version() -> int:
    head = AuditHead.objects.filter(pk=1).first()
    return head.state_version if head else 0


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
