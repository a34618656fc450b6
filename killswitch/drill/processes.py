"""The processes of a drill: the services it needs (a reconciler, a Celery worker),
started when missing and stopped at the end, and the trading-client processes it
kills. Every process is ended by its own pid (process group) only."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from killswitch import domain as L
from killswitch.distribution.connection import get_redis
from riskcontrol.env import current_database_url

from .plan import STRATEGIES, DrillError

# One trading process of the drill: the client library bound to the drill account,
# the seed's loop shape (check() every iteration), an on_kill hook that notes when the
# loop saw kill. The library exits 1 on kill; the loop is bounded so that an orphan
# (the drill itself killed) never outlives it by much.
CLIENT_PROGRAM = r"""
import json, os, sys, time
from killswitch_client import KillSwitch
url, account, strategy, name, report, lifetime = sys.argv[1:7]

def note(kind, **data):
    with open(report, "a") as f:
        f.write(json.dumps({"event": kind, "at": time.time(), **data}) + "\n")

switch = None
def on_kill():
    note("kill", version=switch.version, level="kill")

switch = KillSwitch(url, account=account, strategy=strategy, name=name, on_kill=on_kill,
                    backstop_interval=0.5)
try:
    note("started", client_id=switch.identity.client_id, pid=os.getpid())
    seen = None
    deadline = time.monotonic() + float(lifetime)
    while time.monotonic() < deadline:
        level = switch.check()
        if level != seen:
            note("level", level=level, version=switch.version, cause=switch.cause)
            seen = level
        time.sleep(0.005)
    note("lifetime_over")
    sys.exit(3)
finally:
    switch.close()  # joins the listener: the acknowledgement it is writing goes out first
"""


def child_env() -> dict[str, str]:
    """What the drill's child processes need to share this process' database, Redis and policy."""
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": current_database_url(), "REDIS_URL": settings.REDIS_URL,
        "RISK_LIMITS_PATH": str(settings.RISK_LIMITS_PATH),
        "PAPER_ONLY": "true" if getattr(settings, "PAPER_ONLY", True) else "false",
        "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "riskcontrol.settings"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(settings.BASE_DIR), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _heartbeat_ts() -> float | None:
    try:
        raw = get_redis().get(L.KEY_HEARTBEAT)
        return float(json.loads(raw)["ts"]) if raw else None
    except (ValueError, KeyError, TypeError):
        return None


def reconciler_alive(window: float | None = None) -> bool:
    """A reconciler is writing heartbeats: the heartbeat in Redis is rewritten within
    `window` seconds (default: three heartbeat intervals, at least 1.5 s). A fresh but
    unchanging heartbeat is a reconciler that just stopped (e.g. an earlier drill's)."""
    from killswitch.policy import kill_switch_policy

    window = window or max(1.5, 3 * kill_switch_policy().heartbeat_interval_seconds)
    first = _heartbeat_ts()
    if first is None or time.time() - first > window:
        return False
    return bool(wait(lambda: (_heartbeat_ts() or 0) > first, window, interval=0.05))


def worker_alive(timeout: float = 1.0) -> bool:
    """A Celery worker that consumes the broker queue answered on the project's broker
    (a notify-only worker does not do the drill's broker runs)."""
    from riskcontrol.celery import app

    try:
        queues = app.control.inspect(timeout=timeout).active_queues() or {}
    except Exception:  # kombu raises several connection error types
        return False
    return any(q.get("name") == settings.BROKER_QUEUE for found in queues.values() for q in found)


class Processes:
    """The processes the drill started (services and clients); ended by their pid only."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.env = child_env()
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "ab")
        try:
            proc = subprocess.Popen(args, cwd=settings.BASE_DIR, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def stop(self, name: str, *, timeout: float = 15.0) -> None:
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass

    def stop_all(self) -> None:
        for name in reversed(list(self.procs)):
            self.stop(name)


def wait(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll until predicate() is truthy; return its last value (falsy on timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval)


def ensure_services(procs: Processes, start: bool, say: Callable[[str], None]) -> dict[str, str]:
    found = {"reconciler": reconciler_alive(), "worker": worker_alive()}
    missing = [name for name, ok in found.items() if not ok]
    if missing and not start:
        raise DrillError(
            f"Not running: {', '.join(missing)}. The drill needs the reconciler (`manage.py killswitch "
            "reconcile`) and a Celery worker (`celery -A riskcontrol worker`); start them, or drop "
            "--no-start-services to let the drill start them for its duration.")
    status = {name: "running (found)" for name, ok in found.items() if ok}
    python = sys.executable
    if "reconciler" in missing:
        say("starting a reconciler for the drill")
        procs.start("reconciler", [python, "manage.py", "killswitch", "reconcile"])
    if "worker" in missing:
        say("starting a Celery worker for the drill")
        procs.start("worker", [python, "-m", "celery", "-A", "riskcontrol", "worker", "--pool=solo",
                               "-Q", f"{settings.BROKER_QUEUE},{settings.NOTIFY_QUEUE}",
                               "--loglevel", "WARNING", "-n", f"drill-{os.getpid()}@%h"])
    for name, alive in (("reconciler", reconciler_alive), ("worker", lambda: worker_alive(0.5))):
        if name not in missing:
            continue

        def up(name: str = name, alive: Callable[[], bool] = alive) -> bool:
            proc = procs.procs[name]
            if proc.poll() is not None:
                raise DrillError(f"The {name} the drill started exited with {proc.returncode}:\n{procs.log(name)}")
            return alive()

        if not wait(up, 60, interval=0.2):
            raise DrillError(f"The {name} the drill started did not come up within 60 s:\n{procs.log(name)}")
        status[name] = f"started by the drill (pid {procs.procs[name].pid}), stopped at the end"
    return status


# --- Clients -----------------------------------------------------------------------------------------


@dataclass
class DrillClient:
    index: int
    account: str
    strategy: str
    name: str
    report: Path
    proc: subprocess.Popen | None = None

    def notes(self) -> list[dict[str, Any]]:
        if not self.report.exists():
            return []
        rows = []
        for line in self.report.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except ValueError:
                continue
        return rows

    def first(self, kind: str, **match: Any) -> dict[str, Any] | None:
        return next((n for n in self.notes() if n.get("event") == kind
                     and all(n.get(k) == v for k, v in match.items())), None)

    @property
    def client_id(self) -> str | None:
        started = self.first("started")
        return started.get("client_id") if started else None


def start_clients(procs: Processes, accounts: list[str], count: int, stamp: str,
                   lifetime: float) -> list[DrillClient]:
    clients = []
    for i in range(count):
        account = accounts[i % len(accounts)]
        strategy = STRATEGIES[i % len(STRATEGIES)]
        client = DrillClient(i + 1, account, strategy, f"drill-{stamp}-{i + 1}",
                         procs.workdir / f"client-{i + 1}.jsonl")
        client.proc = procs.start(f"client-{i + 1}", [
            sys.executable, "-c", CLIENT_PROGRAM, settings.REDIS_URL, account, strategy, client.name,
            str(client.report), f"{lifetime:g}"])
        clients.append(client)
    return clients


def clients_ready(clients: list[DrillClient]) -> list[DrillClient]:
    """Clients not yet reading `running` and registered in the database (the reconciler
    ingested them), which a change must find connected to count them as expected."""
    from killswitch.models import TradingClient

    for c in clients:
        if c.proc is not None and c.proc.poll() is not None:
            raise DrillError(f"drill client {c.index} exited with {c.proc.returncode} before the activation")
    pending = [c for c in clients if not c.first("level", level=L.RUNNING)]
    ids = [c.client_id for c in clients if c.client_id]
    known = set(TradingClient.objects.filter(client_id__in=ids, disconnected_at__isnull=True)
                .values_list("client_id", flat=True))
    return pending + [c for c in clients if c not in pending and c.client_id not in known]
