from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from killswitch import services
from killswitch.models import AppendOnlyError, Event

pytestmark = pytest.mark.django_db


def _make_events(trader, n=3):
    for i in range(n):
        services.activate(scope=f"symbol:S{i}", level="halt", reason=f"r{i}", actor=trader, source="cli")


def test_events_cannot_be_edited_or_deleted_through_the_orm(trader):
    _make_events(trader, 1)
    event = Event.objects.get()
    event.reason = "forged"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        Event.objects.update(reason="forged")
    with pytest.raises(AppendOnlyError):
        Event.objects.all().delete()
    assert Event.objects.get().reason == "r0"


def test_the_database_refuses_a_raw_update(trader):
    _make_events(trader, 1)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE killswitch_event SET reason = 'forged'")
    assert Event.objects.get().reason == "r0"


def test_the_chain_verifies(trader, capsys):
    _make_events(trader, 5)
    report = services.verify_audit_chain()
    assert report.ok and report.checked == 5
    call_command("killswitch", "verify-audit")
    assert "audit chain OK: 5 events verified" in capsys.readouterr().out


def _drop_guard():
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE killswitch_event DISABLE TRIGGER killswitch_event_no_update")
        else:
            cursor.execute("DROP TRIGGER killswitch_event_no_update")


def test_a_changed_row_is_named_by_verify_audit(trader, capsys):
    _make_events(trader, 4)
    _drop_guard()  # an attacker with database access, bypassing the guard
    with connection.cursor() as cursor:
        cursor.execute("UPDATE killswitch_event SET reason = 'nothing happened' WHERE seq = 2")
    report = services.verify_audit_chain()
    assert (report.ok, report.first_bad_seq) == (False, 2)
    with pytest.raises(SystemExit) as exit_info:
        call_command("killswitch", "verify-audit")
    assert exit_info.value.code == 1
    assert "audit chain BROKEN at event #2: event #2 was changed after it was written" in capsys.readouterr().err


@pytest.mark.parametrize("removed, expected", [(2, 2), (4, 4)])
def test_a_removed_row_is_detected_even_the_last(trader, removed, expected):
    _make_events(trader, 4)
    _drop_guard()
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM killswitch_event WHERE seq = %s", [removed])
    report = services.verify_audit_chain()
    assert not report.ok and report.first_bad_seq == expected
    assert "missing" in report.problem or "removed" in report.problem
