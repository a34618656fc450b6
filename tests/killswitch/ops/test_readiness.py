"""/healthz and /readyz against the real parts: the database, Redis, a live reconciler,
a real Celery worker, the paper broker and the fake IB gateway. Each component that
is down is named with its state; nothing waits on a component that hangs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.conf import settings

from brokers import config as broker_config
from killswitch import domain as L
from killswitch.ops import hooks
from killswitch.ops.hooks import ComponentState
from riskcontrol.embedded_redis import free_port
from tests.conftest import wait_for
from tests.fake_ib.gateway import FakeGateway

pytestmark = pytest.mark.django_db(transaction=True)


def test_healthz_answers_without_credentials_or_dependencies(client, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing there
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok" and response.json()["pid"] > 0


def test_ready_when_every_component_answers(client, reconciler, start_worker):
    worker = start_worker(Path(settings.RISK_LIMITS_PATH), queues="broker,notify")

    def ready():
        response = client.get("/readyz")
        return response if response.status_code == 200 else None

    try:
        body = wait_for(ready, timeout=30).json()
    finally:
        worker.stop()  # the other tests of this module run without one
    components = body["components"]
    assert body["status"] == "ready"
    assert {name: c["state"] for name, c in components.items()} == {
        "database": "ok", "redis": "ok", "reconciler": "ok", "workers": "ok", "brokers": "ok"}
    assert components["workers"]["answering"] == 1
    assert components["workers"]["queues"] == {"broker": 1, "notify": 1}
    assert components["reconciler"]["heartbeat_age_seconds"] <= components["reconciler"]["stale_after_seconds"]
    assert components["brokers"]["accounts"] == {"DRILL01": "connected", "DU111111": "connected",
                                                 "DU222222": "connected"}


def test_redis_down_is_named_and_its_password_never_shown(client, settings):
    settings.REDIS_URL = f"redis://:hunter2-secret@127.0.0.1:{free_port()}/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["components"]["redis"] == {"ok": False, "state": "down", "error": "ConnectionError"}
    assert body["components"]["reconciler"]["state"] == "down"
    assert body["components"]["database"]["state"] == "ok"
    assert "hunter2" not in response.content.decode()


def test_a_stale_heartbeat_and_no_worker_make_it_not_ready(client, redis_client):
    redis_client.set(L.KEY_HEARTBEAT, L.heartbeat_message(time.time() - 60, 3, stale_after=5))
    body = client.get("/readyz").json()
    assert body["components"]["reconciler"]["state"] == "stale"
    assert body["components"]["reconciler"]["heartbeat_age_seconds"] >= 60
    assert body["components"]["workers"] == {"ok": False, "state": "no worker on broker, notify", "answering": 0,
                                             "queues": {"broker": 0, "notify": 0}}
    redis_client.delete(L.KEY_HEARTBEAT)
    assert client.get("/readyz").json()["components"]["reconciler"]["state"] == "missing"


def test_a_hung_component_reads_timeout_and_is_not_started_twice(client, monkeypatch):
    calls = []

    def hung() -> ComponentState:
        calls.append(1)
        time.sleep(3)
        return ComponentState(True, "ok")

    monkeypatch.setitem(hooks._checks, "hung", hung)
    first = client.get("/readyz")
    assert first.status_code == 503
    assert first.json()["components"]["hung"]["state"] == "timeout"
    second = client.get("/readyz").json()["components"]["hung"]
    assert second == {"ok": False, "state": "timeout", "detail": "an earlier check is still waiting"}
    assert len(calls) == 1
    assert first.json()["components"]["database"]["state"] == "ok"  # the others still answered


def test_ib_accounts_are_connected_while_the_gateway_answers_the_handshake(client, monkeypatch):
    gateway = FakeGateway(accounts=("U1234567",)).start()
    parsed = broker_config.parse_brokers_config({
        "paper": {"accounts": ["DU111111"]},
        "ib": {"connections": [{"name": "primary", "host": "127.0.0.1", "port": gateway.port,
                                "accounts": ["U1234567"]}]}})
    monkeypatch.setattr(broker_config, "_cached", lambda: parsed)
    try:
        brokers = client.get("/readyz").json()["components"]["brokers"]
        assert brokers == {"ok": True, "state": "ok",
                           "accounts": {"DU111111": "connected", "U1234567": "connected"}}
        # The probe took no client id: the runs' own session still connects as client 90.
        from ib_async import IB

        ib = IB()
        ib.connect("127.0.0.1", gateway.port, clientId=90, timeout=5)
        assert ib.isConnected()
        ib.disconnect()
        assert gateway.internal_errors == []
    finally:
        gateway.stop()
    brokers = client.get("/readyz").json()["components"]["brokers"]
    assert brokers["state"] == "disconnected" and brokers["accounts"]["U1234567"] == "refused"
    assert brokers["accounts"]["DU111111"] == "connected"


def test_two_workers_on_one_queue_both_answer_and_either_does_the_work(client, reconciler, start_worker, trader):
    """Several Celery workers per queue need nothing more than starting them: both
    broker workers answer /readyz, and when one dies the other alone does the next
    activation's runs."""
    from brokers import demo as demo_data
    from brokers.models import BrokerRun
    from killswitch import services
    from tests.brokers.conftest import wait_runs_finished

    demo_data.seed_demo_data()
    notify = start_worker(Path(settings.RISK_LIMITS_PATH), queues="notify")
    first, second = (start_worker(Path(settings.RISK_LIMITS_PATH)) for _ in range(2))  # the broker queue

    def queues() -> dict[str, int] | None:
        workers = client.get("/readyz").json()["components"]["workers"]
        return workers["queues"] if workers["ok"] else None

    try:
        wait_for(lambda: queues() == {"broker": 2, "notify": 1}, timeout=20)
        services.activate(scope="global", level="halt", reason="both", actor=trader, source="api")
        runs = wait_runs_finished(timeout=60)
        assert [r.state for r in runs] == ["completed"] * 3  # DU111111, DU222222, DRILL01
        first.kill()
        wait_for(lambda: queues() == {"broker": 1, "notify": 1}, timeout=20)  # one broker worker is ready enough
        services.activate(scope="account:DU111111", level="kill", reason="one left", actor=trader, source="api")
        wait_for(lambda: BrokerRun.objects.count() == 4, timeout=10)
        assert {r.state for r in wait_runs_finished(timeout=60)} == {"completed"}
    finally:
        for worker in (first, second, notify):
            worker.stop()
