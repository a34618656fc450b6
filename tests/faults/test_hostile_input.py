"""Hostile input on every entry point: API, CLI, Redis values, WebSocket frames, config.
Each is refused clearly, changes nothing, and (where it was an attempt to act) is audited."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import redis
import requests
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from killswitch.models import Event, Scope
from killswitch.services.tokens import issue_token
from riskcontrol.asgi import application
from tests.conftest import wait_for
from tests.faults.conftest import Probe, figure
from tests.stack import ROOT

pytestmark = pytest.mark.fault

HOSTILE_BODIES = [
    b"", b"{", b"null", b"[]", b'"activate"', b"\xff\xfe\x00garbage",
    json.dumps({"action": "activate", "reason": "x" * 100_000}).encode(),
    json.dumps({"action": "activate", "reason": "crash", "level": "KILL; DROP TABLE"}).encode(),
    json.dumps({"action": "activate", "reason": "crash", "scope": "account:" + "A" * 500}).encode(),
    json.dumps({"action": "activate", "reason": "crash", "scope": "account:DU1\nglobal"}).encode(),
    json.dumps({"action": "activate", "reason": "\x00\x1b[31mred"}).encode(),
    json.dumps({"action": "activate", "reason": ["a", "b"]}).encode(),
    json.dumps({"action": {"$ne": 1}}).encode(),
    json.dumps({"action": "deactivate", "level": "kill"}).encode(),
    json.dumps({"a" * 10: [[[[[[[[[[[]]]]]]]]]]]}).encode(),
]


def _state():
    return sorted(Scope.objects.values_list("kind", "key", "level"))


def test_hostile_api_bodies_are_400s_that_change_nothing_and_are_audited(stack, trader):
    stack.start("web")
    token = issue_token(username=trader.username, name="hostile").key
    before, events_before = _state(), Event.objects.count()
    codes = []
    for body in HOSTILE_BODIES:
        r = requests.post(stack.base_url + "/api/risk/kill-switch", data=body, timeout=30,
                          headers={"Authorization": f"Token {token}", "Content-Type": "application/json"})
        codes.append(r.status_code)
        assert r.status_code == 400, (body[:80], r.status_code, r.text[:300])
        assert r.json()["error"]
    assert _state() == before
    audited = Event.objects.count() - events_before
    figure("hostile API bodies", "answers 400 / audited", f"{codes.count(400)}/{len(codes)} / {audited}")
    assert audited == len(HOSTILE_BODIES)


@pytest.mark.parametrize("args, message", [
    (["activate", "--scope", "account:$(rm -rf /)", "--reason", "x"], "Invalid scope"),
    (["activate", "--scope", "account:" + "A" * 300, "--reason", "x"], "at most 64"),
    (["activate", "--reason", "x" * 5000], "at most 500"),
    (["activate", "--reason", "bell\x07"], "control characters"),
    (["deactivate", "--scope", "planet:mars"], "unknown scope kind"),
])
def test_hostile_cli_arguments_exit_non_zero_and_change_nothing(stack, args, message):
    stack.start_redis()
    before = _state()
    r = subprocess.run([sys.executable, "manage.py", "killswitch", *args], cwd=ROOT, env=stack.env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and message in r.stderr, r.stderr
    assert _state() == before
    assert Event.objects.filter(outcome="refused").exists()


def test_hostile_redis_values_are_reverted_and_clients_fail_closed(stack, probes):
    stack.start("reconciler")
    client = redis.Redis.from_url(stack.redis.url)
    probe = Probe(stack.redis.url, "DU1")
    probes.append(probe)
    wait_for(lambda: (probe.current() or {}).get("level") == "running", timeout=20)
    for value in [b"\xff\xfe\x00", b"kill\x00", b"running" * 1000, "\u202ehalt".encode()]:
        client.set("trading_switch", value)
        wait_for(lambda: client.get("trading_switch") == b"running", timeout=3)
    client.hset("killswitch:state", "global", "banana")
    client.hset("killswitch:state", "version", "not-a-number")
    client.publish("killswitch:updates", b"\xff not json")
    client.publish("killswitch:updates", json.dumps({"type": "state", "version": "x", "levels": 7}))
    wait_for(lambda: client.hget("killswitch:state", "global") == b"running", timeout=5)
    assert probe.proc.poll() is None  # the trading process never crashed
    assert all(v["level"] in ("running", "halt") for v in probe.views())  # garbage read as halt, never worse
    wait_for(lambda: (probe.current() or {}).get("level") == "running", timeout=10)
    reverted = Event.objects.filter(action="out_of_band", outcome="reverted").count()
    figure("hostile Redis values", "reverted and recorded", reverted)
    assert reverted >= 3
    assert Scope.objects.get(kind="global").level == "running"


# database_sync_to_async closes the worker thread's connection afterwards: a session left
# open there would keep PostgreSQL from dropping the test database.
@database_sync_to_async
def _cookie(user) -> bytes:
    c = Client()
    c.force_login(user)
    return f"sessionid={c.cookies['sessionid'].value}".encode()


@pytest.mark.django_db(transaction=True)
async def test_hostile_websocket_frames_change_nothing(risk_officer):
    headers = [(b"origin", b"http://localhost:8000"), (b"host", b"localhost:8000"),
               (b"cookie", await _cookie(risk_officer))]
    ws = WebsocketCommunicator(application, "/ws/risk/", headers=headers)
    assert (await ws.connect(timeout=5))[0]
    await ws.receive_json_from(timeout=5)  # hello
    frames = ['{"type": "activate", "scope": "global", "level": "kill", "reason": "x"}',
              "x" * 200_000, '{"type": ' * 1000, json.dumps({"type": "ping", "extra": [1] * 10000})]
    for frame in frames:
        await ws.send_to(text_data=frame)
        reply = await ws.receive_json_from(timeout=5)
        assert reply["kind"] in ("error", "pong")
    await ws.send_to(bytes_data=b"\x00\xff")
    assert (await ws.receive_json_from(timeout=5))["kind"] == "error"
    await ws.disconnect()
    assert await database_sync_to_async(lambda: Scope.objects.get(kind="global").level)() == "running"


def test_a_hostile_config_file_stops_every_process_at_start(stack, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kill_switch:\n  cooldown_minutes: !!python/object/apply:os.system ['echo pwned']\n")
    env = dict(stack.env, RISK_LIMITS_PATH=str(bad))
    r = subprocess.run([sys.executable, "manage.py", "killswitch", "status"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "pwned" not in r.stdout
    assert "not valid YAML" in r.stderr or "is invalid" in r.stderr
