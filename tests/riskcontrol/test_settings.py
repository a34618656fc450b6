"""Production settings: `manage.py check --deploy` passes with the README's production
values, and a bad value stops a command with one line, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.stack import ROOT


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECURE_HTTPS", "ALLOWED_HOSTS")}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=120)


def test_check_deploy_passes_with_the_production_values():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", DEBUG="false",
                     SECRET_KEY="x" * 20 + "a-long-random-production-secret-key-9f8e7d6c5b4a",
                     ALLOWED_HOSTS="risk.example.com", SECURE_HTTPS="true", NUM_PROXIES="1")
    assert result.returncode == 0, result.stdout + result.stderr


def test_without_https_the_deploy_check_names_what_is_missing():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", DEBUG="false",
                     SECRET_KEY="x" * 60, ALLOWED_HOSTS="risk.example.com")
    assert result.returncode != 0 and "SECURE_SSL_REDIRECT" in result.stderr + result.stdout


def test_a_bad_environment_value_is_one_line_and_exit_2():
    result = _manage("killswitch", "status", SECURE_HTTPS="sometimes")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: SECURE_HTTPS='sometimes' is not a boolean; expected true or false"]
