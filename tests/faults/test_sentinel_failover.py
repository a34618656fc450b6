"""A Redis failover under the running stack: master, replica and Sentinel from the bundled
redis-server; web, two reconcilers, a Celery worker and the sweep all find Redis through
the sentinel (REDIS_SENTINELS), as the service's ACL user; a trading process does too
(killswitch_client). The master is killed (SIGKILL) and the drill proves:

- no order passes the trading process's gate while the state is unknown (from the
  moment it loses Redis until it has read the state from the new master);
- the state is back on the new master within 10 s (the reconciler publishes onto it);
- an activation after the failover reaches the trading process;
- nothing is lost or doubled: the audit events, the Redis log, the state version, the
  broker run of the activation.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import requests

from brokers import demo as demo_data
from brokers.models import BrokerRun, RunKind
from killswitch import domain as L
from killswitch.models import Acknowledgement, Event
from killswitch.services.tokens import issue_token
from tests.conftest import wait_for
from tests.faults.conftest import Probe, figure
from tests.sentinels import MASTER_NAME, SentinelGroup
from tests.stack import ROOT, Stack

pytestmark = pytest.mark.fault

STATE_BACK_WITHIN = 10.0  # seconds from the master's death: the issue's bound


class SentinelProbe(Probe):
    """tests/faults/sentinel_probe.py: a trading process that finds Redis via Sentinel."""

    def __init__(self, sentinels: str, account: str, password: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.sentinel_probe", sentinels, MASTER_NAME, account], cwd=ROOT,
            env={**os.environ, "REDIS_PASSWORD": password}, stdout=subprocess.PIPE, text=True)
        self.lines: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


@pytest.fixture
def group():
    made = SentinelGroup(password="client-pw", acl={"killswitch": "service-pw"})
    yield made
    made.cleanup()


def test_a_master_killed_under_the_stack(transactional_db, tmp_path, group, trader, probes):
    import inspect

    import killswitch_client

    if "sentinels" not in inspect.signature(getattr(killswitch_client, "KillSwitch", lambda: None)).parameters:
        pytest.fail("killswitch_client.KillSwitch(sentinels=..., sentinel_master=...) is not installed: the "
                    "trading client's Sentinel support (clients/python) is needed by this drill")
    demo_data.seed_demo_data()
    stack = Stack(tmp_path, redis=group.master, extra_env={
        "REDIS_SENTINELS": group.sentinels, "REDIS_SENTINEL_MASTER": MASTER_NAME,
        "REDIS_SERVICE_PASSWORD": "service-pw"})
    try:
        _drill(stack, group, trader, probes)
    finally:
        stack.stop()


def _drill(stack: Stack, group: SentinelGroup, trader, probes) -> None:
    stack.start("web", "reconciler", "worker", "sweep")
    stack.start_process("reconciler", label="reconciler-b")
    token = issue_token(username=trader.username).key
    api = stack.base_url + "/api/risk/kill-switch"

    def activate(scope: str, level: str, reason: str) -> dict:
        response = requests.post(api, headers={"Authorization": f"Token {token}"}, timeout=10,
                                 json={"action": "activate", "scope": scope, "level": level, "reason": reason})
        assert response.status_code == 200, response.text
        return response.json()

    probe = SentinelProbe(group.sentinels, "DU111111", "client-pw")
    probes.append(probe)
    wait_for(lambda: (probe.current() or {}).get("level") == "running"
             and probe.current()["cause"] is None, timeout=30)
    before = activate("account:DU222222", "halt", "before the failover")
    wait_for(lambda: (probe.current() or {}).get("version") == before["version"], timeout=10)

    t_kill = time.time()
    group.master.stop(kill=True)
    fail_closed = wait_for(lambda: next((v for v in probe.views() if v["t"] > t_kill and v["cause"]), None),
                           timeout=10)
    figure("sentinel failover", "client failed closed after", f"{(fail_closed['t'] - t_kill) * 1000:.0f} ms "
           f"({fail_closed['cause']})")
    group.wait_failover()
    figure("sentinel failover", "sentinel promoted the replica after", f"{(time.time() - t_kill) * 1000:.0f} ms")

    # The state on the new master, within 10 s of the master's death: every level, the
    # version, and a heartbeat written after the failover (the reconciler publishes there).
    new_master = group.master_client()
    db_levels = {s["scope"]: s["level"] for s in requests.get(api, timeout=10, headers={
        "Authorization": f"Token {token}"}).json()["scopes"]}

    def state_back() -> bool:
        try:
            state = new_master.hgetall(L.KEY_STATE)
            beat = L.parse_heartbeat(new_master.get(L.KEY_HEARTBEAT))
        except Exception:  # the promotion is still settling
            return False
        return (L.version_of(state) == before["version"] and beat is not None and beat[0] > t_kill
                and all(L.levels_of(state).get(scope, L.RUNNING) == level for scope, level in db_levels.items()))

    wait_for(state_back, timeout=max(0.1, STATE_BACK_WITHIN - (time.time() - t_kill)), interval=0.05)
    figure("sentinel failover", "state and heartbeat on the new master after",
           f"{(time.time() - t_kill) * 1000:.0f} ms")
    recovered = wait_for(lambda: next((v for v in probe.views() if v["t"] > fail_closed["t"]
                                       and v["cause"] is None), None), timeout=15)
    assert (recovered["level"], recovered["version"]) == ("running", before["version"])
    figure("sentinel failover", "client trusted the state again after", f"{(recovered['t'] - t_kill) * 1000:.0f} ms")
    # From the moment the client lost Redis until it had read the whole state from the new
    # master, not one order. (In the few ms between the kill and the client noticing, its
    # state was still the switch's: nothing had changed in the database.)
    unknown = [o for o in probe.orders() if fail_closed["t"] <= o["t"] < recovered["t"]]
    assert unknown == []
    figure("sentinel failover", "orders let through while the state was unknown", len(unknown))
    figure("sentinel failover", "orders between the kill and the client noticing",
           len([o for o in probe.orders() if t_kill <= o["t"] < fail_closed["t"]]))

    # An activation after the failover reaches the trading process, and the broker run
    # it starts is done by the worker through the new master.
    t_after = time.time()
    after = activate("account:DU111111", "halt", "after the failover")
    assert after["changed"] and after["version"] == before["version"] + 1
    halted = wait_for(lambda: next((v for v in probe.views() if v["version"] == after["version"]), None),
                      timeout=10)
    assert halted["level"] == "halt" and halted["cause"] is None
    figure("sentinel failover", "activation after the failover reached the client in",
           f"{(halted['t'] - t_after) * 1000:.0f} ms")
    assert not [o for o in probe.orders() if o["t"] > halted["t"]]
    event = Event.objects.get(action="activate", scope_key="DU111111")
    run = wait_for(lambda: BrokerRun.objects.filter(kind=RunKind.SWITCH, event_seq=event.seq,
                                                    state="completed").first(), timeout=30)
    assert run.account == "DU111111"
    wait_for(lambda: Acknowledgement.objects.filter(version=after["version"]).exists(), timeout=10)

    # Nothing lost or doubled.
    activations = list(Event.objects.filter(action="activate").values_list("scope_key", "reason"))
    assert sorted(activations) == [("DU111111", "after the failover"), ("DU222222", "before the failover")]
    assert not Event.objects.filter(action__in=["out_of_band", "alert"]).exists()
    assert BrokerRun.objects.filter(kind=RunKind.SWITCH, event_seq=event.seq).count() == 1
    seqs = [json.loads(e)["seq"] for e in new_master.lrange(L.KEY_LOG, 0, -1)]
    assert sorted(seqs, reverse=True) == list(Event.objects.order_by("-seq").values_list("seq", flat=True))
    assert L.version_of(new_master.hgetall(L.KEY_STATE)) == after["version"]
    figure("sentinel failover", "events lost or doubled", 0)

    # Every component found the new master: /readyz through web, with the worker's answer.
    wait_for(lambda: requests.get(stack.base_url + "/readyz", timeout=10).status_code == 200, timeout=20)
