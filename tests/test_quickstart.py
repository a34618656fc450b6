"""A newcomer's first hour, literally: a fresh copy of the project, `make demo` (scripts/run.py
as `make` starts it, on a free port), then every command of the README's quick start from a
shell with no environment variables at all (`env -i PATH=/usr/bin:/bin`), the way a new
user pastes them into a second terminal. Nothing may print a traceback, hang or leave a
step that cannot be undone: the drill must pass right after the quick start's halt.

Also, on the same fresh copy: a second `make run` while the first is up is refused at once
and writes nothing (issue 14, item 7); the first audit event says "first start" and a
restart says "restart"; a bad policy stops `make run` and the emergency CLI with one line
(item 3).
"""

from __future__ import annotations

import re
import shlex
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from riskcontrol.embedded_redis import free_port
from tests.stack import ROOT

pytestmark = pytest.mark.timeout(600)

VENV_PYTHON = ROOT / ".venv" / "bin" / "python"
BARE_PATH = "/usr/bin:/bin"


def _files() -> list[str]:
    """The project's files as a clone has them (tracked, and new files not yet committed)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                         capture_output=True, check=True).stdout.decode()
    return [f for f in out.split("\0") if f and (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """A fresh copy of the project (no var/, no database) sharing this checkout's .venv."""
    if not VENV_PYTHON.exists():
        pytest.skip("no .venv: `make .venv/.installed` first")
    root = tmp_path_factory.mktemp("clone") / "killswitch"
    for name in _files():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name).read_bytes())
        target.chmod((ROOT / name).stat().st_mode)
    (root / ".venv").symlink_to(ROOT / ".venv")
    return root


class MakeRun:
    """scripts/run.py as `make run` / `make demo` starts it: a terminal's environment with
    nothing of the project in it (PYTHONPATH names the copy, as its editable install would)."""

    def __init__(self, clone: Path, port: int, *, demo: bool, log: Path, **env: str) -> None:
        self.clone, self.port, self.log = clone, port, log
        self.env = {"PATH": f"{ROOT / '.venv' / 'bin'}:{BARE_PATH}", "HOME": str(clone.parent),
                    "PORT": str(port), "PYTHONPATH": str(clone), **env}
        self.argv = [str(clone / ".venv" / "bin" / "python"), "scripts/run.py"] + (["--demo"] if demo else [])
        self.proc: subprocess.Popen | None = None

    def start(self) -> MakeRun:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self.argv, cwd=self.clone, env=self.env, stdout=out,
                                         stderr=subprocess.STDOUT)
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_up(self, timeout: float = 180) -> str:
        deadline = time.monotonic() + timeout
        while "Kill switch is up." not in self.text():
            assert self.proc.poll() is None, f"make run exited with {self.proc.returncode}:\n{self.text()[-4000:]}"
            assert time.monotonic() < deadline, f"make run not up within {timeout} s:\n{self.text()[-4000:]}"
            time.sleep(0.5)
        time.sleep(1)  # the banner's last lines
        return self.text()

    def stop(self) -> int:
        """SIGTERM by pid, as Ctrl-C would; bounded wait."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"make run did not stop within 60 s of SIGTERM:\n{self.text()[-3000:]}") from None


def bare_shell(clone: Path, command: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """`command` in a shell with no environment variables but a bare PATH, in the clone."""
    return subprocess.run(["env", "-i", f"PATH={BARE_PATH}", "bash", "-c", command], cwd=clone,
                          capture_output=True, text=True, timeout=timeout)


def quick_start_commands(readme: str) -> list[str]:
    """The commands of the README's quick start, second block ("in another terminal"),
    without their trailing comments."""
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert len(blocks) >= 2, "the quick start has a block for make and one for the other terminal"
    commands = []
    for line in blocks[1].splitlines():
        if line.strip():
            tokens = shlex.split(line, comments=True)
            commands.append(shlex.join(tokens))
    return commands


def counts(clone: Path) -> tuple[int, int]:
    """(audit events, broker runs) in the clone's database."""
    with sqlite3.connect(clone / "db.sqlite3") as db:
        return (db.execute("select count(*) from killswitch_event").fetchone()[0],
                db.execute("select count(*) from brokers_brokerrun").fetchone()[0])


def details(clone: Path, action: str) -> list[str]:
    with sqlite3.connect(clone / "db.sqlite3") as db:
        return [row[0] for row in db.execute("select detail from killswitch_event where action = ? order by seq",
                                             (action,))]


def no_traceback(label: str, *texts: str) -> None:
    for text in texts:
        assert "Traceback" not in text, f"{label} printed a traceback:\n{text[-4000:]}"


def test_the_quick_start_from_a_bare_shell_then_the_drill_with_no_traceback(clone, tmp_path):
    port = free_port()
    stack = MakeRun(clone, port, demo=True, log=tmp_path / "make-demo.log").start()
    try:
        banner = stack.wait_up()
        assert "DEMO: cooldown 2 minutes" in banner and "demo-reset" in banner
        record = (clone / "var" / "stack.json").read_text()
        assert f'"port": {port}' in record and '"demo": true' in record

        # A second stack while this one is up: refused at once, nothing written.
        before, record_before = counts(clone), record
        second = subprocess.run(stack.argv, cwd=clone, env=stack.env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert second.stderr.strip() == (f"make run: already running (PID {stack.proc.pid}, port {port}); "
                                         "stop it first (Ctrl-C in its terminal)")
        assert "Kill switch is up" not in second.stdout
        assert counts(clone) == before and (clone / "var" / "stack.json").read_text() == record_before

        readme = (clone / "README.md").read_text()
        commands = quick_start_commands(readme)
        assert commands[0].startswith(".venv/bin/python manage.py killswitch activate")
        outputs = {}
        for command in commands:
            result = bare_shell(clone, command)
            no_traceback(command, result.stdout, result.stderr)
            assert result.returncode == 0, f"{command}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
            outputs[command.split()[3] if "manage.py" in command else command.split()[1]] = result
        assert outputs["activate"].stdout == "global is now halt (was running)\n"
        assert outputs["activate"].stderr == ""  # no log lines, no warning for the global scope
        status = outputs["status"].stdout.splitlines()
        assert status[1].split()[:4] == ["SCOPE", "LEVEL", "SINCE", "(UTC)"]
        assert status[2].split()[:2] == ["global", "halt"] and "Market crash" in status[2]
        assert outputs["redis-cli"].stdout.strip() == "halt"
        assert outputs["runs"].stdout.splitlines()[0].split()[:2] == ["RUN", "KIND"]
        assert "global is now running (was halt); cooldown waived" in outputs["demo-reset"].stdout
        assert "demo book restored" in outputs["demo-reset"].stdout
        loop = outputs["examples/trading_loop.py"].stdout
        assert "kill switch: running" in loop and "paper order #" in loop and "unreachable" not in loop
        assert "KILL SWITCH DRILL PASSED on DRILL01" in outputs["drill"].stdout

        # The first event of a fresh install says so.
        assert details(clone, "restored")[0].startswith("first start")
    finally:
        code = stack.stop()
    assert code == 0
    assert not (clone / "var" / "stack.json").exists()
    log = stack.text()
    no_traceback("make demo", log)

    # Started again (a new embedded Redis): a restart, never "Redis lost the state".
    again = MakeRun(clone, port, demo=False, log=tmp_path / "make-run.log").start()
    try:
        banner = again.wait_up()
        assert "Cooldown after an activation: 60 minutes" in banner
        deadline = time.monotonic() + 30
        while len(details(clone, "restored")) < 2:
            assert time.monotonic() < deadline, "no restored event after the restart"
            time.sleep(0.5)
        restored = details(clone, "restored")
        assert restored[1].startswith("restart") and not any("lost" in d for d in restored)
    finally:
        again.stop()
    no_traceback("make run", again.text(), (clone / "var" / "log" / "killswitch.log").read_text())


def test_a_bad_policy_stops_make_run_and_the_cli_with_one_line(clone, tmp_path):
    bad = tmp_path / "risk_limits.yaml"
    bad.write_text((clone / "config" / "risk_limits.yaml").read_text().replace(
        "cooldown_minutes: 60 ", "cooldown_minutes: forever "))
    expected = (f"{bad}: kill_switch.cooldown_minutes='forever' is invalid; expected a number between 0 and 1440")
    port = free_port()
    run = MakeRun(clone, port, demo=False, log=tmp_path / "bad.log", RISK_LIMITS_PATH=str(bad)).start()
    assert run.proc.wait(timeout=120) == 2
    assert run.text().strip().splitlines() == [f"make run: {expected}"]
    assert not (clone / "var" / "stack.json").exists()

    for argv in (["killswitch", "activate", "--reason", "crash"], ["killswitch", "status"], ["paper", "orders"]):
        result = bare_shell(clone, f"RISK_LIMITS_PATH={bad} .venv/bin/python manage.py {shlex.join(argv)}")
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert lines[0] == f"configuration error: {expected}"
        assert len(lines) == (2 if "activate" in argv else 1) and result.stdout == ""
        if "activate" in argv:
            assert "SET trading_switch kill" in lines[1]  # how to stop trading meanwhile


def test_make_demo_is_make_run_with_demo():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo: \$\(STAMP\)\n\t\$\(PY\) scripts/run.py --demo$", makefile, flags=re.M)
    assert "$(if $(filter 1 true yes,$(DEMO)),--demo)" in makefile

