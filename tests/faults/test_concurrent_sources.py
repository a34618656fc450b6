"""50 activations and deactivations at once from the API, the CLI and redis-cli, with a
trading process placing orders through its gate the whole time."""

from __future__ import annotations

import subprocess
import sys
import threading

import pytest
import redis
import requests

from killswitch import services
from killswitch.models import Event, Scope
from killswitch.services.tokens import issue_token
from tests.conftest import wait_for
from tests.faults.conftest import Probe, figure
from tests.stack import ROOT, Stack

pytestmark = pytest.mark.fault

POLICY = "kill_switch:\n  cooldown_minutes: 0\n"


@pytest.fixture
def zero_cooldown_stack(transactional_db, tmp_path):
    stack = Stack(tmp_path, policy=POLICY)  # zero cooldown: every resume is allowed
    yield stack
    stack.stop()


def test_fifty_concurrent_changes_from_three_sources(zero_cooldown_stack, probes, risk_officer):
    stack = zero_cooldown_stack
    stack.start("web", "reconciler")
    token = issue_token(username=risk_officer.username, name="drill").key
    client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
    probe = Probe(stack.redis.url, "DU1", orders=True)
    probes.append(probe)
    wait_for(lambda: (probe.current() or {}).get("level") == "running", timeout=20)

    answers: list[tuple[str, object]] = []
    lock = threading.Lock()

    def api(i: int) -> None:
        body = ({"action": "activate", "reason": f"api {i}", "level": ["pause", "halt", "kill"][i % 3]}
                if i % 2 else {"action": "deactivate"})
        r = requests.post(stack.base_url + "/api/risk/kill-switch", json=body, timeout=60,
                          headers={"Authorization": f"Token {token}"})
        with lock:
            answers.append(("api", r.status_code))

    def cli(i: int) -> None:
        args = (["activate", "--level", "halt", "--reason", f"cli {i}"] if i % 2 else ["deactivate"])
        r = subprocess.run([sys.executable, "manage.py", "killswitch", *args], cwd=ROOT, env=stack.env,
                           capture_output=True, text=True, timeout=120)
        with lock:
            answers.append(("cli", r.returncode))

    def redis_cli(i: int) -> None:
        client.set("trading_switch", ["halt", "running", "kill", "pause"][i % 4])
        with lock:
            answers.append(("redis", "OK"))

    jobs = [threading.Thread(target=[api, cli, redis_cli][i % 3], args=(i,)) for i in range(50)]
    for j in jobs:
        j.start()
    for j in jobs:
        j.join(180)
    assert len(answers) == 50
    assert all(code == 200 for kind, code in answers if kind == "api"), answers
    assert all(code == 0 for kind, code in answers if kind == "cli"), answers

    # Finally: one more activation decides; everything converges on it.
    final = services.activate(scope="global", level="halt", reason="settle", actor=risk_officer, source="api")
    wait_for(lambda: client.get("trading_switch") == "halt" and
             client.hget("killswitch:state", "version") == str(Scope.objects.get(kind="global").version),
             timeout=10)
    wait_for(lambda: (probe.current() or {}).get("level") == "halt"
             and probe.current()["version"] >= final.version, timeout=10)
    applied_at = next(v["t"] for v in probe.views() if v["version"] and v["version"] >= final.version)
    leaked = [o for o in probe.orders() if o["t"] > applied_at]
    figure("50 concurrent changes", "orders through the gate after halt applied", len(leaked))
    assert not leaked

    report = services.verify_audit_chain()
    assert report.ok, report.problem
    level = "running"
    for event in Event.objects.filter(scope_kind="global", outcome="applied").order_by("seq"):
        assert event.previous_level == level
        level = event.new_level
    assert level == Scope.objects.get(kind="global").level == "halt"
    api_cli_events = Event.objects.filter(source__in=["api", "cli"]).exclude(reason="settle").count()
    figure("50 concurrent changes", "API+CLI requests / their events",
           f"{sum(1 for k, _ in answers if k != 'redis')} / {api_cli_events}")
    assert api_cli_events == sum(1 for k, _ in answers if k != "redis")
    figure("50 concurrent changes", "events lost", 0)
