"""event_recorded receivers run inside the event's transaction: a failure rolls back
the receiver alone, never hides a transaction that was lost with it."""

from __future__ import annotations

import pytest
from django.db import connection

from killswitch import services
from killswitch.models import Event, Scope
from killswitch.runtime.hooks import event_recorded

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def receiver():
    """Connect a receiver for one test."""
    connected: list[str] = []

    def connect(function) -> None:
        event_recorded.connect(function, dispatch_uid="tests.hook")
        connected.append("tests.hook")

    yield connect
    for uid in connected:
        event_recorded.disconnect(dispatch_uid=uid)


def test_a_failing_receiver_is_rolled_back_alone(receiver, trader, redis_client):
    def broken(*, event, changed):
        Scope.objects.create(kind="symbol", key="WRITTEN_BY_RECEIVER")
        raise RuntimeError("receiver bug")

    receiver(broken)
    result = services.activate(scope="global", level="halt", reason="r", actor=trader, source="api")
    assert result.changed and not result.pending_audit
    assert Scope.objects.get(kind="global").level == "halt"
    assert not Scope.objects.filter(key="WRITTEN_BY_RECEIVER").exists()  # its savepoint undone
    assert Event.objects.filter(seq=result.seq, outcome="applied").exists()


def test_a_receiver_that_loses_the_transaction_never_reports_an_applied_change(receiver, trader,
                                                                              redis_client):
    """As when the connection drops mid-receiver: the savepoint cannot be rolled back. The
    activation must not answer "applied" for a change that never committed; it takes the
    database-failure path instead (Redis escalated at once, audited when the database is back)."""

    def loses_transaction(*, event, changed):
        with connection.cursor() as cursor:
            cursor.execute("ROLLBACK")  # the whole transaction is gone
        raise RuntimeError("connection lost")

    receiver(loses_transaction)
    result = services.activate(scope="global", level="halt", reason="r", actor=trader, source="api")
    assert result.pending_audit and result.seq is None
    assert redis_client.get("trading_switch") == "halt"  # trading stops anyway
    assert redis_client.llen("killswitch:pending") == 1  # and the audit event is owed
    assert Scope.objects.get(kind="global").level == "running"
    assert not Event.objects.filter(action="activate").exists()
