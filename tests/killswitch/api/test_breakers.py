"""The breakers as people reach them: the dead-man's switch over the API (armed,
renewed, expired; refusals audited), `manage.py killswitch breakers`, GET
/api/risk/breakers, the resume answer's open items, and what every view says when no
breaker process runs."""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.core.management import call_command
from prometheus_client.parser import text_string_to_metric_families

from brokers import config as broker_config
from brokers import demo as demo_data
from brokers.adapters import paper
from brokers.feeds import BrokerFeed
from killswitch import services as ks
from killswitch.breakers import config as breaker_config
from killswitch.breakers.engine import Engine
from killswitch.models import Event
from killswitch.runtime.leadership import Lease
from killswitch.services.authorization import ACTIVATE, DEACTIVATE
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

LOSS = {"name": "desk-loss", "kind": "max_loss", "scope": "account:DU111111", "level": "halt", "limit": 500}
DEAD_MAN = {"name": "ops-loop", "kind": "dead_man", "scope": "account:DU111111", "level": "halt",
            "timeout_seconds": 3}
BROKERS = {"paper": {"accounts": ["DU111111", "DU222222"]}}


@pytest.fixture
def configure(monkeypatch, redis_client):
    parsed_brokers = broker_config.parse_brokers_config(BROKERS)
    monkeypatch.setattr(broker_config, "_cached", lambda: parsed_brokers)

    def apply(*entries):
        parsed = breaker_config.parse_breakers(list(entries))
        monkeypatch.setattr(breaker_config, "_cached", lambda: parsed)
        return parsed

    return apply


@pytest.fixture
def loop(configure):
    stops: list[tuple[threading.Event, threading.Thread]] = []

    def start(*entries):
        engine = Engine(breakers=configure(*entries), feeds=[BrokerFeed()], interval=0.1, lease=Lease("breakers", ttl=2))
        stop = threading.Event()
        thread = threading.Thread(target=engine.run_forever, args=(stop,), daemon=True)
        thread.start()
        stops.append((stop, thread))
        return engine

    yield start
    for stop, thread in stops:
        stop.set()
        thread.join(timeout=10)


def api(client_for, user, method: str, url: str):
    response = getattr(client_for(user), method)(url)
    return response.status_code, response.json()


def breaker_row(client_for, user, name: str) -> dict:
    status, body = api(client_for, user, "get", "/api/risk/breakers")
    assert status == 200
    return next(r for r in body["breakers"] if r["name"] == name)


def cli(capsys, *args) -> str:
    call_command("killswitch", "breakers", *args)
    return capsys.readouterr().out


def test_the_dead_mans_switch_is_armed_renewed_and_expires(loop, client_for, trader, viewer):
    loop(DEAD_MAN)
    wait_for(lambda: breaker_row(client_for, viewer, "ops-loop")["state"] == "idle")
    status, renewed = api(client_for, trader, "post", "/api/risk/deadman/ops-loop")
    assert status == 200
    assert (renewed["name"], renewed["timeout_seconds"], renewed["renewed_by"], renewed["scope"], renewed["level"]) == (
        "ops-loop", 3.0, "api:tom_trader", "account:DU111111", "halt")
    assert renewed["expires_at"] > renewed["renewed_at"]
    row = wait_for(lambda: (r := breaker_row(client_for, viewer, "ops-loop"))["state"] == "armed" and r)
    assert row["figure"].startswith("no heartbeat for ") and row["figure"].endswith("(last from api:tom_trader)")
    for _ in range(8):  # renewed well within its timeout for longer than the timeout: it never trips
        time.sleep(0.5)
        assert api(client_for, trader, "post", "/api/risk/deadman/ops-loop")[0] == 200
    assert not Event.objects.filter(actor="breaker:ops-loop").exists()
    trip = wait_for(lambda: Event.objects.filter(actor="breaker:ops-loop", action="activate").first(), timeout=10)
    assert (trip.outcome, trip.scope_label, trip.new_level, trip.source) == (
        "applied", "account:DU111111", "halt", "automatic")
    assert "tripped: no heartbeat for 3." in trip.reason and "(last from api:tom_trader), beyond its limit 3 s" in trip.reason
    row = wait_for(lambda: (r := breaker_row(client_for, viewer, "ops-loop"))["state"] == "tripped" and r)
    assert row["last_trip"]["seq"] == trip.seq and row["latch"]["seq"] == trip.seq


def test_renewing_needs_the_trader_role_and_a_configured_name_and_each_refusal_is_audited(
        configure, client_for, trader, viewer):
    configure(DEAD_MAN, LOSS)
    status, body = api(client_for, viewer, "post", "/api/risk/deadman/ops-loop")
    assert (status, body["code"]) == (403, "forbidden")
    status, body = api(client_for, trader, "post", "/api/risk/deadman/opsloop")
    assert (status, body["code"], body["field"]) == (404, "not_found", "name")
    assert body["error"] == "No dead_man breaker named 'opsloop' in the policy; configured: ops-loop."
    status, body = api(client_for, trader, "post", "/api/risk/deadman/desk-loss")  # not a dead_man
    assert status == 404
    assert api(client_for, None, "post", "/api/risk/deadman/ops-loop")[0] == 401
    refused = list(Event.objects.filter(action="refused").values_list("actor", "detail"))
    assert ("vera_viewer", "renew dead-man's switch ops-loop: vera_viewer may not activate the kill switch; the "
                           "trader role is required.") in refused
    assert ("tom_trader", "renew dead-man's switch opsloop: No dead_man breaker named 'opsloop' in the policy; "
                          "configured: ops-loop.") in refused


def test_the_cli_the_api_and_metrics_show_the_figure_the_limit_the_state_and_the_last_trip(
        loop, capsys, client_for, viewer, client):
    demo_data.seed_demo_data()
    loop(LOSS, DEAD_MAN)
    wait_for(lambda: breaker_row(client_for, viewer, "desk-loss")["state"] == "armed")
    paper.set_price("AAPL", "184")
    trip = wait_for(lambda: Event.objects.filter(actor="breaker:desk-loss", action="activate").first())
    wait_for(lambda: breaker_row(client_for, viewer, "desk-loss")["state"] == "tripped")
    out = cli(capsys)
    assert "2 breaker(s); evaluated by " in out
    line = next(x for x in out.splitlines() if x.startswith("desk-loss"))
    assert line.split()[:6] == ["desk-loss", "max_loss", "account:DU111111", "halt", "tripped", "-500.00"]
    assert f"#{trip.seq} " in line and line.endswith("-> halt")
    assert "now: P&L -600.00 USD since 00:00 UTC" in out
    assert next(x for x in out.splitlines() if x.startswith("ops-loop")).split()[4] == "idle"
    rows = {r["name"]: r for r in json.loads(cli(capsys, "--json"))["breakers"]}
    assert (rows["desk-loss"]["state"], rows["desk-loss"]["last_trip"]["seq"]) == ("tripped", trip.seq)
    row = breaker_row(client_for, viewer, "desk-loss")
    assert (row["kind"], row["scope"], row["level"], row["limit"], row["display"]) == (
        "max_loss", "account:DU111111", "halt", "-500.00 USD", -600.0)
    assert row["figure"].startswith("P&L -600.00 USD since 00:00 UTC")
    assert api(client_for, None, "get", "/api/risk/breakers")[0] == 401
    # /metrics: killswitch_breaker_state and killswitch_breaker_value (in the limit's unit, a loss)
    metrics = {(s.name, frozenset(s.labels.items())): s.value for family in text_string_to_metric_families(
        client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()) for s in family.samples}
    labels = frozenset({"name": "desk-loss", "kind": "max_loss", "scope": "account:DU111111"}.items())
    assert metrics[("killswitch_breaker_state", labels)] == 1
    assert metrics[("killswitch_breaker_state", frozenset({"name": "ops-loop", "kind": "dead_man",
                                                           "scope": "account:DU111111"}.items()))] == 0
    assert metrics[("killswitch_breaker_value", frozenset({"name": "desk-loss"}.items()))] == 600


def test_a_resume_answer_names_the_breaker_still_beyond_its_limit_which_then_trips_again(
        loop, client_for, risk_officer, set_policy):
    set_policy(cooldown_minutes=0)
    demo_data.seed_demo_data()
    loop(LOSS)
    wait_for(lambda: breaker_row(client_for, risk_officer, "desk-loss")["state"] == "armed")
    paper.set_price("AAPL", "184")
    wait_for(lambda: breaker_row(client_for, risk_officer, "desk-loss")["state"] == "tripped")
    response = client_for(risk_officer).post("/api/risk/kill-switch", {"action": "deactivate",
                                             "scope": "account:DU111111"}, format="json")
    assert response.status_code == 200
    [still] = response.json()["open"]["breakers"]
    assert (still["name"], still["still_beyond_limit"]) == ("desk-loss", True)
    assert still["note"] == "still beyond its limit: resuming trips it again at once"
    wait_for(lambda: Event.objects.filter(actor="breaker:desk-loss", action="activate").count() == 2)


def test_without_a_breaker_process_every_view_says_its_readings_are_unknown(configure, capsys, client_for, viewer):
    configure(LOSS)
    out = cli(capsys)
    assert "NOTE: no breaker process has evaluated yet" in out
    assert next(x for x in out.splitlines() if x.startswith("desk-loss")).split()[4] == "unknown"
    status, body = api(client_for, viewer, "get", "/api/risk/breakers")
    assert (status, body["fresh"], body["breakers"][0]["state"]) == (200, False, "unknown")
    assert body["breakers"][0]["limit"] == "-500.00"  # no reading yet: the account's currency is not known


def test_a_breaker_may_only_activate():
    actor = ks.Actor.system("breaker:desk-loss")
    assert actor.may(ACTIVATE) and not actor.may(DEACTIVATE)
    with pytest.raises(ks.PermissionRefused, match="breaker:desk-loss may not deactivate"):
        ks.deactivate(scope="global", actor=actor, source="automatic", reason="never")
