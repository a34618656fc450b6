from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from killswitch.policy import load_policy, parse_policy
from tests.stack import ROOT


def test_the_committed_file_has_the_seed_keys():
    policy = load_policy(ROOT / "config" / "risk_limits.yaml").kill_switch
    assert (policy.http_enabled, policy.telegram_enabled, policy.cooldown_minutes) == (True, False, 60)


def test_the_seed_example_block_parses():
    text = "kill_switch:\n  http_enabled: true\n  telegram_enabled: false\n  cooldown_minutes: 30\n"
    assert parse_policy(text).kill_switch.cooldown_minutes == 30


@pytest.mark.parametrize("body, message", [
    ("kill_switch:\n  cooldown_minutes: soon\n",
     "kill_switch.cooldown_minutes='soon' is invalid; expected a number between 0 and 1440"),
    ("kill_switch:\n  cooldown_minutes: -5\n", "kill_switch.cooldown_minutes=-5 is invalid"),
    ("kill_switch:\n  http_enabled: 'yes'\n", "kill_switch.http_enabled='yes' is invalid; expected true or false"),
    ("kill_switch:\n  cooldwn_minutes: 5\n", "kill_switch.cooldwn_minutes=5 is invalid; expected one of the known keys"),
    ("kill_switch:\n  default_level: running\n", "expected one of pause, halt, kill"),
    ("kill_switch:\n  client_stale_after_seconds: 1\n  heartbeat_interval_seconds: 1\n",
     "at least twice kill_switch.heartbeat_interval_seconds"),
    ("kill_switch: [1, 2]\n", "kill_switch=[1, 2] is invalid; expected a mapping"),
    ("kill_switch:\n  log_max_entries: 2.5\n", "expected a whole number"),
    ("notifications:\n  urls: ['json://${NO_SUCH_VARIABLE_X}']\n", "the environment variable NO_SUCH_VARIABLE_X to be set"),
    ("kill_switch: {\n", "not valid YAML"),
])
def test_a_bad_file_names_key_value_and_expectation(body, message):
    with pytest.raises(ImproperlyConfigured) as info:
        parse_policy(body, "risk_limits.yaml")
    assert message in str(info.value)


def test_a_bad_file_stops_start_up(tmp_path):
    bad = tmp_path / "risk_limits.yaml"
    bad.write_text("kill_switch:\n  cooldown_minutes: forever\n")
    env = dict(os.environ, RISK_LIMITS_PATH=str(bad))
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "kill_switch.cooldown_minutes='forever' is invalid; expected a number between 0 and 1440" in result.stderr


def test_redis_password_is_honoured_in_every_url(monkeypatch):
    from riskcontrol.env import redis_url_from_env

    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("REDIS_HOST", "vps.example")
    monkeypatch.setenv("REDIS_PORT", "6380")
    monkeypatch.setenv("REDIS_PASSWORD", "s3cr/t")
    assert redis_url_from_env() == "redis://:s3cr%2Ft@vps.example:6380/0"
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:7000/0")
    assert redis_url_from_env() == "redis://:s3cr%2Ft@127.0.0.1:7000/0"
