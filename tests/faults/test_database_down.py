"""The database unavailable during an activation.

Decided behaviour (README runbook): the API and dashboard answer 503 and change nothing
(they cannot authenticate anyone without the database); the CLI — trusted, on the
server — still stops trading: the escalation goes straight to Redis, every client obeys
at once, and the full request is kept in Redis until the reconciler, with the database
back, writes it into the audit log. Resumes are refused (the cooldown lives in the
database). Nothing the user did is lost.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import redis
import requests

from killswitch.models import Event, Scope
from tests.conftest import wait_for
from tests.faults.conftest import Probe, figure, since
from tests.stack import ROOT

pytestmark = pytest.mark.fault

DEAD_DATABASE = "postgres://nobody:nothing@127.0.0.1:9/killswitch"  # nothing listens on port 9


def _cli(env, *args):
    return subprocess.run([sys.executable, "manage.py", "killswitch", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_activation_with_the_database_down_reaches_every_client_and_is_audited_later(stack, probes):
    stack.start_redis()
    probe = Probe(stack.redis.url, "DU1")
    probes.append(probe)
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    stack.start("reconciler")
    wait_for(lambda: (probe.current() or {}).get("level") == "running", timeout=20)
    stack.kill("reconciler")  # the database "goes down" for the reconciler too

    down = dict(stack.env, DATABASE_URL=DEAD_DATABASE)
    t0 = time.time()
    result = _cli(down, "activate", "--level", "kill", "--reason", "DB down, runaway strategy")
    assert result.returncode == 0, result.stderr
    assert "warning: the database is unavailable" in result.stderr
    assert client.get("trading_switch") == "kill"
    wait_for(lambda: (probe.current() or {}).get("level") == "kill", timeout=5)
    figure("database down", "CLI activation reached the client", since(t0))
    assert client.llen("killswitch:pending") == 1

    resume = _cli(down, "deactivate")
    assert resume.returncode == 1 and "database is unavailable" in resume.stderr
    assert client.get("trading_switch") == "kill"
    assert client.llen("killswitch:pending") == 2  # the refused resume is kept too

    stack.start_process("reconciler")  # the database is back
    t1 = time.time()
    wait_for(lambda: client.llen("killswitch:pending") == 0, timeout=20)
    figure("database down", "pending requests audited after recovery", since(t1))
    applied = Event.objects.get(action="activate", outcome="applied")
    assert (applied.new_level, applied.source, applied.reason) == ("kill", "cli", "DB down, runaway strategy")
    assert applied.actor.startswith("cli:")
    assert Event.objects.filter(detail__contains="while the database was unavailable").count() == 2
    assert Event.objects.filter(action="refused", detail__contains="deactivate").exists()
    assert Scope.objects.get(kind="global").level == "kill"
    wait_for(lambda: client.hget("killswitch:state", "version") == str(applied.version), timeout=5)
    assert client.get("trading_switch") == "kill"
    figure("database down", "events lost", 0)


def test_api_with_the_database_down_answers_503_and_changes_nothing(stack):
    stack.env["DATABASE_URL"] = DEAD_DATABASE
    stack.start("web")
    response = requests.post(stack.base_url + "/api/risk/kill-switch", timeout=30,
                             json={"action": "activate", "reason": "Market crash"},
                             headers={"Authorization": "Token ks_whatever"})
    assert response.status_code == 503
    body = response.json()
    assert body["code"] == "database_unavailable"
    assert "nothing was changed" in body["error"] and "redis-cli SET trading_switch halt" in body["error"]
    assert redis.Redis.from_url(stack.redis.url).get("trading_switch") is None
