"""A breaker trips while the database is down: an escalation never waits for the
database, so the trip takes the services' Redis path (every client obeys at once), is
kept in Redis, and is audited as the breaker's — once — when the database is back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import yaml
from django.conf import settings
from killswitch_client import KillSwitch

from killswitch.models import Event
from tests.conftest import wait_for
from tests.faults.conftest import figure, since
from tests.stack import ROOT, Stack

pytestmark = pytest.mark.fault

DEAD_DATABASE = "postgres://nobody:nothing@127.0.0.1:9/killswitch"  # nothing listens on port 9
LOOP = {"name": "signal-loop", "kind": "dead_man", "scope": "global", "level": "halt", "timeout_seconds": 1}


def test_a_dead_mans_switch_expiring_with_the_database_down_halts_at_once_and_is_audited_later(
        transactional_db, tmp_path: Path):
    policy = yaml.safe_load(Path(settings.RISK_LIMITS_PATH).read_text())
    policy["breakers"] = [LOOP]
    stack = Stack(tmp_path, policy=yaml.safe_dump(policy, sort_keys=False))
    breakers = None
    try:
        stack.start("reconciler")
        client = redis.Redis.from_url(stack.redis.url, decode_responses=True)
        wait_for(lambda: client.get("trading_switch") == "running", timeout=30)
        stack.kill("reconciler")  # the database "goes down" for the reconciler too
        with open(tmp_path / "breakers.log", "wb") as log:
            breakers = subprocess.Popen([sys.executable, "manage.py", "killswitch", "breakers", "run"], cwd=ROOT,
                                        env=dict(stack.env, DATABASE_URL=DEAD_DATABASE), stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(lambda: client.hexists("killswitch:breakers:readings", "_round"), timeout=60)  # evaluating
        switch = KillSwitch(stack.redis.url, name="signal-loop-1", report_interval=0.2, exit_on_kill=False)
        switch.start()
        switch.heartbeat("signal-loop")
        renewed = wait_for(lambda: client.hget("killswitch:deadman", "signal-loop"), timeout=30)
        switch.close()  # the trading loop dies
        wait_for(lambda: client.get("trading_switch") == "halt", timeout=15)
        expired_at = float(json.loads(renewed)["at"]) + LOOP["timeout_seconds"]
        figure("breaker, database down", "dead man expired -> trading_switch halt", since(expired_at))
        assert client.llen("killswitch:pending") == 1
        time.sleep(1.5)  # the breach lasts: still one trip
        assert client.llen("killswitch:pending") == 1

        stack.start_process("reconciler")  # the database is back
        wait_for(lambda: client.llen("killswitch:pending") == 0, timeout=30)
        [trip] = Event.objects.filter(actor="breaker:signal-loop", action="activate", outcome="applied")
        assert (trip.source, trip.new_level, trip.scope_label) == ("automatic", "halt", "global")
        assert "Breaker signal-loop (dead_man) tripped: no heartbeat for 1." in trip.reason
        # The outage queue's companion record says when it was asked and that it was applied as that event.
        [note] = Event.objects.filter(actor="breaker:signal-loop", action="activate", outcome="noop")
        assert "while the database was unavailable" in note.detail and f"Applied as event #{trip.seq}." in note.detail
        time.sleep(1.0)
        assert Event.objects.filter(actor="breaker:signal-loop", action="activate").count() == 2
        assert not Event.objects.filter(action="alert", detail__contains="pending:dead").exists()
    finally:
        if breakers is not None and breakers.poll() is None:
            os.killpg(breakers.pid, signal.SIGTERM)
            breakers.wait(timeout=20)
        stack.stop()
