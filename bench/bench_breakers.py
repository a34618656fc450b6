"""A breaker's figure crossing its limit → the activation committed → its notification
handed to the channel, p50/p99, with a person's activation through the same services
and the same notification path measured in the same run as the baseline.

Everything is private to this run: its own embedded redis-server, a temporary SQLite
database, the real breaker process (`manage.py killswitch breakers run`, at its default
interval, as `make run` starts it), a real Celery worker on the notify queue, and a
local HTTP endpoint as the notification channel (apprise json://). Each sample:

- crossing: the paper broker's price drop committed (the figure is past the limit
  from then on, whoever looks);
- observed: the breaker round that saw it (the latch's time);
- committed: the activation's audit event (Event.created_at);
- notified: the channel received the notification (the endpoint's clock).

Goal: crossing → notified p99 ≤ 2 s (MiFID II RTS 6 Art 16(5): alerts within 5 s).
All clocks are this host's.

Usage: .venv/bin/python bench/bench_breakers.py [--n 40]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCOPE = "account:DU111111"
BREAKER = {"name": "bench-loss", "kind": "max_loss", "scope": SCOPE, "level": "halt", "limit": 500}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def summary(name: str, ms: list[float]) -> str:
    return (f"{name:<44} n={len(ms):<4} p50={statistics.median(ms):7.1f} ms  p95={pct(ms, 95):7.1f} ms  "
            f"p99={pct(ms, 99):7.1f} ms  max={max(ms):7.1f} ms")


class Channel:
    """The notification endpoint: when each notification (title and body) arrived."""

    def __init__(self) -> None:
        self.received: dict[str, float] = {}
        self.lock = threading.Lock()
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                at = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    data = json.loads(body)
                    text = f"{data.get('title', '')}\n{data.get('message', '')}"
                except ValueError:
                    text = ""
                with inbox.lock:
                    inbox.received.setdefault(text, at)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_event(self, seq: int, timeout: float = 30) -> float:
        """When the notification of audit event `seq` reached the channel."""
        return self.wait(f"Event: #{seq} ", timeout)

    def wait(self, marker: str, timeout: float = 30) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [at for title, at in self.received.items() if marker in title]
            if found:
                return found[0]
            time.sleep(0.005)
        raise SystemExit(f"no notification with {marker!r} within {timeout}s")


def wait(predicate, timeout: float = 30, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise SystemExit(f"{what} not met within {timeout}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=40, help="samples per path (default 40)")
    args = parser.parse_args()

    from riskcontrol.embedded_redis import EmbeddedRedis

    work = Path(tempfile.mkdtemp(prefix="bench-breakers-"))
    redis_server = EmbeddedRedis().start()
    channel = Channel()
    policy = yaml.safe_load((ROOT / "config" / "risk_limits.yaml").read_text())
    policy["kill_switch"]["cooldown_minutes"] = 0  # the bench resumes between samples
    policy["brokers"] = {"paper": {"accounts": ["DU111111", "DU222222"]}}
    policy["breakers"] = [BREAKER]
    (work / "risk_limits.yaml").write_text(yaml.safe_dump(policy, sort_keys=False))
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "riskcontrol.settings", "DATABASE_URL": f"sqlite:///{work / 'bench.sqlite3'}",
        "REDIS_URL": redis_server.url, "RISK_LIMITS_PATH": str(work / "risk_limits.yaml"), "LOG_LEVEL": "WARNING",
        "NOTIFY_URLS": channel.url, "PAPER_ONLY": "true",
    })
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    children = [
        subprocess.Popen([sys.executable, "manage.py", "killswitch", "breakers", "run"], cwd=ROOT, env=env,
                         stdout=open(work / "breakers.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True),
        subprocess.Popen([sys.executable, "-m", "celery", "-A", "riskcontrol", "worker", "--pool=solo", "-Q", "notify",
                          "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
                          "-n", f"bench-notify-{os.getpid()}@%h"], cwd=ROOT, env=env,
                         stdout=open(work / "worker.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True),
    ]
    try:
        return run(args, channel, children, work)
    finally:
        for child in children:
            child.terminate()
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        channel.server.shutdown()
        redis_server.cleanup()


def run(args, channel: Channel, children, work: Path) -> int:
    from brokers import demo
    from brokers.adapters import paper
    from killswitch import services as ks
    from killswitch.breakers import state
    from killswitch.models import Event

    demo.seed_demo_data()

    def breaker_row() -> dict | None:
        snap = state.snapshot()
        return snap.rows[0] if snap.fresh else None

    def armed() -> bool:
        row = breaker_row()
        return bool(row and row["state"] == "armed" and row["value"] is not None and row["value"] < 100)

    wait(armed, 60, "the breaker process armed")  # first marks of the day: AAPL at 190
    observed, committed, notified, detected = [], [], [], []
    base_committed, base_notified = [], []
    for i in range(args.n):
        for child in children:
            if child.poll() is not None:
                raise SystemExit(f"a child process died; see {work}")
        # The breaker path: the price drop is the crossing (100 AAPL: -600 against a 500 limit).
        since = Event.objects.order_by("-seq").values_list("seq", flat=True).first() or 0
        # Anywhere within a round (the wait above ends just after one: without this, every
        # sample would wait nearly a whole interval).
        time.sleep(random.uniform(0, 0.3))
        paper.set_price("AAPL", "184")
        crossed = time.time()
        event = wait(lambda s=since: Event.objects.filter(seq__gt=s, actor="breaker:bench-loss",
                                                           action="activate").first(), what="the trip")
        latch = wait(lambda seq=event.seq: (r := breaker_row()) and r.get("latch") and r["latch"].get("seq") == seq
                     and r["latch"], what="the latch")
        at_channel = channel.wait_event(event.seq)
        observed.append((latch["at"] - crossed) * 1000)
        committed.append((event.created_at.timestamp() - crossed) * 1000)
        notified.append((at_channel - crossed) * 1000)
        detected.append((at_channel - latch["at"]) * 1000)
        # Back to armed: the price first (a resume with the loss still there trips again), then a person resumes.
        paper.set_price("AAPL", "190")
        ks.deactivate(scope=SCOPE, actor="cli:bench", source="cli", reason="bench sample done")
        wait(armed, 30, "re-armed after the resume")

        # The baseline: a person's activation through the same services and notification path.
        started = time.time()
        result = ks.activate(scope="account:DU222222", level="halt", reason=f"bench {i}", actor="cli:bench",
                             source="cli")
        at_channel = channel.wait_event(result.seq)
        base_committed.append((Event.objects.get(seq=result.seq).created_at.timestamp() - started) * 1000)
        base_notified.append((at_channel - started) * 1000)
        ks.deactivate(scope="account:DU222222", actor="cli:bench", source="cli", reason="bench sample done")

    print(summary("baseline: activate → committed", base_committed))
    print(summary("baseline: activate → notification at channel", base_notified))
    print(summary("breaker: crossing → observed by a round", observed))
    print(summary("breaker: crossing → activation committed", committed))
    print(summary("breaker: crossing → notification at channel", notified))
    print(summary("breaker: observed → notification at channel", detected))
    p99 = pct(notified, 99)
    print(f"ratio breaker/baseline p99 (to the channel): {p99 / max(pct(base_notified, 99), 0.001):.2f}x")
    goal = p99 <= 2000
    print(f"crossing → notification p99 {p99:.0f} ms: {'meets' if goal else 'MISSES'} the 2 s goal "
          f"({'within' if p99 <= 5000 else 'OVER'} RTS 6's 5 s)")
    return 0 if goal else 1


if __name__ == "__main__":
    sys.exit(main())
