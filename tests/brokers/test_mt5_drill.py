"""`manage.py killswitch drill --account <MT5 login>` on a demo account of our fake
terminal: the real command in its own process, starting its own reconciler, Celery
worker and clients; the worker reaches the terminal over the rpyc bridge. And the
refusals: a real or contest account, PAPER_ONLY, mixing brokers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command

from brokers import config as broker_config
from brokers.models import BrokerRun
from killswitch.models import Event
from tests.fake_mt5.harness import FakeMT5

ROOT = Path(settings.BASE_DIR)
LOGIN = 5012345
RUNS = {"max_attempts": 3, "retry_backoff_seconds": 0.3, "retry_backoff_max_seconds": 1, "verify_rounds": 3,
        "lease_seconds": 5}


def section(port: int) -> dict:
    return {"paper": {"accounts": ["DRILL01"]},
            "mt5": {"terminals": [{"name": "demo", "host": "127.0.0.1", "port": port, "accounts": [LOGIN],
                                   "timeout_seconds": 3, "drill_symbols": ["EURUSD", "USDJPY", "GBPUSD"],
                                   "strategy_magics": {"momentum": 4242}}]},
            "runs": RUNS}


@pytest.fixture(scope="module")
def fake_process() -> Iterator[FakeMT5]:
    fake = FakeMT5.start(login=LOGIN)
    yield fake
    fake.stop()


@pytest.fixture
def fake(fake_process, monkeypatch, settings) -> FakeMT5:
    fake_process.reset(netting=False)
    parsed = broker_config.parse_brokers_config(section(fake_process.port))
    monkeypatch.setattr(broker_config, "_cached", lambda: parsed)
    settings.PAPER_ONLY = False
    return fake_process


def refused(*args: str) -> tuple[int, str]:
    err = StringIO()
    try:
        call_command("killswitch", "drill", *args, stdout=StringIO(), stderr=err)
    except SystemExit as exit_:
        return int(exit_.code), err.getvalue()
    return 0, err.getvalue()


@pytest.mark.django_db(transaction=True)
def test_the_drill_kills_an_mt5_demo_account_and_reads_it_flat_at_the_terminal(fake, tmp_path, redis_client):
    from riskcontrol.env import current_database_url

    base = yaml.safe_load(Path(settings.RISK_LIMITS_PATH).read_text())
    base["brokers"] = section(fake.port)
    policy = tmp_path / "risk_limits.yaml"
    policy.write_text(yaml.safe_dump(base, sort_keys=False))
    env = {**os.environ, "DATABASE_URL": current_database_url(), "REDIS_URL": os.environ["REDIS_URL"],
           "RISK_LIMITS_PATH": str(policy), "PAPER_ONLY": "false", "LOG_LEVEL": "WARNING",
           "CELERY_VISIBILITY_TIMEOUT": "5"}
    reports = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "manage.py", "killswitch", "drill", "--account", str(LOGIN),
                           "--clients", "2", "--cooldown-seconds", "2", "--report-dir", str(reports)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"KILL SWITCH DRILL PASSED on {LOGIN}" in proc.stdout
    report = json.loads(sorted(reports.glob("drill-*.json"))[-1].read_text())
    assert all(f["ok"] for f in report["figures"]) and report["policy"]["broker"] == "mt5"
    snapshot = fake.snapshot()
    assert snapshot["positions"] == [] and snapshot["orders"] == []
    # Seeded at the terminal: three positions and six pending orders; each order removed,
    # each position closed by its own closing deal, and every one on the report.
    seeded = [o for o in snapshot["history_orders"] if o["comment"].startswith("drill-") and o["type"] in (2, 3)]
    assert len(seeded) == 6 and {o["state"] for o in seeded} == {2}  # ORDER_STATE_CANCELED
    rows = report["orders"]
    assert sorted(r["order_id"] for r in rows if r["kind"] == "order") == sorted(str(o["ticket"]) for o in seeded)
    assert {(r["outcome"], r["broker_status"]) for r in rows if r["kind"] == "order"} == {("cancelled", "canceled")}
    closes = [r for r in rows if r["kind"] == "position"]
    assert len(closes) == 3 and {r["outcome"] for r in closes} == {"filled"}
    assert len([d for d in snapshot["deals"] if d["comment"].startswith("ks-close-")]) == 3
    [run] = BrokerRun.objects.filter(account=str(LOGIN))
    assert (run.broker, run.level, run.state) == ("mt5", "kill", "completed")


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["real", "contest"])
def test_a_real_or_contest_mt5_account_is_refused_before_anything_is_sent(fake, mode):
    fake.set_account_mode(mode)
    code, message = refused("--account", str(LOGIN))
    assert code == 2
    assert f"MT5 account {LOGIN} is a {mode} account" in message and "demo accounts only" in message
    assert not [c for c in fake.calls() if c[0] == "order_send"]
    assert not Event.objects.exists()


@pytest.mark.django_db
def test_paper_only_refuses_an_mt5_drill(fake, settings):
    settings.PAPER_ONLY = True
    code, message = refused("--account", str(LOGIN))
    assert code == 2 and "PAPER_ONLY is set" in message


@pytest.mark.django_db
def test_paper_and_mt5_accounts_are_never_drilled_together(fake):
    code, message = refused("--account", str(LOGIN), "--account", "DRILL01")
    assert code == 2 and "drill MT5 accounts on their own" in message
    assert not Event.objects.exists()
