"""deploy/: the Procfile starts every process the apps register, two of each run side by
side under honcho (one reconciler and one sweep lead), and the systemd units verify."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest
import redis
import requests
from honcho.environ import parse_procfile

from killswitch.runtime import processes
from killswitch.runtime.leadership import KEY_PREFIX
from riskcontrol.embedded_redis import EmbeddedRedis, free_port
from riskcontrol.env import current_database_url
from tests.conftest import wait_for
from tests.stack import ROOT

PROCFILE = ROOT / "deploy" / "Procfile"
UNITS = ROOT / "deploy" / "systemd"


UNIT_OF = {"web": "killswitch-web@.service", "notify-worker": "killswitch-notify-worker@.service",
           "reconciler": "killswitch-reconciler.service", "telegram": "killswitch-telegram.service",
           "broker-worker": "killswitch-broker-worker@.service", "sweep": "killswitch-sweep.service",
           "breakers": "killswitch-breakers.service"}


def test_the_procfile_and_the_units_start_exactly_the_registered_processes(settings):
    registered = {p.name: p for p in processes._processes.values()}  # telegram too (it is conditional)
    procfile = parse_procfile(PROCFILE.read_text()).processes
    assert list(procfile) == [p.name for p in processes.processes()]  # what runs with the default policy
    assert set(UNIT_OF) == set(registered)
    for name, process in registered.items():
        unit = (UNITS / UNIT_OF[name]).read_text()
        [exec_start] = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
        if name == "web":  # one daphne on the inherited socket (the Procfile: riskcontrol.serve runs N)
            assert exec_start.endswith("daphne --fd 3 riskcontrol.asgi:application")
            continue
        args = " ".join(process.argv[1:3])  # e.g. "-A riskcontrol", "manage.py killswitch"
        assert args in exec_start, f"{UNIT_OF[name]} does not run {process.argv}"
        if name in procfile:
            assert args in procfile[name]
        if "-Q" in process.argv:  # each worker on its own queue, as registered
            queue = process.argv[process.argv.index("-Q") + 1]
            assert f"-Q {queue}" in exec_start and f"-Q {queue}" in procfile[name]
        else:
            assert " ".join(process.argv[1:]) in exec_start


@pytest.mark.django_db(transaction=True)
def test_two_of_everything_under_honcho(tmp_path):
    server = EmbeddedRedis().start()
    port = free_port()
    env = {**os.environ, "DATABASE_URL": current_database_url(), "REDIS_URL": server.url, "PORT": str(port),
           "KILLSWITCH_TESTING": "1", "PYTHONUNBUFFERED": "1"}
    for name in ("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "CELERY_BROKER_URL"):
        env.pop(name, None)
    log = open(tmp_path / "honcho.log", "wb")
    honcho = subprocess.Popen([sys.executable, "-m", "honcho", "-f", str(PROCFILE), "-d", str(ROOT), "start",
                               "-c", "broker-worker=2,reconciler=2,sweep=2,breakers=2"], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT, start_new_session=True)
    client = redis.Redis.from_url(server.url, decode_responses=True)
    try:
        def ready():
            try:
                response = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
            except requests.RequestException:
                return None
            body = response.json()
            workers = body["components"]["workers"]
            return body if response.status_code == 200 and workers["queues"]["broker"] == 2 else None

        body = wait_for(ready, timeout=90, interval=0.5)
        assert body["components"]["reconciler"]["leader"]
        leaders = {loop: wait_for(lambda loop=loop: client.get(KEY_PREFIX + loop), timeout=30)
                   for loop in ("reconciler", "sweep", "breakers")}
        assert all(leaders.values())  # one of the two of each leads ...
        out = (tmp_path / "honcho.log").read_text(errors="replace")
        for name in ("web.1", "notify-worker.1", "broker-worker.1", "broker-worker.2", "reconciler.1",
                     "reconciler.2", "sweep.1", "sweep.2", "breakers.1", "breakers.2"):
            assert f"{name} " in out  # ... and every process was started
    finally:
        os.killpg(honcho.pid, signal.SIGTERM)
        try:
            honcho.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(honcho.pid, signal.SIGKILL)
            honcho.wait()
        log.close()
    # A clean stop released every lease (followers elsewhere would take over at once).
    assert [client.get(KEY_PREFIX + loop) for loop in ("reconciler", "sweep", "breakers")] == [None, None, None]
    server.cleanup()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_the_systemd_units_verify(tmp_path):
    for unit in UNITS.iterdir():
        if unit.name.endswith(".example"):
            continue
        text = unit.read_text().replace("/opt/killswitch", str(ROOT))
        name = unit.name.replace("@.", "@1.")
        (tmp_path / name).write_text(text)
        if "@" in unit.name:
            (tmp_path / unit.name).write_text(text)
    for unit in sorted(tmp_path.iterdir()):
        if unit.name.endswith("@.service"):
            continue
        done = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True,
                              text=True, cwd=tmp_path, timeout=60)
        problems = [line for line in done.stderr.splitlines() if "EnvironmentFile" not in line]
        assert done.returncode == 0 and problems == [], f"{unit.name}: {done.stderr}"


@pytest.mark.django_db(transaction=True)
def test_every_metric_the_alerts_and_the_dashboard_use_is_exported(client, monkeypatch, reconciler, redis_client):
    import json
    import re

    import yaml
    from prometheus_client.parser import text_string_to_metric_families

    from killswitch.ops import hooks

    monkeypatch.setitem(hooks._breakers, "one", lambda: [hooks.BreakerReading("loss", "loss", "global", False, 1.0)])
    wait_for(lambda: redis_client.get("killswitch:heartbeat"), timeout=10)
    text = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    exported = {family.name for family in text_string_to_metric_families(text)}  # declared, even without samples
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    expressions = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "killswitch.json").read_text())
    expressions += [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {re.sub(r"_(total|bucket|sum|count)$", "", name)
            for expr in expressions for name in re.findall(r"\bkillswitch_[a-z_]+", expr)}
    assert used and used - exported == set()
    # Every figure the issue asks for (counters without their _total, as families are named).
    assert {"killswitch_scope_level", "killswitch_transitions", "killswitch_propagation_seconds",
            "killswitch_clients", "killswitch_broker_runs", "killswitch_broker_actions",
            "killswitch_notifications", "killswitch_heartbeat_age_seconds", "killswitch_breaker_state",
            "killswitch_breaker_value", "killswitch_state_version"} <= exported
