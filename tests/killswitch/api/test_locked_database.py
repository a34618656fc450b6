"""A locked database never turns a halt into a 500 or a 30 s hang.

Another connection holds the write lock (SQLite) or the audit head row (PostgreSQL).
The activation waits at most KILLSWITCH_DB_LOCK_TIMEOUT_MS (2 s) for it, then takes the
Redis path: every trading process obeys at once, the API answers 202 with the seed's
fields and `pending_audit: true`, and the audit event is written once the lock is gone.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager

import pytest
from django.conf import settings
from django.db import connection

from killswitch.models import AuditHead, Event, Scope
from tests.conftest import wait_for

from .conftest import URL

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def lock_held_by_another_connection():
    """Another session takes the lock an activation needs, as an unlucky operator would."""
    if connection.vendor == "sqlite":
        other = sqlite3.connect(settings.DATABASES["default"]["NAME"], timeout=1, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
        return
    import psycopg

    from riskcontrol.env import current_database_url

    with psycopg.connect(current_database_url()) as other:
        other.execute(f"SELECT * FROM {AuditHead._meta.db_table} FOR UPDATE")
        yield
        other.rollback()


def test_an_activation_behind_a_held_lock_answers_202_pending_audit_and_reaches_redis(
        client_for, trader, redis_client, reconciler):
    wait_for(lambda: redis_client.get("killswitch:heartbeat"))
    api = client_for(trader)
    with lock_held_by_another_connection():
        started = time.monotonic()
        response = api.post(URL, {"action": "activate", "reason": "Market crash", "level": "kill"}, format="json")
        took = time.monotonic() - started
        body = response.json()
        assert response.status_code == 202, body
        assert body["status"] == "kill_switch_activated" and body["pending_audit"] is True
        assert body["reason"] == "Market crash" and body["activated_at"].endswith("Z") and body["level"] == "kill"
        assert redis_client.get("trading_switch") == "kill"
        assert not Event.objects.filter(action="activate").exists()
    assert took < 10, f"the activation waited {took:.1f} s for the lock"  # a bound, not a speed claim
    # The lock is gone: the reconciler writes the audit event, marked as from the outage queue.
    event = wait_for(lambda: Event.objects.filter(action="activate", outcome="applied").first(), timeout=15)
    assert (event.actor, event.source, event.new_level) == ("tom_trader", "api", "kill")
    assert Scope.objects.get(kind="global").level == "kill"


def test_the_cli_activation_behind_a_held_lock_warns_and_still_halts(trader, redis_client):
    from killswitch import services

    result_box = {}

    def run():
        result_box["result"] = services.activate(scope="global", level="halt", reason="cli", actor="cli:ops",
                                                 source="cli")

    with lock_held_by_another_connection():
        thread = threading.Thread(target=run)
        thread.start()
        thread.join(timeout=15)
        assert not thread.is_alive(), "the activation hung behind the lock"
    result = result_box["result"]
    assert result.pending_audit and result.seq is None and result.at is not None
    assert redis_client.get("trading_switch") == "halt"
