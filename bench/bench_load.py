"""The API under concurrent load while trading clients are connected and a broker run is
in progress, against an unloaded baseline measured in the same run.

Everything is private to this run and loopback only: an embedded redis-server, a
temporary SQLite database, and real processes -- daphne (riskcontrol.asgi), the
reconciler, a Celery worker -- as `make run` starts them.

1. baseline: no trading clients, no run; one HTTP client (requests.Session, token
   auth) alternates GET /api/risk/kill-switch with POST activate (pause) / deactivate
   on `strategy:bench` for --baseline-seconds.
2. loaded: K client processes (killswitch_client.KillSwitch on other accounts, so
   they stay up and acknowledge every change) are connected; broker runs are kept in
   progress all along (kill on paper account LOAD01 holding --orders working orders
   and 3 positions, wait for the run to cancel, flatten and verify, resume, re-seed,
   again); C threads drive the same operation mix (4 reads : 1 write) for --seconds.

Prints p50/p99 per operation, loaded and baseline, the ratios, throughput, errors,
and whether the run was in progress during the load window.

Usage: .venv/bin/python bench/bench_load.py [--clients 20] [--threads 8] [--seconds 10] [--orders 2000]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import requests
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCOPE = "strategy:bench"
LOAD_ACCOUNT = "LOAD01"
CLIENT_PROGRAM = r"""
import sys, time
from killswitch_client import KillSwitch
url, account, name, lifetime = sys.argv[1:5]
switch = KillSwitch(url, account=account, strategy="bench", name=name, exit_on_kill=False)
deadline = time.monotonic() + float(lifetime)
try:
    while time.monotonic() < deadline:
        switch.check()
        time.sleep(0.01)
finally:
    switch.close()
"""


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


class Driver:
    """C threads, each with its own keep-alive requests.Session, until the deadline."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        self.samples: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.error_examples: list[str] = []
        self.lock = threading.Lock()

    def _one(self, session: requests.Session, op: str) -> None:
        started = time.perf_counter()
        try:
            if op == "read":
                response = session.get(f"{self.base}/api/risk/kill-switch", timeout=30)
            else:
                body = ({"action": "activate", "level": "pause", "scope": SCOPE, "reason": "load bench"}
                        if op == "activate" else {"action": "deactivate", "scope": SCOPE, "reason": "load bench"})
                response = session.post(f"{self.base}/api/risk/kill-switch", data=json.dumps(body), timeout=30)
            ok = response.status_code == 200
            detail = f"{op} {response.status_code} {response.text[:200]}"
        except requests.RequestException as exc:
            ok, detail = False, f"{op} {type(exc).__name__}: {exc}"
        elapsed = time.perf_counter() - started
        with self.lock:
            if ok:
                self.samples[op].append(elapsed)
            else:
                self.errors[op] += 1
                if len(self.error_examples) < 5:
                    self.error_examples.append(detail)

    def _loop(self, deadline: float, index: int) -> None:
        session = requests.Session()
        session.headers.update(self.headers)
        n = index  # threads start at different points of the mix
        write = "activate" if index % 2 == 0 else "deactivate"
        while time.monotonic() < deadline:
            n += 1
            if n % 5 == 0:
                self._one(session, write)
                write = "deactivate" if write == "activate" else "activate"
            else:
                self._one(session, "read")
        session.close()

    def run(self, threads: int, seconds: float) -> float:
        deadline = time.monotonic() + seconds
        workers = [threading.Thread(target=self._loop, args=(deadline, i)) for i in range(threads)]
        started = time.monotonic()
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=seconds + 60)
        return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20, help="trading client processes")
    parser.add_argument("--threads", type=int, default=8, help="concurrent HTTP clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="loaded phase (at most 20)")
    parser.add_argument("--baseline-seconds", type=float, default=4.0)
    parser.add_argument("--orders", type=int, default=2000, help="working orders on the killed account")
    args = parser.parse_args()
    args.seconds = min(args.seconds, 20.0)
    args.baseline_seconds = min(args.baseline_seconds, 20.0)

    from riskcontrol.embedded_redis import EmbeddedRedis, free_port

    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    redis_server = EmbeddedRedis().start()
    policy = yaml.safe_load((ROOT / "config" / "risk_limits.yaml").read_text())
    policy["kill_switch"]["cooldown_minutes"] = 0  # the writes alternate activate/deactivate
    policy["brokers"]["paper"]["accounts"] = ["DU111111", "DU222222", LOAD_ACCOUNT]
    (work / "policy.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    port = free_port()
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "riskcontrol.settings",
        "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}", "REDIS_URL": redis_server.url,
        "RISK_LIMITS_PATH": str(work / "policy.yaml"), "LOG_LEVEL": "WARNING", "PAPER_ONLY": "true",
        "PYTHONUNBUFFERED": "1", "PORT": str(port),
    })
    os.environ.pop("CELERY_BROKER_URL", None)
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    from brokers.adapters import paper
    from brokers.models import TERMINAL_STATES, BrokerRun
    from killswitch import services
    from killswitch.models import Event, TradingClient
    from killswitch.services.tokens import issue_token

    call_command("migrate", verbosity=0)
    User.objects.create_user("bench_officer").groups.add(Group.objects.get(name="risk_officer"))
    token = issue_token(username="bench_officer").key
    paper.ensure_account(LOAD_ACCOUNT)
    for symbol, price in (("AAPL", "190"), ("MSFT", "410"), ("SPY", "520")):
        paper.set_price(symbol, price)
        paper.set_position(account=LOAD_ACCOUNT, symbol=symbol, quantity="100", avg_cost=price)
    from brokers.models import PaperOrder

    account = paper.get_account(LOAD_ACCOUNT)

    def seed_orders(count: int) -> None:
        """Working orders far from the market, and the positions, on the account the runs act on."""
        PaperOrder.objects.bulk_create([
            PaperOrder(account=account, symbol="AAPL", side="BUY", quantity=1, limit_price=Decimal(100) + i % 50,
                       strategy=f"s{i % 7}") for i in range(count)], batch_size=500)
        for symbol in ("AAPL", "MSFT", "SPY"):
            paper.set_position(account=LOAD_ACCOUNT, symbol=symbol, quantity="100", avg_cost="100")

    procs: dict[str, subprocess.Popen] = {}

    def start(name: str, cmd: list[str]) -> None:
        log = open(work / f"{name}.log", "wb")
        procs[name] = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        log.close()

    base = f"http://127.0.0.1:{port}"
    try:
        start("web", [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                      "riskcontrol.asgi:application"])
        start("reconciler", [sys.executable, "manage.py", "killswitch", "reconcile"])
        start("worker", [sys.executable, "-m", "celery", "-A", "riskcontrol", "worker", "--pool=solo",
                         "-Q", "broker,notify", "--loglevel", "WARNING", "-n", f"bench-load-{os.getpid()}@%h"])
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(base + "/admin/login/", timeout=1)
                break
            except requests.RequestException:
                if time.monotonic() > deadline or procs["web"].poll() is not None:
                    raise RuntimeError(f"daphne did not start; see {work / 'web.log'}") from None
                time.sleep(0.1)
        from riskcontrol.celery import app

        while not app.control.ping(timeout=0.5):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no Celery worker; see {work / 'worker.log'}")

        # Warm up (first requests import and compile), then the baseline.
        Driver(base, token).run(1, 1.0)
        baseline = Driver(base, token)
        baseline.run(1, args.baseline_seconds)

        lifetime = args.seconds + 90
        for i in range(args.clients):
            start(f"client-{i}", [sys.executable, "-c", CLIENT_PROGRAM, redis_server.url,
                                  ("DU111111", "DU222222")[i % 2], f"load-{i}", str(lifetime)])
        deadline = time.monotonic() + 60
        while TradingClient.objects.filter(disconnected_at__isnull=True, name__startswith="load-").count() < args.clients:
            if time.monotonic() > deadline:
                raise RuntimeError("trading clients did not register within 60 s")
            time.sleep(0.2)

        # Broker runs in progress throughout the window: kill LOAD01 (orders + positions),
        # wait for its run to finish, resume it, re-seed, kill again, until the load ends.
        stop = threading.Event()
        cycles: list[dict] = []

        def cycle_runs() -> None:
            from django.db import connection

            try:
                while not stop.is_set():
                    seed_orders(args.orders)
                    started = time.monotonic()
                    result = services.activate(scope=f"account:{LOAD_ACCOUNT}", level="kill", reason="load bench",
                                               actor="cli:bench", source="cli")
                    event = Event.objects.get(seq=result.seq)
                    run = None
                    while time.monotonic() - started < 60:
                        run = BrokerRun.objects.filter(event_seq=event.seq).first()
                        if run is not None and run.state in TERMINAL_STATES:
                            break
                        time.sleep(0.05)
                    cycles.append({"state": run.state if run else "none", "seconds": time.monotonic() - started,
                                   "actions": run.actions.count() if run else 0})
                    services.deactivate(scope=f"account:{LOAD_ACCOUNT}", actor="cli:bench", source="cli",
                                        reason="load bench")
            finally:
                connection.close()

        cycler = threading.Thread(target=cycle_runs, daemon=True)
        cycler.start()
        loaded = Driver(base, token)
        window = loaded.run(args.threads, args.seconds)
        stop.set()
        cycler.join(timeout=70)
        connected = TradingClient.objects.filter(disconnected_at__isnull=True, name__startswith="load-").count()
    finally:
        for name in reversed(list(procs)):
            proc = procs[name]
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        redis_server.cleanup()

    busy = sum(c["seconds"] for c in cycles)
    print(f"setup: daphne + reconciler + Celery worker (solo), SQLite, embedded Redis; {args.clients} trading "
          f"client processes connected ({connected} still registered at the end); {args.threads} HTTP threads, "
          f"token auth, 4 reads : 1 write; loaded window {window:.1f} s, baseline {args.baseline_seconds:g} s "
          "(1 thread, no clients, no run)")
    states = sorted({c["state"] for c in cycles})
    print(f"broker runs: {len(cycles)} kill runs on account:{LOAD_ACCOUNT}, each {args.orders} working orders + "
          f"3 positions ({', '.join(states)}); a run was in progress {busy:.1f} s of the {window:.1f} s window; "
          f"run time p50 {pct([c['seconds'] for c in cycles], 50):.2f} s" if cycles else "broker runs: none")
    print(f"{'operation':<12} {'baseline p50':>12} {'p99':>8} {'loaded p50':>11} {'p99':>8} "
          f"{'p50 ratio':>9} {'p99 ratio':>9} {'n':>6} {'req/s':>7} {'errors':>6}")
    for op in ("read", "activate", "deactivate"):
        b, ld = baseline.samples.get(op, []), loaded.samples.get(op, [])
        if not b or not ld:
            print(f"{op:<12} no samples (baseline {len(b)}, loaded {len(ld)}; errors {loaded.errors.get(op, 0)})")
            continue
        bp50, bp99, lp50, lp99 = pct(b, 50), pct(b, 99), pct(ld, 50), pct(ld, 99)
        print(f"{op:<12} {bp50 * 1000:>10.1f}ms {bp99 * 1000:>6.1f}ms {lp50 * 1000:>9.1f}ms {lp99 * 1000:>6.1f}ms "
              f"{lp50 / bp50:>8.1f}x {lp99 / bp99:>8.1f}x {len(ld):>6} {len(ld) / window:>7.0f} "
              f"{loaded.errors.get(op, 0):>6}")
    total_errors = sum(loaded.errors.values()) + sum(baseline.errors.values())
    for example in loaded.error_examples + baseline.error_examples:
        print(f"  error: {example}")
    print(f"logs: {work}")
    return 1 if total_errors else 0


if __name__ == "__main__":
    sys.exit(main())
