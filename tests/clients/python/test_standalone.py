"""The client is its own distribution: installed alone into a fresh virtual environment
(`pip install clients/python`, which brings only `redis`), it imports and follows the
switch on a real Redis -- with no Django anywhere in that environment."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

PROGRAM = textwrap.dedent("""
    import importlib.util, sys, time
    assert importlib.util.find_spec("django") is None, "django is importable"
    import killswitch_client
    from killswitch_client import KillSwitch
    assert killswitch_client.__file__.startswith(sys.prefix), killswitch_client.__file__
    ks = KillSwitch(sys.argv[1], exit_on_kill=False, backstop_interval=0.1)
    deadline = time.monotonic() + 10
    while ks.check() != "running" and time.monotonic() < deadline:
        time.sleep(0.02)
    print(ks.check(), ks.version)
    ks.close()
""")


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("client-venv") / "venv"
    python = "python3.11" if sys.version_info[:2] != (3, 11) else sys.executable
    subprocess.run([python, "-m", "venv", str(folder)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    out = subprocess.run([str(folder / "bin" / "python"), "-m", "pip", "install", "--quiet",
                          "--disable-pip-version-check", str(ROOT / "clients" / "python")],
                         capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    return folder


def test_installed_alone_it_imports_without_django_and_follows_the_switch(venv, server, service):
    service.running()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "DJANGO"))}
    out = subprocess.run([str(venv / "bin" / "python"), "-c", PROGRAM, server.url],
                         capture_output=True, text=True, timeout=60, cwd=venv, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["running", str(service.version)]
    listed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
                            capture_output=True, text=True, timeout=60, env=env).stdout
    names = {line.split("==")[0].lower() for line in listed.split()}
    assert "killswitch-client" in names and "redis" in names
    assert not names & {"django", "djangorestframework", "celery"}

