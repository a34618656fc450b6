"""Every client registers and acknowledges the versions it applies; the service shows
them (GET /api/risk/clients, `manage.py killswitch clients`), records how long each
change took to reach every connected process, and flags processes that did not
acknowledge within kill_switch.ack_timeout_seconds."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from killswitch_client import KillSwitch
from rest_framework.test import APIClient

from killswitch import services
from killswitch.models import Acknowledgement, Propagation, TradingClient
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def live_client(reconciler, redis_client):
    wait_for(lambda: redis_client.get("killswitch:heartbeat"))
    client = KillSwitch(settings.REDIS_URL, account="DU1", strategy="momo", name="momo-1",
                        exit_on_kill=False, backstop_interval=0.1)
    wait_for(lambda: client.check() == "running" and client.cause is None)
    yield client
    client.close()


def get_clients(user, **params):
    api = APIClient()
    api.force_authenticate(user)
    return api.get("/api/risk/clients", params)


def test_acknowledgement_is_visible_through_the_api_and_cli(live_client, risk_officer, viewer):
    result = services.activate(scope="account:DU1", level="halt", reason="Too much loss",
                               actor=risk_officer, source="api")
    wait_for(lambda: live_client.check() == "halt")
    wait_for(lambda: Propagation.objects.filter(event__seq=result.seq, complete=True).exists())

    row = TradingClient.objects.get(client_id=live_client.identity.client_id)
    assert (row.name, row.account, row.strategy, row.pid) == ("momo-1", "DU1", "momo", os.getpid())
    ack = Acknowledgement.objects.get(client=row, version=result.version)
    assert ack.level == "halt"

    response = get_clients(viewer)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["version"] == result.version
    [shown] = [c for c in body["clients"] if c["client_id"] == live_client.identity.client_id]
    assert (shown["level"], shown["scope"], shown["applied_version"]) == ("halt", "account:DU1", result.version)
    assert shown["connected"] and not shown["late"] and shown["cause"] == ""
    assert shown["acks"][0]["version"] == result.version and shown["acks"][0]["seconds"] >= 0
    [change] = [c for c in body["changes"] if c["seq"] == result.seq]
    assert (change["scope"], change["new_level"]) == ("account:DU1", "halt")
    assert (change["expected_clients"], change["acked_clients"], change["complete"]) == (1, 1, True)
    assert change["seconds_to_last_ack"] is not None and change["seconds_to_last_ack"] >= 0
    assert change["late_clients"] == []

    out = io.StringIO()
    call_command("killswitch", "clients", stdout=out)
    text = out.getvalue()
    assert "momo-1" in text and "halt" in text and "0 late" in text
    change = next(line.split() for line in text.splitlines() if f"#{result.seq}" in line)
    assert change[:2] == [str(result.version), f"#{result.seq}"] and "1/1" in change  # acked by 1 of 1


def test_reading_clients_needs_the_viewer_role(live_client, nobody):
    assert get_clients(nobody).status_code == 403
    assert APIClient().get("/api/risk/clients").status_code in (401, 403)


def test_a_process_that_does_not_acknowledge_in_time_is_flagged(live_client, risk_officer, viewer,
                                                                set_policy):
    set_policy(ack_timeout_seconds=0.5)
    program = textwrap.dedent("""
        import sys, time
        from killswitch_client import KillSwitch
        ks = KillSwitch(sys.argv[1], name="frozen-1", exit_on_kill=False)
        ks.wait_ready()
        while ks.check() != "running":
            time.sleep(0.02)
        print("ready", flush=True)
        while True:
            time.sleep(0.1)
    """)
    proc = subprocess.Popen([sys.executable, "-c", program, settings.REDIS_URL], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "ready"
        wait_for(lambda: TradingClient.objects.filter(name="frozen-1").exists())
        frozen_id = TradingClient.objects.get(name="frozen-1").client_id
        os.kill(proc.pid, signal.SIGSTOP)  # a hung process: connected, silent
        result = services.activate(scope="global", level="pause", reason="Fed", actor=risk_officer,
                                   source="api")

        def flagged():
            body = get_clients(viewer).json()
            late = {c["client_id"]: c["late"] for c in body["clients"]}
            return late.get(frozen_id) is True and late.get(live_client.identity.client_id) is False

        wait_for(flagged)
        wait_for(lambda: frozen_id in Propagation.objects.get(event__seq=result.seq).late_clients)
        prop = Propagation.objects.get(event__seq=result.seq)
        assert (prop.expected_clients, prop.complete) == (2, False)
        out = io.StringIO()
        call_command("killswitch", "clients", stdout=out)
        assert "1 late" in out.getvalue() and "LATE since" in out.getvalue()

        os.kill(proc.pid, signal.SIGCONT)  # it wakes up and applies the change
        wait_for(lambda: Propagation.objects.get(event__seq=result.seq).complete)
        prop = Propagation.objects.get(event__seq=result.seq)
        assert prop.acked_clients == 2 and frozen_id in prop.late_clients  # late, but acknowledged
        assert prop.seconds_to_last_ack > 0.5
        body = get_clients(viewer).json()
        assert {c["client_id"]: c["late"] for c in body["clients"]}[frozen_id] is False
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait()


def test_a_closed_client_is_shown_as_disconnected(live_client, viewer):
    client_id = live_client.identity.client_id
    wait_for(lambda: TradingClient.objects.filter(client_id=client_id).exists())
    live_client.close()
    wait_for(lambda: TradingClient.objects.get(client_id=client_id).disconnected_at is not None)
    assert client_id not in [c["client_id"] for c in get_clients(viewer).json()["clients"]]
    assert client_id in [c["client_id"] for c in get_clients(viewer, all="true").json()["clients"]]


def test_ingestion_errors_never_stop_the_reconciler(reconciler, redis_client):
    redis_client.set("killswitch:acks", "not a stream")  # XRANGE fails with WRONGTYPE
    wait_for(lambda: redis_client.get("killswitch:heartbeat"))
    redis_client.delete("killswitch:heartbeat")
    wait_for(lambda: redis_client.get("killswitch:heartbeat"))  # still running its rounds
