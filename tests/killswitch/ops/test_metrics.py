"""/metrics: who may read it, and that every figure is what the database and Redis hold
after real activity (activations, a refusal, a broker run, a trading process that
acknowledged, deliveries, a breaker)."""

from __future__ import annotations

import ipaddress
import json
import time

import pytest
from django.db.models import Count
from killswitch_client.contract import registration_entry
from rest_framework.test import APIClient

from brokers import demo as demo_data
from brokers import runs as broker_runs
from brokers.models import BrokerRun, PaperOrder
from killswitch import domain as L
from killswitch import services
from killswitch.models import Event, Notification, NotificationStatus
from killswitch.ops import hooks
from killswitch.ops.hooks import BreakerReading
from killswitch.services.acknowledgements import ingest_acknowledgements
from killswitch.services.tokens import issue_token
from tests.conftest import wait_for

from .conftest import samples, value

pytestmark = pytest.mark.django_db(transaction=True)


def test_metrics_are_open_to_loopback_only_by_default(client):
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    refused = client.get("/metrics", REMOTE_ADDR="10.0.0.9")
    assert refused.status_code == 403
    assert refused.json()["error"] == ("/metrics is open to METRICS_ALLOWED_IPS (127.0.0.1/32, ::1/128); "
                                       "this request came from 10.0.0.9.")


def test_a_bearer_token_or_an_allowed_network_opens_them(client, settings):
    settings.METRICS_TOKEN = "scrape-secret"
    settings.METRICS_ALLOWED_NETWORKS = (ipaddress.ip_network("10.0.0.0/24"),)
    assert client.get("/metrics", REMOTE_ADDR="10.0.0.200").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403  # not listed any more
    token = client.get("/metrics", REMOTE_ADDR="192.0.2.1", HTTP_AUTHORIZATION="Bearer scrape-secret")
    assert token.status_code == 200
    wrong = client.get("/metrics", REMOTE_ADDR="192.0.2.1", HTTP_AUTHORIZATION="Bearer guess")
    assert (wrong.status_code, wrong.json()["code"]) == (401, "authentication_failed")
    assert wrong["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert "or send Authorization: Bearer" in client.get("/metrics", REMOTE_ADDR="192.0.2.1").json()["error"]


def test_levels_transitions_and_the_broker_run_as_the_database_has_them(scrape, trader, viewer):
    demo_data.seed_demo_data()
    working = PaperOrder.objects.filter(account__code="DU111111", status="working").count()
    services.activate(scope="account:DU111111", level="kill", reason="desk blew up", actor=trader, source="api")
    services.activate(scope="global", level="pause", reason="calm down", actor=trader, source="cli")
    refused = APIClient()
    refused.credentials(HTTP_AUTHORIZATION=f"Token {issue_token(username=viewer.username).key}")
    assert refused.post("/api/risk/kill-switch", {"action": "activate", "reason": "x"},
                        format="json").status_code == 403
    [run] = BrokerRun.objects.all()
    while BrokerRun.objects.get(pk=run.pk).state not in ("completed", "failed"):
        broker_runs.execute_run(run_id=run.pk)  # what a worker does, in this process

    found = scrape()
    assert value(found, "killswitch_scope_level", scope="account:DU111111") == 3
    assert value(found, "killswitch_scope_level", scope="global") == 1
    assert value(found, "killswitch_state_version") == 2
    assert value(found, "killswitch_transitions_total", action="activate", outcome="applied", source="api") == 1
    assert value(found, "killswitch_transitions_total", action="activate", outcome="applied", source="cli") == 1
    assert value(found, "killswitch_transitions_total", action="refused", outcome="refused", source="api") == 1
    assert value(found, "killswitch_broker_runs", state="completed") == 1
    assert value(found, "killswitch_broker_runs", state="failed") == 0
    cancelled = PaperOrder.objects.filter(account__code="DU111111", status="cancelled").count()
    assert cancelled == working > 0
    assert value(found, "killswitch_broker_actions_total", action="cancel", outcome="cancelled") == cancelled


def test_transition_counts_equal_a_count_of_every_event_scrape_after_scrape(scrape, trader):
    def counted() -> dict:
        rows = Event.objects.values_list("action", "outcome", "source").annotate(n=Count("id"))
        return {(a, o, s): n for a, o, s, n in rows}

    def scraped() -> dict:
        return {(dict(labels)["action"], dict(labels)["outcome"], dict(labels)["source"]): v
                for (name, labels), v in scrape().items() if name == "killswitch_transitions_total"}

    services.activate(scope="symbol:AAPL", level="halt", reason="r", actor=trader, source="api")
    assert scraped() == counted()
    for n in range(3):  # counted on from where the last scrape stopped
        services.activate(scope=f"strategy:s{n}", level="pause", reason="r", actor=trader, source="api")
        services.activate(scope=f"strategy:s{n}", level="pause", reason="again", actor=trader, source="api")
        assert scraped() == counted()
    assert scraped()[("activate", "noop", "api")] == 3


def register_client(redis_client, client_id: str, *, cause: str | None = None) -> None:
    """A trading process, as the README's contract tells one in any language to register."""
    now = time.time()
    redis_client.xadd(L.KEY_CLIENTS, registration_entry(client_id, json.dumps({
        "client_id": client_id, "name": client_id, "host": "desk-3", "pid": 4242, "account": "DU1",
        "strategy": "momo", "version": None, "level": "halt" if cause else "running", "scope": "global",
        "cause": cause, "acked_at": None, "registered_at": now - 5, "last_seen": now, "lib": "test"})))


def test_propagation_and_clients_from_real_acknowledgements(scrape, trader, redis_client):
    register_client(redis_client, "host:1:a")
    register_client(redis_client, "host:2:b", cause="heartbeat_stale")
    ingest_acknowledgements()
    result = services.activate(scope="global", level="halt", reason="r", actor=trader, source="api")
    for client_id, delay in (("host:1:a", 0.03), ("host:2:b", 0.2)):
        redis_client.xadd(L.KEY_ACKS, {"client_id": client_id, "version": result.version, "level": "halt",
                                       "acked_at": f"{Event.objects.get(seq=result.seq).created_at.timestamp() + delay:.6f}"})
    ingest_acknowledgements()

    found = scrape()
    assert value(found, "killswitch_propagation_seconds_count") == 1
    assert value(found, "killswitch_propagation_seconds_bucket", le="0.1") == 0
    assert value(found, "killswitch_propagation_seconds_bucket", le="0.25") == 1
    assert value(found, "killswitch_propagation_seconds_sum") == pytest.approx(0.2, abs=0.01)
    assert value(found, "killswitch_clients", state="connected") == 2
    assert value(found, "killswitch_clients", state="fail_closed") == 1
    assert value(found, "killswitch_clients", state="late") == 0


def test_deliveries_heartbeat_readiness_breakers_and_policy(scrape, trader, reconciler, redis_client,
                                                            monkeypatch):
    wait_for(lambda: redis_client.get(L.KEY_HEARTBEAT), timeout=10)  # the reconciler's first round
    result = services.activate(scope="global", level="halt", reason="r", actor=trader, source="api")
    event = Event.objects.get(seq=result.seq)
    for channel, status in (("a", NotificationStatus.SENT), ("b", NotificationStatus.SENT),
                            ("c", NotificationStatus.FAILED), ("d", NotificationStatus.RETRYING)):
        Notification.objects.create(event=event, channel=channel, kind="apprise", title="t", body="b",
                                    status=status)
    monkeypatch.setitem(hooks._breakers, "test", lambda: [
        BreakerReading("daily-loss", "loss", "account:DU1", tripped=True, value=-25_000.0),
        BreakerReading("dead-man", "dead_man", "global", tripped=False)])

    found = scrape()
    assert value(found, "killswitch_notifications_total", outcome="sent") == 2
    assert value(found, "killswitch_notifications_total", outcome="failed") == 1
    assert 0 <= value(found, "killswitch_heartbeat_age_seconds") <= value(
        found, "killswitch_heartbeat_stale_after_seconds") == 5
    assert value(found, "killswitch_component_ready", component="database") == 1
    assert value(found, "killswitch_component_ready", component="workers") == 0  # none started here
    assert value(found, "killswitch_breaker_state", name="daily-loss", kind="loss", scope="account:DU1") == 1
    assert value(found, "killswitch_breaker_state", name="dead-man", kind="dead_man", scope="global") == 0
    assert value(found, "killswitch_breaker_value", name="daily-loss") == -25_000
    assert value(found, "killswitch_breaker_value", name="dead-man") is None
    [digest] = [dict(labels)["digest"] for name, labels in found if name == "killswitch_policy_info"]
    assert len(digest) == 16


def test_a_family_that_cannot_be_read_is_flagged_and_the_rest_served(client, monkeypatch):
    def broken():
        raise RuntimeError("the breaker engine is down")

    monkeypatch.setitem(hooks._breakers, "broken", broken)
    found = samples(client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode())
    assert value(found, "killswitch_metrics_errors", family="breakers") == 1
    assert value(found, "killswitch_scope_level", scope="global") == 0
