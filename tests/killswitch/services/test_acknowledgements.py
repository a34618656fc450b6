"""Ingesting acknowledgements next to a peer that holds the processes' rows (real database, real Redis)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.db import DatabaseError, connection, transaction
from killswitch_client.contract import registration_entry

from killswitch import domain as L
from killswitch.models import TradingClient
from killswitch.services.acknowledgements import ingest_acknowledgements

pytestmark = pytest.mark.django_db(transaction=True)


def _register(redis_client, client_id: str) -> None:
    now = time.time()
    redis_client.xadd(L.KEY_CLIENTS, registration_entry(client_id, json.dumps({
        "client_id": client_id, "name": client_id, "host": "desk-3", "pid": 4242, "account": "DU1",
        "strategy": "momo", "version": None, "level": "running", "scope": "global", "cause": None,
        "acked_at": None, "registered_at": now - 5, "last_seen": now, "lib": "test"})))


def test_a_peer_holding_the_rows_costs_a_bounded_wait_and_loses_nothing(redis_client):
    # A reconciler frozen (SIGSTOP) inside its ingestion transaction keeps its row locks:
    # the leader that took over must not wait on them for as long as the peer is frozen
    # (its rounds, and with them the heartbeat and the judging of redis-cli writes, stop).
    _register(redis_client, "host:1:a")
    ingest_acknowledgements()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                TradingClient.objects.filter(client_id="host:1:a").update(name="held")
                held.set()
                release.wait(60)
        finally:
            connection.close()

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert held.wait(10)
    _register(redis_client, "host:1:a")  # something to write into the held row
    outcome: list[object] = []

    def ingest() -> None:
        try:
            ingest_acknowledgements()
            outcome.append("ingested")
        except DatabaseError as exc:
            outcome.append(exc)
        finally:
            connection.close()

    worker = threading.Thread(target=ingest, daemon=True)
    worker.start()
    worker.join(timeout=15)
    stuck = worker.is_alive()
    release.set()
    holder.join(10)
    worker.join(10)
    assert not stuck, "the ingestion waited on the held rows for as long as they were held"
    assert isinstance(outcome[0], DatabaseError)
    # the next round writes what that one could not (the streams' cursors did not move on)
    ingest_acknowledgements()
    assert TradingClient.objects.get(client_id="host:1:a").name == "host:1:a"
