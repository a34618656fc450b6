"""The audit log cannot be quietly shortened or rewritten: replay against the state,
a head hash kept outside the database, keyed hashes, TRUNCATE refused, and the copy of
the chain in Redis checked by the reconciler."""

from __future__ import annotations

import hashlib

import pytest
from django.db import DatabaseError, connection, transaction

from killswitch import services
from killswitch.models import AuditHead, Event, Scope
from tests.conftest import wait_for

from .test_audit import _drop_guard, _make_events

pytestmark = pytest.mark.django_db


def _raw(sql: str, params=()) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_a_scope_row_changed_without_an_event_is_named_by_the_replay(trader):
    _make_events(trader, 2)
    _raw("UPDATE killswitch_scope SET level = 'running' WHERE key = 'S1'")
    report = services.verify_audit_chain()
    assert not report.ok and "scope symbol:S1 is at running" in report.problem and "events say halt" in report.problem


def test_a_state_version_changed_without_an_event_is_named(trader):
    _make_events(trader, 2)
    AuditHead.objects.filter(pk=1).update(state_version=99)
    report = services.verify_audit_chain()
    assert not report.ok and "state version is 99 but the events say 2" in report.problem


def test_a_shortened_tail_with_a_rewritten_head_fails_against_the_expected_head(trader):
    """SQLite has no DELETE trigger: removing the last events and rewriting the head is
    consistent inside the database; the head hash kept outside it is not there any more."""
    _make_events(trader, 3)
    kept = AuditHead.objects.get(pk=1).last_hash
    services.record_refusal(attempted="activate", scope="global", actor=trader, source="api",
                            error=services.InvalidRequest("x"))
    tip = AuditHead.objects.get(pk=1)
    assert services.verify_audit_chain(expect_head=tip.last_hash).ok
    _drop_guard()
    _raw("DELETE FROM killswitch_event WHERE seq = %s", [tip.last_seq])
    previous = Event.objects.get(seq=tip.last_seq - 1)
    AuditHead.objects.filter(pk=1).update(last_seq=previous.seq, last_hash=previous.hash)
    assert services.verify_audit_chain().ok  # consistent on its own...
    report = services.verify_audit_chain(expect_head=tip.last_hash)  # ...but not with the copy kept
    assert not report.ok and "shortened or rewritten" in report.problem
    assert services.verify_audit_chain(expect_head=kept).ok


def test_keyed_events_cannot_be_rebuilt_without_the_key(trader, settings):
    _make_events(trader, 1)  # written before a key was configured: chain version 1
    settings.AUDIT_HMAC_KEY = "a-long-random-key-kept-off-the-database-host"
    _make_events(trader, 2)
    assert list(Event.objects.order_by("seq").values_list("chain_version", flat=True)) == [1, 2, 2]
    assert services.verify_audit_chain().ok
    # Someone with only the database rewrites the last event as a plain SHA-256 event.
    _drop_guard()
    last = Event.objects.order_by("-seq").first()
    last.reason, last.chain_version = "forged", 1
    forged = hashlib.sha256(last.hash_payload().encode()).hexdigest()
    _raw("UPDATE killswitch_event SET reason = 'forged', chain_version = 1, hash = %s WHERE seq = %s",
         [forged, last.seq])
    AuditHead.objects.filter(pk=1).update(last_hash=forged)
    report = services.verify_audit_chain()
    assert not report.ok and "unkeyed after keyed event" in report.problem


def test_keyed_events_without_the_key_configured_are_reported_unverifiable(trader, settings):
    settings.AUDIT_HMAC_KEY = "k" * 40
    _make_events(trader, 1)
    settings.AUDIT_HMAC_KEY = None
    report = services.verify_audit_chain()
    assert not report.ok and "AUDIT_HMAC_KEY is not configured" in report.problem


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_truncate_is_refused_on_postgresql(trader):
    _make_events(trader, 1)
    with pytest.raises(DatabaseError, match="TRUNCATE refused"), transaction.atomic():
        _raw("TRUNCATE killswitch_event CASCADE")
    assert Event.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_reconciler_notices_events_removed_behind_the_redis_copy(reconciler, redis_client, trader):
    wait_for(lambda: redis_client.get("killswitch:heartbeat"))
    _make_events(trader, 3)
    tip = AuditHead.objects.get(pk=1)
    wait_for(lambda: f'"seq": {tip.last_seq}' in (redis_client.lindex("risk:kill_switch:log", 0) or ""))
    _drop_guard()
    _raw("DELETE FROM killswitch_event WHERE seq = %s", [tip.last_seq])
    alert = wait_for(lambda: Event.objects.filter(action="alert", detail__contains="no longer holds").first(),
                     timeout=15)
    assert f"event #{tip.last_seq}" in alert.detail and "it is missing" in alert.detail


@pytest.mark.django_db(transaction=True)
def test_the_reconciler_never_publishes_a_level_lowered_in_the_database_behind_its_back(
        reconciler, redis_client, trader):
    wait_for(lambda: redis_client.get("killswitch:heartbeat"))
    services.activate(scope="account:DU1", level="kill", reason="r", actor=trader, source="api")
    wait_for(lambda: redis_client.hget("killswitch:state", "account:DU1") == "kill")
    # A direct UPDATE that also bumps the versions, so Redis looks behind and is republished.
    Scope.objects.filter(key="DU1").update(level="running", version=2)
    AuditHead.objects.filter(pk=1).update(state_version=2)
    alert = wait_for(lambda: Event.objects.filter(action="alert", detail__contains="database tampering").first(),
                     timeout=10)
    assert "account:DU1 is at running" in alert.detail and "the events say kill" in alert.detail
    wait_for(lambda: redis_client.hget("killswitch:state", "version") == "2", timeout=10)
    assert redis_client.hget("killswitch:state", "account:DU1") == "kill"
