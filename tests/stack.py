"""The whole stack as real processes, for fault drills and end-to-end tests.

`Stack` starts, against the pytest test database and its own embedded Redis: daphne
(HTTP + WebSocket), the reconciler, a Celery worker and the broker sweep — each a
separate OS process that a test can kill (SIGKILL) and start again, as on a bad day.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from riskcontrol.embedded_redis import EmbeddedRedis, free_port
from riskcontrol.env import current_database_url

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
BIN = Path(PY).parent


class Stack:
    COMMANDS = {
        "web": lambda port: [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port),
                             "riskcontrol.asgi:application"],
        "reconciler": lambda port: [PY, "manage.py", "killswitch", "reconcile"],
        # One worker for both queues: the drills count on broker runs and notifications.
        "worker": lambda port: [str(BIN / "celery"), "-A", "riskcontrol", "worker", "--pool=solo",
                                "-Q", "broker,notify",
                                "--loglevel", "WARNING", "-n", f"drill{port}@%h"],
        "sweep": lambda port: [PY, "manage.py", "killswitch", "sweep"],
        # Two daphne processes sharing one listening socket (riskcontrol/serve.py).
        "web-shared": lambda port: [PY, "-m", "riskcontrol.serve", "--processes", "2", "--port", str(port)],
    }

    def __init__(self, tmp_path: Path, *, policy: str | None = None, redis: EmbeddedRedis | None = None,
                 extra_env: dict[str, str] | None = None) -> None:
        self.tmp = tmp_path
        self.redis = redis or EmbeddedRedis()
        self._own_redis = redis is None
        self.port = free_port()
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        self.env = dict(os.environ)
        self.env.update({
            "DATABASE_URL": current_database_url(), "PORT": str(self.port), "PYTHONUNBUFFERED": "1",
            "KILLSWITCH_TESTING": "1", "DJANGO_SETTINGS_MODULE": "riskcontrol.settings",
        })
        self.env.pop("CELERY_BROKER_URL", None)
        if policy is not None:
            path = tmp_path / "risk_limits.yaml"
            path.write_text(policy)
            self.env["RISK_LIMITS_PATH"] = str(path)
        self.env.update(extra_env or {})

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_redis(self) -> None:
        if self.redis.process is None:
            self.redis.start()
        self.env["REDIS_URL"] = self.redis.url

    def start(self, *names: str) -> Stack:
        self.start_redis()
        for name in names or ("web", "reconciler", "worker"):
            self.start_process(name)
        if "web" in (names or ("web",)):
            self.wait_http()
        return self

    def start_process(self, name: str, *, label: str | None = None, port: int | None = None) -> subprocess.Popen:
        """Start the process `name` (a key of COMMANDS), known as `label` (default: the
        name; a second reconciler is e.g. label="reconciler-b"); a web process listens
        on `port` (default: the stack's)."""
        label = label or name
        log = self.tmp / f"{label}.log"
        self.logs[label] = log
        handle = open(log, "ab")
        proc = subprocess.Popen(self.COMMANDS[name](port or self.port), cwd=ROOT, env=self.env,
                                stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[label] = proc
        return proc

    def label_of(self, pid: int) -> str | None:
        """Which of the started processes has this pid."""
        return next((label for label, proc in self.procs.items() if proc.pid == pid), None)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` and wait for the process to end (a stopped one is continued first,
        or it would never act on the signal)."""
        proc = self.procs.get(name)
        if proc and proc.poll() is None:
            os.killpg(proc.pid, sig)
            if sig != signal.SIGKILL:
                os.killpg(proc.pid, signal.SIGCONT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                # Never leave a process behind for the next tests (a daphne can hang at
                # exit joining a sync consumer's thread whose send waits for the stopped
                # event loop); the test that asked for a clean stop fails on its own checks.
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
                raise

    def signal(self, name: str, sig: int) -> None:
        """Send `sig` (SIGSTOP: the process hangs; SIGCONT: it goes on) without waiting."""
        proc = self.procs[name]
        os.killpg(proc.pid, sig)

    def wait_http(self, timeout: float = 30, *, label: str = "web", port: int | None = None) -> None:
        base = f"http://127.0.0.1:{port or self.port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                requests.get(base + "/admin/login/", timeout=1)
                return
            except requests.RequestException:
                if self.procs[label].poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError(f"daphne did not answer on {base}:\n{self.log(label)}")

    def log(self, name: str) -> str:
        path = self.logs.get(name)
        return path.read_text(errors="replace")[-5000:] if path and path.exists() else ""

    def stop(self) -> None:
        for name in list(self.procs):
            try:
                self.kill(name, signal.SIGTERM)
            except subprocess.TimeoutExpired:
                # Killed (see kill); the stop goes on with the others. Said, not failed:
                # the tests check their processes' behaviour, not how fast they exit here.
                print(f"stack: {name} did not exit within 20 s of SIGTERM; killed", file=sys.stderr)
        if self._own_redis:
            self.redis.cleanup()
