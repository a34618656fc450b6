"""The seed's curl requests, exactly as README.md (the README's API section) prints
them, run by the real curl against a live HTTP server; bodies checked field by field."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime

import pytest

from killswitch.models import Event
from killswitch.runtime import clock
from killswitch.services.tokens import issue_token
from tests.conftest import wait_for
from tests.stack import ROOT

DOC = ROOT / "README.md"
ZULU = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed"),
]


def _doc_command(first_line_and_body: str) -> str:
    """The fenced curl command in README.md that contains this text."""
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    found = [b.strip() for b in blocks if b.startswith("curl -X POST") and first_line_and_body in b]
    assert len(found) == 1, f"README.md should show exactly one curl command with {first_line_and_body!r}"
    return found[0]


def _run(command: str, server: str, token: str) -> tuple[int, dict]:
    command = command.replace("http://localhost:8000", server)
    done = subprocess.run(
        ["bash", "-c", command + " -sS -w '\\n%{http_code}'"],
        env={"KILLSWITCH_TOKEN": token, "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=30, check=True,
    )
    body, _, status = done.stdout.rpartition("\n")
    return int(status), json.loads(body)


def _near_now(stamp: str) -> bool:
    when = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return abs((when - clock.now()).total_seconds()) < 120


def test_seed_activate_cooldown_and_deactivate_over_curl(live_server, risk_officer, redis_client):
    token = issue_token(username=risk_officer.username).key
    activate = _doc_command('{"action": "activate", "reason": "Market crash"}')
    deactivate = _doc_command('{"action": "deactivate"}')
    assert '-H "Authorization: Token $KILLSWITCH_TOKEN"' in activate

    status, body = _run(activate, live_server.url, token)
    assert status == 200
    assert body["status"] == "kill_switch_activated"
    assert body["reason"] == "Market crash"
    assert ZULU.match(body["activated_at"]) and _near_now(body["activated_at"])
    assert (body["level"], body["previous_level"], body["scope"], body["changed"]) == (
        "halt", "running", "global", True)
    assert body["version"] == 1
    assert ZULU.match(body["cooldown_until"])
    # Trading processes see it: the seed's Redis key.
    assert wait_for(lambda: redis_client.get("trading_switch") == "halt")

    clock.advance(minutes=23)
    status, body = _run(deactivate, live_server.url, token)
    assert status == 409
    assert body["error"] == "Kill switch cooldown active. 37 minutes remaining."
    assert body["message"] == "Kill switch cooldown active. 37 minutes remaining (cooldown: 60 minutes)."
    assert (body["code"], body["field"], body["scope"]) == ("cooldown_active", None, "global")
    assert redis_client.get("trading_switch") == "halt"

    clock.advance(minutes=37)
    status, body = _run(deactivate, live_server.url, token)
    assert status == 200
    assert body["status"] == "kill_switch_deactivated"
    assert ZULU.match(body["deactivated_at"]) and _near_now(body["deactivated_at"])
    assert (body["level"], body["previous_level"], body["changed"]) == ("running", "halt", True)
    assert wait_for(lambda: redis_client.get("trading_switch") == "running")

    events = list(Event.objects.order_by("seq").values_list("action", "outcome", "actor", "client_address"))
    assert events == [("activate", "applied", "rita_risk", "127.0.0.1"),
                      ("cooldown_violation", "refused", "rita_risk", "127.0.0.1"),
                      ("deactivate", "applied", "rita_risk", "127.0.0.1")]


def test_scoped_kill_example_and_anonymous_curl(live_server, trader, redis_client):
    token = issue_token(username=trader.username).key
    status, body = _run(_doc_command('"scope": "account:DU111111"'), live_server.url, token)
    assert status == 200
    assert (body["status"], body["level"], body["scope"], body["reason"]) == (
        "kill_switch_activated", "kill", "account:DU111111", "Runaway orders")
    assert wait_for(lambda: redis_client.hget("killswitch:state", "account:DU111111") == "kill")
    # The same request without a token: 401 in the error shape, audited.
    status, body = _run(_doc_command('{"action": "deactivate"}'), live_server.url, "")
    assert status == 401
    assert (body["code"], body["field"]) == ("authentication_failed", None)
    assert Event.objects.order_by("-seq").first().action == "refused"
