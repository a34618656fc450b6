"""The audit chain: appending events under the head lock, and verifying the chain.

Guarantees:
- An event is appended inside the caller's transaction, after the lock on the audit
  head (which serializes the chain: gap-free `seq`, each event's hash covering its
  predecessor's). The rows that must commit with it are written by `event_recorded`
  receivers (runtime.hooks) in the same transaction.
- Redis, Channels, Celery and notifications are touched only after commit
  (`_after_commit`); a failure there never undoes the event.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction

from killswitch import domain as L
from killswitch.models import (
    CHAIN_KEYED,
    CHAIN_PLAIN,
    GENESIS_HASH,
    AuditHead,
    AuditKeyMissing,
    Event,
    Scope,
)
from killswitch.models.audit import audit_key
from killswitch.runtime import clock
from killswitch.runtime.hooks import event_committed, event_recorded

from .authorization import Actor

logger = logging.getLogger("killswitch")


@dataclass(frozen=True)
class AuditReport:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str = ""


def lock_timeout_ms() -> int:
    return int(getattr(settings, "KILLSWITCH_DB_LOCK_TIMEOUT_MS", 2000))


@contextmanager
def bounded_transaction(ms: int | None = None) -> Iterator[None]:
    """A transaction that waits at most KILLSWITCH_DB_LOCK_TIMEOUT_MS (2 s) for a lock.

    Past it the database raises (OperationalError / LockNotAvailable / QueryCanceled),
    so an escalation takes the Redis path instead of hanging behind another session
    that holds the write lock (SQLite) or the audit head row (PostgreSQL). Nested in an
    outer transaction (a savepoint) it changes nothing: the outer one holds its locks.
    """
    ms = lock_timeout_ms() if ms is None else ms
    if connection.in_atomic_block or ms < 0:
        with transaction.atomic():
            yield
        return
    if connection.vendor == "sqlite":
        # BEGIN IMMEDIATE waits the busy timeout for the write lock: shorten it for this
        # transaction only (other writers keep the configured one).
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {ms}")
        try:
            with transaction.atomic():
                yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f"PRAGMA busy_timeout = {int(connection.settings_dict['OPTIONS'].get('timeout', 5) * 1000)}")
        return
    with transaction.atomic():
        with connection.cursor() as cursor:
            # 0 would mean "no limit" to PostgreSQL: the shortest wait is 1 ms.
            cursor.execute(f"SET LOCAL lock_timeout = {max(ms, 1)}; SET LOCAL statement_timeout = {max(ms, 1) * 2}")
        yield


def lock_head() -> AuditHead:
    """The audit head, locked for this transaction (recreated if someone emptied the table)."""
    head = AuditHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        try:
            with transaction.atomic():
                AuditHead.objects.create(pk=1)
        except IntegrityError:
            pass
        head = AuditHead.objects.select_for_update().get(pk=1)
    return head


def lock_scope(ref: L.ScopeRef) -> Scope:
    """The scope's row, locked for this transaction; created on first use."""
    row = Scope.objects.select_for_update().filter(kind=ref.kind, key=ref.key).first()
    if row is None:
        # INSERT ... ON CONFLICT DO NOTHING: a row created concurrently is no error (and
        # needs no savepoint); then lock whichever row won.
        Scope.objects.bulk_create([Scope(kind=ref.kind, key=ref.key)], ignore_conflicts=True)
        row = Scope.objects.select_for_update().get(kind=ref.kind, key=ref.key)
    return row


def scope_fields(scope: L.ScopeRef | str | None) -> dict[str, str]:
    """An event's scope columns. An unparseable scope is kept as typed (truncated), so
    the attempt is still on record."""
    if isinstance(scope, L.ScopeRef):
        return {"scope_kind": scope.kind, "scope_key": scope.key}
    return {"scope_kind": "", "scope_key": str(scope or "")[: L.MAX_SCOPE_KEY]}


def append_event(head: AuditHead, *, changed: bool = False, **fields: Any) -> Event:
    """Append one event to the chain. The caller holds the head lock inside a transaction."""
    if fields.get("client_address"):
        # Hash the address as the database will store it (IPv6 in canonical form).
        try:
            fields["client_address"] = str(ipaddress.ip_address(fields["client_address"]))
        except ValueError:
            fields["client_address"] = None
    event = Event(seq=head.last_seq + 1, prev_hash=head.last_hash, created_at=clock.now(),
                  chain_version=CHAIN_KEYED if audit_key() else CHAIN_PLAIN, **fields)
    event.hash = event.compute_hash()
    event.save(force_insert=True)
    head.last_seq = event.seq
    head.last_hash = event.hash
    head.save(update_fields=["last_seq", "last_hash", "state_version"])
    event_recorded.send(event=event, changed=changed)  # rows that commit with the event
    transaction.on_commit(partial(_after_commit, event, changed))
    return event


def record(*, action: str, outcome: str, scope: L.ScopeRef | str | None, actor: Actor, source: str,
           reason: str = "", detail: str = "", requested_level: str = "", previous_level: str = "",
           new_level: str = "", client_address: str | None = None) -> Event:
    """Append one event that changes no level, in its own (bounded) transaction."""
    with bounded_transaction():
        head = lock_head()
        return append_event(
            head, action=action, outcome=outcome, **scope_fields(scope),
            previous_level=previous_level, new_level=new_level, requested_level=requested_level,
            actor=actor.name[:150], actor_user_id=actor.user_id, source=source,
            reason=reason or "", detail=detail, client_address=client_address or None,
            version=head.state_version,
        )


def _after_commit(event: Event, changed: bool) -> None:
    """Distribute a committed event. Failures here never undo the transition:
    the reconciler republishes whatever Redis missed."""
    from killswitch.distribution import publish

    logger.info(
        "kill switch %s %s", event.action, event.outcome,
        extra={
            "seq": event.seq, "scope": event.scope_label, "previous_level": event.previous_level,
            "new_level": event.new_level, "requested_level": event.requested_level,
            "actor": event.actor, "source": event.source, "reason": event.reason,
            "detail": event.detail, "version": event.version, "client_address": event.client_address,
            "hash": event.hash,  # the chain's head, copied outside the database on every append
        },
    )
    snapshot = None
    try:
        # Read once, after the commit: published to Redis and handed to the receivers.
        snapshot = publish.take_snapshot() if changed else None
        publish.publish_event(event, state_changed=changed, snapshot=snapshot)
    except Exception:  # Redis down: the reconciler heals it; the DB already has the truth
        logger.warning("could not publish event to Redis", exc_info=True, extra={"seq": event.seq})
    for receiver, result in event_committed.send_robust(sender=Event, event=event, changed=changed,
                                                        snapshot=snapshot):
        if isinstance(result, Exception):
            logger.error("event_committed receiver %s failed: %r", receiver, result, extra={"seq": event.seq})


def verify_audit_chain(*, expect_head: str | None = None) -> AuditReport:
    """Walk the event chain in order and replay it against the state.

    Reports the first event that was changed, removed or inserted (a gap in `seq`, a
    broken link, a hash that no longer matches, a tip that disagrees with the audit
    head, a plain event after a keyed one), then any scope row or state version that
    no event explains (a direct UPDATE), and, with `expect_head` (a hash kept outside
    the database, e.g. from yesterday's report or the Redis log), whether that event
    is still in the chain (a shortened tail).
    """
    expected_prev = GENESIS_HASH
    expected_seq = 1
    checked = 0
    keyed_from: int | None = None
    replay: dict[tuple[str, str], tuple[str, int]] = {}
    state_version = 0
    found_head = expect_head is None
    for event in Event.objects.order_by("seq").iterator(chunk_size=2000):
        if event.seq != expected_seq:
            return AuditReport(False, checked, expected_seq,
                               f"event #{expected_seq} is missing (next stored event is #{event.seq})")
        if event.prev_hash != expected_prev:
            return AuditReport(False, checked, event.seq,
                               f"event #{event.seq} does not link to event #{event.seq - 1}")
        if event.chain_version >= CHAIN_KEYED and keyed_from is None:
            keyed_from = event.seq
        elif event.chain_version < CHAIN_KEYED and keyed_from is not None:
            return AuditReport(False, checked, event.seq,
                               f"event #{event.seq} is unkeyed after keyed event #{keyed_from}: the chain "
                               "was rewritten by someone without AUDIT_HMAC_KEY")
        try:
            intact = event.compute_hash() == event.hash
        except AuditKeyMissing as exc:
            return AuditReport(False, checked, event.seq, f"{exc}: it cannot be verified")
        if not intact:
            return AuditReport(False, checked, event.seq,
                               f"event #{event.seq} was changed after it was written")
        if event.outcome == "applied" and event.new_level and event.previous_level != event.new_level:
            replay[(event.scope_kind, event.scope_key)] = (event.new_level, event.version)
            state_version = max(state_version, event.version)
        if expect_head is not None and event.hash == expect_head:
            found_head = True
        expected_prev = event.hash
        expected_seq += 1
        checked += 1
    head = AuditHead.objects.filter(pk=1).first()
    last_seq = head.last_seq if head else 0
    if last_seq != checked:
        return AuditReport(False, checked, checked + 1,
                           f"the chain ends at event #{checked} but {last_seq} events were written; "
                           f"event #{checked + 1} onwards was removed")
    if head and head.last_hash != expected_prev:
        return AuditReport(False, checked, checked, f"event #{checked} does not match the chain head")
    if not found_head:
        return AuditReport(False, checked, None,
                           f"no event has the expected hash {expect_head[:16]}…: the chain was shortened "
                           "or rewritten after that hash was taken")
    for row in Scope.objects.all():
        level, version = replay.get((row.kind, row.key), (L.RUNNING, 0))
        if (row.level, row.version) != (level, version):
            return AuditReport(False, checked, None,
                               f"scope {row.label} is at {row.level} (version {row.version}) but the events say "
                               f"{level} (version {version}): the row was changed outside the service")
    if head and head.state_version != state_version:
        return AuditReport(False, checked, None,
                           f"the state version is {head.state_version} but the events say {state_version}: "
                           "it was changed outside the service")
    return AuditReport(True, checked)
