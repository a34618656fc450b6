"""Benchmark of the trading-process client (killswitch.client), against baselines
measured in the same run.

1. Hot path: `KillSwitch.check()` against the seed's per-iteration
   `r.get('trading_switch').strip().lower()` on the same Redis (loopback).
   Goal: check() median <= 1 us and >= 200x faster than the seed's GET.

2. Propagation: from a change's commit (the audit event's created_at, taken inside
   the transaction) until each of N client *processes* has applied it (its ack's
   acked_at), against raw Redis pub/sub fan-out to N plain subscriber processes
   (PUBLISH -> receipt) in the same run, interleaved round by round. The service
   runs as in `make run`: a real database (SQLite, temporary), the real reconciler
   thread (heartbeats, ingestion of acknowledgements). Goal: p99 of "all N applied"
   <= 1.5x raw fan-out's, growing no faster than it with N.

    .venv/bin/python bench/bench_client.py                 # N = 10, 100
    .venv/bin/python bench/bench_client.py --n 10,100,1000 # if the machine holds it

Prints figures and ratios; asserts nothing (speed is not a test).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from riskcontrol.embedded_redis import EmbeddedRedis  # noqa: E402

CLIENT_CHILD = """
import sys
from killswitch.client import KillSwitch
ks = KillSwitch(sys.argv[1], name="bench-" + sys.argv[2], exit_on_kill=False)
ks.wait_ready(30)
print("ready", flush=True)
sys.stdin.read()
ks.close()
"""

RAW_CHILD = """
import sys, time, redis
r = redis.Redis.from_url(sys.argv[1], decode_responses=True)
p = r.pubsub(ignore_subscribe_messages=True)
p.subscribe("bench:raw")
print("ready", flush=True)
for m in p.listen():
    t = time.time()
    r.xadd("bench:raw:acks", {"i": sys.argv[2], "round": m["data"], "t": repr(t)})
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def ms(value: float) -> str:
    return f"{value * 1000:8.2f} ms"


# --- 1. hot path ------------------------------------------------------------------------------


def bench_hot_path(url: str, service_redis: redis.Redis) -> None:
    from killswitch.client import KillSwitch
    from killswitch.distribution import publish as D

    D.publish_state(D.Snapshot(1, {"global": "running"}), client=service_redis, force=True)
    D.publish_heartbeat(1, stale_after=60, client=service_redis)
    client = KillSwitch(url, exit_on_kill=False)
    client.wait_ready()
    deadline = time.monotonic() + 5
    while client.check() != "running" and time.monotonic() < deadline:
        time.sleep(0.01)
    seed = redis.Redis.from_url(url, decode_responses=True, socket_connect_timeout=5)

    def seed_iteration() -> str:
        state = seed.get("trading_switch")
        return state.strip().lower()

    def batches(fn, per_batch: int, count: int) -> list[float]:
        out = []
        for _ in range(count):
            start = time.perf_counter_ns()
            for _ in range(per_batch):
                fn()
            out.append((time.perf_counter_ns() - start) / per_batch)
        return out

    batches(client.check, 1000, 50)  # warm up
    batches(seed_iteration, 100, 5)
    check_ns = batches(client.check, 1000, 400)
    seed_ns = batches(seed_iteration, 100, 100)
    allow_ns = batches(lambda: client.allows_order("AAPL"), 1000, 200)
    client.close()
    c, s, a = statistics.median(check_ns), statistics.median(seed_ns), statistics.median(allow_ns)
    print("\n== Hot path (median per call, batches; same Redis on loopback) ==")
    print(f"seed GET + strip + lower     {s:10.0f} ns")
    print(f"KillSwitch.check()           {c:10.0f} ns   goal <= 1000 ns: {'met' if c <= 1000 else 'NOT met'}")
    print(f"KillSwitch.allows_order()    {a:10.0f} ns")
    print(f"ratio seed / check()         {s / c:10.0f}x   goal >= 200x: {'met' if s / c >= 200 else 'NOT met'}")


# --- 2. propagation ----------------------------------------------------------------------------


def spawn_children(program: str, url: str, n: int, tag: str) -> list[subprocess.Popen]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", program, url, f"{tag}{i}"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env) for i in range(n)]
    for proc in procs:
        line = proc.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"child did not start: {line!r}")
    return procs


def stop_children(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        try:
            proc.stdin.close()
        except OSError:
            pass
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def collect(r: redis.Redis, stream: str, last_id: str, want: int, match, timeout: float = 30.0):
    """Read `stream` after last_id until `want` entries satisfy `match`; return their
    fields and the new last id."""
    got: dict[str, dict[str, str]] = {}
    deadline = time.monotonic() + timeout
    while len(got) < want:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(got)}/{want} acknowledgements on {stream} after {timeout}s")
        reply = r.xread({stream: last_id}, count=10_000, block=200)
        for _, entries in reply or []:
            for entry_id, fields in entries:
                last_id = entry_id
                key = match(fields)
                if key:
                    got[key] = fields
    return got, last_id


def watch_updates(url: str, seen: dict[int, float], stop: threading.Event) -> None:
    """Record when each state version's message reaches a subscriber in this process."""
    sub = redis.Redis.from_url(url, decode_responses=True).pubsub(ignore_subscribe_messages=True)
    sub.subscribe("killswitch:updates")
    while not stop.is_set():
        message = sub.get_message(timeout=0.1)
        if not message:
            continue
        received = time.time()
        # Parsed, not matched as text: the publish script re-encodes the message (cjson).
        data = json.loads(message["data"])
        if data.get("type") == "state":
            seen.setdefault(data["version"], received)
    sub.close()


def wait_published(seen: dict[int, float], version: int, timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while version not in seen:
        if time.monotonic() > deadline:
            raise RuntimeError(f"state version {version} was never published")
        time.sleep(0.001)
    return seen[version]


def bench_propagation(url: str, r: redis.Redis, sizes: list[int], rounds: int) -> None:
    from killswitch import services
    from killswitch.distribution.reconciler import Reconciler

    stop = threading.Event()
    reconciler = Reconciler()
    thread = threading.Thread(target=reconciler.run_forever, args=(stop,), daemon=True)
    thread.start()
    seen: dict[int, float] = {}
    threading.Thread(target=watch_updates, args=(url, seen, stop), daemon=True).start()
    time.sleep(1.0)
    print("\n== Propagation: change commit -> every one of N client processes applied it ==")
    print("   (raw = PUBLISH -> receipt by N plain redis-py subscriber processes, same run, interleaved)")
    print("   A = switch: commit (event created_at) -> all N clients applied (their acked_at)")
    print("   C = raw fan-out alone: PUBLISH -> all N plain subscribers received (same run, same N)")
    print("   D = commit -> the state message received by one subscriber in this process (service side)")
    print("   E = A minus D: from the state message to all N clients applied (compare with C)")
    print(f"{'N':>5} {'rounds':>6} | {'A p50':>11} {'A p99':>11} | "
          f"{'C p50':>11} {'C p99':>11} | {'D p50':>11} | {'E p50':>11} {'E p99':>11}")
    results = []
    level = "running"
    for n in sizes:
        clients = spawn_children(CLIENT_CHILD, url, n, "c")
        raws = spawn_children(RAW_CHILD, url, n, "r")
        time.sleep(1.0)
        ack_last = r.xinfo_stream("killswitch:acks")["last-generated-id"] if r.exists("killswitch:acks") else "0-0"
        raw_last = r.xinfo_stream("bench:raw:acks")["last-generated-id"] if r.exists("bench:raw:acks") else "0-0"
        sw_all, raw_all, sw_each, raw_each, commit_pub = [], [], [], [], []
        for i in range(rounds):
            # the switch: alternate halt / resume, each a committed, audited change
            if level == "running":
                result = services.activate(scope="global", level="halt", reason="bench", actor="bench",
                                           source="cli")
                level = "halt"
            else:
                result = services.deactivate(scope="global", reason="bench", actor="bench", source="cli")
                level = "running"
            t0 = result.at.timestamp()
            version = str(result.version)
            got, ack_last = collect(r, "killswitch:acks", ack_last, n,
                                    lambda f, v=version: f["client_id"] if f["version"] == v else None)
            lat = [float(f["acked_at"]) - t0 for f in got.values()]
            sw_all.append(max(lat))
            sw_each.extend(lat)
            published = wait_published(seen, int(version))
            commit_pub.append(published - t0)
            time.sleep(0.05)
            # raw fan-out alone: PUBLISH -> receipt by the same N
            t0 = time.time()
            r.publish("bench:raw", str(i))
            got, raw_last = collect(r, "bench:raw:acks", raw_last, n,
                                    lambda f, k=str(i): f["i"] if f["round"] == k else None)
            lat = [float(f["t"]) - t0 for f in got.values()]
            raw_all.append(max(lat))
            raw_each.extend(lat)
            time.sleep(0.05)
        stop_children(clients)
        stop_children(raws)
        client_part = [s - c for s, c in zip(sw_all, commit_pub, strict=True)]
        results.append((n, pct(sw_all, 99), pct(raw_all, 99), pct(client_part, 99)))
        print(f"{n:>5} {rounds:>6} | {ms(pct(sw_all, 50))} {ms(pct(sw_all, 99))} | "
              f"{ms(pct(raw_all, 50))} {ms(pct(raw_all, 99))} | "
              f"{ms(pct(commit_pub, 50))} | {ms(pct(client_part, 50))} {ms(pct(client_part, 99))}")
    stop.set()
    thread.join(timeout=5)
    if len(results) > 1:
        (n0, a0, c0, e0), (n1, a1, c1, e1) = results[0], results[-1]
        print(f"growth of p99 N={n0}->{n1}: A x{a1 / a0:.2f}, E x{e1 / e0:.2f}, C (raw) x{c1 / c0:.2f}")
    for n, a, c, e in results:
        print(f"N={n}: p99 ratios  A/C {a / c:.2f}x   E/C {e / c:.2f}x   (goal <= 1.5x)")


def setup_django(url: str, tmp: Path) -> None:
    os.environ["REDIS_URL"] = url
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'bench.sqlite3'}"
    limits = tmp / "risk_limits.yaml"
    limits.write_text("kill_switch:\n  cooldown_minutes: 0\n")
    os.environ["RISK_LIMITS_PATH"] = str(limits)
    os.environ["DJANGO_SETTINGS_MODULE"] = "riskcontrol.settings"
    import logging

    import django
    from django.core.management import call_command

    django.setup()
    logging.getLogger("killswitch").setLevel(logging.WARNING)
    call_command("migrate", verbosity=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", default="10,100", help="client process counts, comma separated")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--skip-propagation", action="store_true")
    args = parser.parse_args()
    sizes = [int(x) for x in args.n.split(",") if x]
    with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp, EmbeddedRedis() as server:
        setup_django(server.url, Path(tmp))
        r = redis.Redis.from_url(server.url, decode_responses=True)
        print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; redis {r.info()['redis_version']}")
        bench_hot_path(server.url, r)
        if not args.skip_propagation:
            # ~25 MB per client process (and as much per raw subscriber): stay below memory.
            avail = _available_mb()
            fits = [n for n in sizes if n * 2 * 30 < avail * 0.8]
            for n in sorted(set(sizes) - set(fits)):
                print(f"N={n} skipped: {n * 2} processes need ~{n * 2 * 30} MB, {avail} MB available")
            r.flushdb()
            bench_propagation(server.url, r, fits, args.rounds)
        r.close()
    print(json.dumps({"done": True}))
    return 0


def _available_mb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 4096


if __name__ == "__main__":
    sys.exit(main())
