"""`manage.py killswitch drill` end to end: the real command in its own process, against
the pytest database and Redis, starting its own reconciler, Celery worker and client
processes; and the refusals that keep it off anything but paper accounts."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.core.management import call_command

from brokers import config as broker_config
from brokers import drill as broker_drill
from brokers.models import BrokerRun, PaperOrder, PaperPosition
from killswitch.models import Event, Scope

ROOT = Path(settings.BASE_DIR)
BROKERS = {
    "paper": {"accounts": ["DU111111", "DU222222", "DRILL01"]},
    "ib": {"connections": [{"name": "live", "accounts": ["U1234567"]}]},
    "runs": {"max_attempts": 3, "retry_backoff_seconds": 0.3, "retry_backoff_max_seconds": 1,
             "verify_rounds": 3, "lease_seconds": 5},
}


@pytest.fixture
def policy_file(tmp_path) -> Path:
    base = yaml.safe_load(Path(settings.RISK_LIMITS_PATH).read_text())
    base["brokers"] = BROKERS
    path = tmp_path / "risk_limits.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


@pytest.fixture
def brokers(monkeypatch):
    """This process reads the same brokers: section as the drill's processes."""
    parsed = broker_config.parse_brokers_config(BROKERS)
    monkeypatch.setattr(broker_config, "_cached", lambda: parsed)
    return parsed


def run_drill_command(policy_file: Path, tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    from riskcontrol.env import current_database_url

    env = {**os.environ, "DATABASE_URL": current_database_url(),
           "REDIS_URL": os.environ["REDIS_URL"], "RISK_LIMITS_PATH": str(policy_file), "PAPER_ONLY": "true",
           "LOG_LEVEL": "WARNING", "CELERY_VISIBILITY_TIMEOUT": "5"}
    reports = tmp_path / "reports"
    proc = subprocess.run([sys.executable, "manage.py", "killswitch", "drill", "--report-dir", str(reports),
                           *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    found = sorted(reports.glob("drill-*.json"))
    report = json.loads(found[-1].read_text()) if found else {}
    return proc, report


@pytest.mark.django_db(transaction=True)
def test_drill_kills_the_drill_account_measures_everything_and_resumes(policy_file, tmp_path, redis_client,
                                                                         brokers):
    proc, report = run_drill_command(policy_file, tmp_path, "--clients", "3", "--cooldown-seconds", "2")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "KILL SWITCH DRILL PASSED on DRILL01" in proc.stdout
    figures = {f["key"]: f for f in report["figures"]}
    assert set(figures) == {"propagation", "acknowledgements", "client_exits", "orders_left", "positions_left",
                            "run_completed", "resume_refused", "resume_accepted", "audit_chain"}
    assert all(f["ok"] for f in figures.values()), figures
    assert report["ok"] is True
    # It started what was missing and says so.
    assert report["services"]["reconciler"].startswith("started by the drill")
    assert report["services"]["worker"].startswith("started by the drill")
    # Every client acknowledged the activation and exited 1.
    assert [c["exit_code"] for c in report["clients"]] == [1, 1, 1]
    assert all(c["ack_ms"] is not None for c in report["clients"])
    # At the broker: every drill order cancelled, every position closed, per order on record.
    assert PaperOrder.objects.filter(account__code="DRILL01", status="working").count() == 0
    assert not PaperPosition.objects.filter(account__code="DRILL01").exclude(quantity=0).exists()
    outcomes = {(o["kind"], o["symbol"], o["side"], o["outcome"]) for o in report["orders"]}
    assert ("order", "NVDA", "BUY", "cancelled") in outcomes
    assert ("position", "AAPL", "SELL", "filled") in outcomes  # the long closed
    assert ("position", "TSLA", "BUY", "filled") in outcomes   # the short closed
    assert len([o for o in report["orders"] if o["kind"] == "order"]) == len(broker_drill.ORDERS)
    [run] = BrokerRun.objects.filter(account="DRILL01")
    assert (run.level, run.state) == ("kill", "completed")
    # The audit trail: kill, the refused early resume, the resume; nothing on any other scope.
    events = list(Event.objects.filter(scope_kind="account").order_by("seq"))
    assert [(e.scope_label, e.action, e.outcome, e.new_level) for e in events] == [
        ("account:DRILL01", "activate", "applied", "kill"),
        ("account:DRILL01", "cooldown_violation", "refused", "kill"),
        ("account:DRILL01", "deactivate", "applied", "running"),
    ]
    assert events[0].actor.endswith("(drill)") and events[0].reason == "Kill switch drill"
    # the scope's own (drill) cooldown, not the policy's 60 minutes
    assert re.search(r"Kill switch cooldown active\. [12] seconds? remaining \(cooldown: 2 seconds\)\.",
                     events[1].detail), events[1].detail
    assert [e["seq"] for e in report["events"]] == [e.seq for e in events]
    # Only the reconciler's republication of the Redis this test emptied happened elsewhere.
    assert {(e.action, e.actor) for e in Event.objects.exclude(scope_kind="account")} <= {
        ("restored", "system:reconciler")}
    assert Scope.objects.get(kind="account", key="DRILL01").level == "running"
    assert not Scope.objects.exclude(kind="account", key="DRILL01").exclude(level="running").exists()
    html = Path(report["html_path"]).read_text()
    assert "PASSED" in html and "Per-order outcomes" in html and events[0].hash[:12] in html


@pytest.mark.django_db(transaction=True)
def test_a_figure_outside_its_bound_fails_the_drill_with_exit_1(policy_file, tmp_path, redis_client, brokers):
    proc, report = run_drill_command(policy_file, tmp_path, "--clients", "2", "--cooldown-seconds", "1",
                                     "--max-propagation-ms", "0")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "KILL SWITCH DRILL FAILED" in proc.stdout
    assert "FAIL  Propagation" in proc.stdout
    failed = [f["key"] for f in report["figures"] if not f["ok"]]
    assert failed == ["propagation"]
    assert report["ok"] is False
    assert Scope.objects.get(kind="account", key="DRILL01").level == "running"  # resumed all the same


# --- Refusals: nothing happens, exit 2 -----------------------------------------------------------


def refused(*args: str) -> tuple[int, str]:
    from io import StringIO

    err = StringIO()
    with pytest.raises(SystemExit) as exit_info:
        call_command("killswitch", "drill", *args, stderr=err, stdout=StringIO())
    return exit_info.value.code, err.getvalue()


@pytest.mark.django_db
def test_a_non_paper_account_is_refused_with_exit_2_and_nothing_happens(brokers, settings):
    settings.PAPER_ONLY = False
    code, message = refused("--account", "U1234567")
    assert code == 2
    assert "Account 'U1234567' is at the 'ib' broker, not the paper broker" in message
    code, message = refused("--account", "DRILL01", "--account", "U1234567")
    assert code == 2
    assert not Event.objects.exists() and not Scope.objects.filter(kind="account").exists()


@pytest.mark.django_db
def test_an_unconfigured_account_is_refused_with_exit_2(brokers):
    code, message = refused("--account", "DU999999")
    assert code == 2
    assert "'DU999999' is not configured under brokers:" in message


@pytest.mark.django_db
def test_without_paper_only_the_paper_accounts_must_be_named(brokers, settings):
    settings.PAPER_ONLY = False
    code, message = refused()
    assert code == 2
    assert "PAPER_ONLY is false" in message and "--account" in message


@pytest.mark.django_db
def test_the_default_drill_account_must_be_a_configured_paper_account(monkeypatch):
    parsed = broker_config.parse_brokers_config({"paper": {"accounts": ["DU111111"]}})
    monkeypatch.setattr(broker_config, "_cached", lambda: parsed)
    code, message = refused()
    assert code == 2
    assert "DRILL01 is not a paper broker account: add it to brokers.paper.accounts" in message


@pytest.mark.django_db
def test_a_named_account_not_at_running_is_refused(brokers):
    from killswitch import services

    services.activate(scope="account:DU111111", level="halt", reason="real incident", actor="cli:ops",
                      source="cli")
    code, message = refused("--account", "DU111111")
    assert code == 2
    assert "account:DU111111 is at halt" in message and "never lifts a level somebody else set" in message
    assert Scope.objects.get(kind="account", key="DU111111").level == "halt"


@pytest.mark.django_db
@pytest.mark.parametrize("args, expected", [
    (("--clients", "0"), "--clients 0 is invalid"),
    (("--cooldown-seconds", "0"), "--cooldown-seconds 0 is invalid"),
    (("--cooldown-seconds", "7200"), "--cooldown-seconds 7200 is invalid"),
])
def test_bad_values_are_refused_with_exit_2(brokers, args, expected):
    code, message = refused(*args)
    assert code == 2
    assert expected in message


@pytest.mark.django_db(transaction=True)
def test_with_two_approvals_the_drill_exercises_the_request_and_the_report_says_so(tmp_path, redis_client, brokers):
    base = yaml.safe_load(Path(settings.RISK_LIMITS_PATH).read_text())
    base["brokers"] = BROKERS
    base.setdefault("kill_switch", {})["resume_approvals"] = 2
    policy = tmp_path / "risk_limits.yaml"
    policy.write_text(yaml.safe_dump(base, sort_keys=False))
    proc, report = run_drill_command(policy, tmp_path, "--clients", "1", "--cooldown-seconds", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["policy"]["resume_approvals"] == 2
    kinds = [(e["action"], e["actor"]) for e in report["events"]]
    assert ("resume_request", kinds[0][1]) in kinds or any(a == "resume_request" for a, _ in kinds)
    resumed = [e for e in report["events"] if e["action"] == "deactivate" and e["outcome"] == "applied"]
    assert resumed and "(second approver)" in resumed[-1]["actor"] and "approved resume request" in resumed[-1]["detail"]
    html = Path(report["html_path"]).read_text()
    assert "Resume approvals" in html and "second risk officer approves" in html
