"""Output for people, and for programs (issue 14, item 2): every table has a header row;
a result is one line; structured log lines go to the log file, never into a command's
output unless asked (`--verbose`); `--json` prints exactly what the API answers, with
ISO 8601 UTC times ending in Z."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from brokers.demo import seed_demo_data
from brokers.models import BrokerRun
from brokers.runs import execute_run
from killswitch import services
from killswitch.services.tokens import issue_token
from tests.stack import ROOT

pytestmark = pytest.mark.django_db

ZULU = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def cli(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def api_get(user, url: str) -> dict:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {issue_token(username=user.username, name='t').key}")
    response = api.get(url)
    assert response.status_code == 200, response.content
    return response.json()


def times(value, path="") -> list[tuple[str, str]]:
    """Every (path, value) of a JSON document whose key names a time."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and (key.endswith("_at") or key in ("since", "timestamp", "cooldown_until",
                                                                         "activated_at", "deactivated_at")):
                found.append((f"{path}.{key}", item))
            found += times(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += times(item, f"{path}[{i}]")
    return found


def assert_zulu(document) -> None:
    stamps = times(document)
    assert stamps, "no time in the document"
    bad = [(p, v) for p, v in stamps if not ZULU.match(v)]
    assert bad == []


def header(text: str, line: int = 0) -> list[str]:
    return text.splitlines()[line].split()


def test_every_table_has_a_header_row(trader, risk_officer):
    seed_demo_data()
    result = services.activate(scope="account:DU111111", level="halt", reason="runaway", actor=trader, source="api")
    for run in BrokerRun.objects.filter(event_seq=result.seq):
        execute_run(run_id=run.pk)
    issue_token(username=trader.username, name="desk 3")
    assert header(cli("killswitch", "status")[0], 1)[:2] == ["SCOPE", "LEVEL"]
    assert header(cli("killswitch", "history")[0])[:3] == ["#", "TIME", "(UTC)"]
    assert header(cli("killswitch", "runs")[0])[:3] == ["RUN", "KIND", "LEVEL"]
    detail = cli("killswitch", "runs", "--id", str(BrokerRun.objects.get(account="DU111111").pk))[0]
    assert header(detail)[:2] == ["RUN", "KIND"] and "ACTION" in detail and "OUTCOME" in detail
    assert detail.count("cancelled") >= 3  # the demo account's working orders, each with its outcome
    assert header(cli("killswitch", "token", "--list")[0])[:2] == ["PREFIX", "USER"]
    assert header(cli("paper", "orders")[0])[:3] == ["ID", "ACCOUNT", "SIDE"]
    assert header(cli("paper", "positions")[0])[:3] == ["ACCOUNT", "SYMBOL", "CLASS"]
    clients = cli("killswitch", "clients")[0]
    assert "No trading process is connected" in clients and "VERSION  EVENT  SCOPE" in clients


def test_json_is_the_apis_answer_with_utc_times_ending_in_z(trader, viewer):
    seed_demo_data()
    result = services.activate(scope="account:DU111111", level="halt", reason="runaway", actor=trader, source="api")
    for run in BrokerRun.objects.filter(event_seq=result.seq):
        execute_run(run_id=run.pk)
    for args, url in ((["status"], "/api/risk/kill-switch"),
                      (["history", "--limit", "50"], "/api/risk/kill-switch/history?limit=50"),
                      (["clients"], "/api/risk/clients"),
                      (["runs", "--limit", "50"], "/api/risk/runs?limit=50")):
        printed = json.loads(cli("killswitch", *args, "--json")[0])
        answered = api_get(viewer, url)
        if "cooldown_remaining_seconds" in json.dumps(answered):  # counts down between the two reads
            for a, b in zip(printed["scopes"], answered["scopes"], strict=True):
                assert abs(a.pop("cooldown_remaining_seconds") - b.pop("cooldown_remaining_seconds")) <= 1
        if args[0] == "history":  # the API's page links to itself
            answered["next"] = None
        assert printed == answered, args
        if args[0] != "clients":
            assert_zulu(printed)


def test_activate_json_is_the_apis_shape(trader):
    printed = json.loads(cli("killswitch", "activate", "--reason", "Market crash", "--json")[0])
    assert set(printed) == {"status", "reason", "activated_at", "level", "previous_level", "scope", "changed",
                            "message", "version", "cooldown_until", "warnings"}
    assert printed["status"] == "kill_switch_activated" and printed["warnings"] == []
    assert_zulu(printed)
    again = json.loads(cli("killswitch", "activate", "--reason", "Market crash", "--json")[0])
    assert again["status"] == "kill_switch_activated" and again["changed"] is False
    assert again["activated_at"] == printed["activated_at"]


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("LOG_FORMAT", "KILLSWITCH_TESTING")}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=120)


@pytest.mark.django_db(transaction=True)
def test_a_command_prints_one_line_and_its_log_line_goes_to_the_file(tmp_path):
    from riskcontrol.env import current_database_url

    log = tmp_path / "killswitch.log"
    env = {"DATABASE_URL": current_database_url(), "LOG_FILE": str(log)}
    result = _manage("killswitch", "activate", "--reason", "Market crash", **env)
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("global is now halt (was running)\n", "")
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert any(e["msg"] == "kill switch activate applied" and e["reason"] == "Market crash" for e in entries)
    verbose = _manage("killswitch", "--verbose", "activate", "--reason", "again", **env)
    assert verbose.stdout == "global is already at halt\n"
    assert json.loads(verbose.stderr.splitlines()[0])["msg"] == "kill switch activate noop"
