"""Benchmark of the trading-process client (killswitch_client), against baselines
measured in the same run.

1. Hot path: `KillSwitch.check()` against the seed's per-iteration
   `r.get('trading_switch').strip().lower()` on the same Redis (loopback).
   Goal: check() median <= 1 us and >= 200x faster than the seed's GET.

2. Propagation to N trading clients, against raw Redis pub/sub fan-out to N plain
   subscribers at the same N, in the same run, interleaved round by round. Both sides
   run as asyncio tasks, --per-process of them per process (N = 1,000 fits in memory:
   1,000 processes would need ~30 GB), so the comparison is like for like. The service
   runs as in `make run`: a real database (SQLite, temporary), the real reconciler thread
   (heartbeats, ingestion of acknowledgements). A client has applied a change when it
   has re-read the keys the message pointed it to (the message itself is never trusted)
   and written its acknowledgement's acked_at. Goal: p99 of "all N applied", from the
   state message, <= 1.5x raw fan-out's p99 (E/C below).

    .venv/bin/python bench/bench_client.py                     # N = 10, 100, 1000
    .venv/bin/python bench/bench_client.py --n 1000 --rounds 40

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

# K switch clients in one process (asyncio tasks on one loop, as an asyncio trading
# process would hold them); prints "ready" once every one has read the state.
CLIENT_GROUP = """
import asyncio, sys
from killswitch_client import AsyncKillSwitch
url, tag, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
async def main():
    clients = [AsyncKillSwitch(url, name=f"bench-{tag}-{i}", exit_on_kill=False) for i in range(count)]
    for c in clients:
        await c.start()
    for c in clients:
        await c.wait_ready(60)
    while any(c.cause for c in clients):
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for c in clients:
        await c.aclose()
asyncio.run(main())
"""

# K plain subscribers in one process, each with its own connections like a client:
# on every message, note the time and XADD it (as a client acknowledges).
RAW_GROUP = """
import asyncio, sys, time
import redis.asyncio as aioredis
url, tag, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
async def subscriber(i, ready):
    r = aioredis.Redis.from_url(url, decode_responses=True)
    p = r.pubsub(ignore_subscribe_messages=True)
    await p.subscribe("bench:raw")
    ready.release()
    async for m in p.listen():
        t = time.time()
        await r.xadd("bench:raw:acks", {"i": f"{tag}{i}", "round": m["data"], "t": repr(t)})
async def main():
    ready = asyncio.Semaphore(0)
    tasks = [asyncio.create_task(subscriber(i, ready)) for i in range(count)]
    for _ in range(count):
        await ready.acquire()
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for t in tasks:
        t.cancel()
asyncio.run(main())
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
    from killswitch_client import KillSwitch

    from killswitch.distribution import publish as D

    D.publish_state(D.Snapshot(1, {"global": "running"}), client=service_redis, force=True)
    D.publish_heartbeat(1, stale_after=60, client=service_redis)
    client = KillSwitch(url, exit_on_kill=False, max_stale_after=60)  # one heartbeat, never renewed
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


def spawn_groups(program: str, url: str, n: int, per_process: int, tag: str) -> list[subprocess.Popen]:
    """n members in processes of at most per_process each; returns once all are ready."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    counts = [min(per_process, n - start) for start in range(0, n, per_process)]
    procs = [subprocess.Popen([sys.executable, "-c", program, url, f"{tag}{g}-", str(count)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
             for g, count in enumerate(counts)]
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
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def collect(r: redis.Redis, stream: str, last_id: str, want: int, match, timeout: float = 60.0):
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


def watch(url: str, seen: dict[tuple[str, str], float], stop: threading.Event) -> None:
    """When each state version's message, and each raw round, reach one subscriber in this
    process: the common reference both fan-outs are measured from."""
    sub = redis.Redis.from_url(url, decode_responses=True).pubsub(ignore_subscribe_messages=True)
    sub.subscribe("killswitch:updates", "bench:raw")
    while not stop.is_set():
        message = sub.get_message(timeout=0.1)
        if not message:
            continue
        received = time.time()
        if message["channel"] == "bench:raw":
            seen.setdefault(("raw", message["data"]), received)
            continue
        # Parsed, not matched as text: the publish script re-encodes the message (cjson).
        data = json.loads(message["data"])
        if data.get("type") == "state":
            seen.setdefault(("state", str(data["version"])), received)
    sub.close()


def wait_seen(seen: dict[tuple[str, str], float], key: tuple[str, str], timeout: float = 30.0) -> float:
    deadline = time.monotonic() + timeout
    while key not in seen:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{key} was never published")
        time.sleep(0.001)
    return seen[key]


def _stream_end(r: redis.Redis, stream: str) -> str:
    return r.xinfo_stream(stream)["last-generated-id"] if r.exists(stream) else "0-0"


def _wait_audited(level: str, timeout: float = 60.0) -> None:
    """Until the database holds `level` for the global scope (pending requests applied)."""
    from killswitch.models import Scope

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = Scope.objects.filter(kind="global").first()
        if (row.level if row else "running") == level:
            time.sleep(1.0)  # its publication and the acknowledgements settle
            return
        time.sleep(0.2)
    raise RuntimeError(f"the Redis-path {level} was not audited within {timeout}s")


def _bench_actor():
    # The operator's CLI identity (a trusted system actor): a bare name would be read as a
    # user without roles and refused.
    from killswitch.services.authorization import Actor

    return Actor.system("cli:bench")


def _resume(services):
    """Deactivate, retried while the database is busy (a resume never takes the Redis path)."""
    for _ in range(30):
        try:
            return services.deactivate(scope="global", reason="bench", actor=_bench_actor(), source="cli")
        except services.DatabaseUnavailable:
            time.sleep(1.0)
    raise RuntimeError("the database stayed busy for 30 s")


def bench_propagation(url: str, r: redis.Redis, sizes: list[int], rounds: int, per_process: int) -> None:
    from killswitch import services
    from killswitch.distribution.reconciler import Reconciler

    stop = threading.Event()
    reconciler = Reconciler()
    thread = threading.Thread(target=reconciler.run_forever, args=(stop,), daemon=True)
    thread.start()
    seen: dict[tuple[str, str], float] = {}
    watcher = threading.Thread(target=watch, args=(url, seen, stop), daemon=True)
    watcher.start()
    time.sleep(1.0)
    print("\n== Propagation: a change -> every one of N clients applied it (re-read the keys, acked) ==")
    print(f"   both sides: asyncio tasks, {per_process} per process; raw = N plain redis-py subscribers")
    print("   A = switch: commit (event created_at) -> all N clients applied (their acked_at)")
    print("   D = commit -> the state message received by one subscriber in this process")
    print("   E = A minus D: state message -> all N clients applied (message, re-read, apply)")
    print("   C = raw fan-out: the message received by that same subscriber -> all N received")
    print("   C0 = raw fan-out from the PUBLISH call")
    print(f"{'N':>5} {'rounds':>6} | {'A p50':>11} {'A p99':>11} | {'D p50':>11} | "
          f"{'E p50':>11} {'E p99':>11} | {'C p50':>11} {'C p99':>11} | {'C0 p99':>11}")
    results = []
    level = "running"
    for n in sizes:
        clients = spawn_groups(CLIENT_GROUP, url, n, per_process, "c")
        raws = spawn_groups(RAW_GROUP, url, n, per_process, "r")
        time.sleep(2.0)
        ack_last = _stream_end(r, "killswitch:acks")
        raw_last = _stream_end(r, "bench:raw:acks")
        sw_all, commit_pub, raw_all, raw_pub = [], [], [], []
        skipped = 0
        for i in range(rounds):
            # the switch: alternate halt / resume, each a committed, audited change
            if level == "running":
                result = services.activate(scope="global", level="halt", reason="bench", actor=_bench_actor(),
                                           source="cli")
                level = "halt"
            else:
                result = _resume(services)
                level = "running"
            if result.pending_audit:
                # The database was busy past the service's lock timeout, so the escalation
                # took the Redis path (audited later, at the same version): not a
                # propagation round. Wait until the reconciler has audited it, skip it.
                skipped += 1
                _wait_audited(level)
                ack_last = _stream_end(r, "killswitch:acks")
                continue
            t0 = result.at.timestamp()
            version = str(result.version)
            got, ack_last = collect(r, "killswitch:acks", ack_last, n,
                                    lambda f, v=version: f["client_id"] if f["version"] == v else None)
            sw_all.append(max(float(f["acked_at"]) for f in got.values()) - t0)
            commit_pub.append(wait_seen(seen, ("state", version)) - t0)
            time.sleep(0.1)
            # raw fan-out alone, to the same N in the same layout
            key = f"{n}-{i}"
            t0 = time.time()
            r.publish("bench:raw", key)
            got, raw_last = collect(r, "bench:raw:acks", raw_last, n,
                                    lambda f, k=key: f["i"] if f["round"] == k else None)
            last = max(float(f["t"]) for f in got.values())
            raw_all.append(last - wait_seen(seen, ("raw", key)))
            raw_pub.append(last - t0)
            time.sleep(0.1)
        stop_children(clients)
        stop_children(raws)
        client_part = [a - d for a, d in zip(sw_all, commit_pub, strict=True)]
        results.append((n, pct(sw_all, 99), pct(client_part, 99), pct(raw_all, 99)))
        print(f"{n:>5} {rounds:>6} | {ms(pct(sw_all, 50))} {ms(pct(sw_all, 99))} | "
              f"{ms(pct(commit_pub, 50))} | {ms(pct(client_part, 50))} {ms(pct(client_part, 99))} | "
              f"{ms(pct(raw_all, 50))} {ms(pct(raw_all, 99))} | {ms(pct(raw_pub, 99))}", flush=True)
        if skipped:
            print(f"      ({skipped} round(s) skipped: the database was busy, the escalation took "
                  "the Redis path)", flush=True)
    stop.set()
    thread.join(timeout=5)
    watcher.join(timeout=5)
    if len(results) > 1:
        (n0, a0, e0, c0), (n1, a1, e1, c1) = results[0], results[-1]
        print(f"growth of p99 N={n0}->{n1}: A x{a1 / a0:.2f}, E x{e1 / e0:.2f}, C (raw) x{c1 / c0:.2f}")
    for n, a, e, c in results:
        verdict = "met" if e / c <= 1.5 else "NOT met"
        print(f"N={n}: p99 ratio E/C {e / c:.2f}x (goal <= 1.5x: {verdict});  A/C {a / c:.2f}x")


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
    for name in ("killswitch", "brokers"):
        logging.getLogger(name).setLevel(logging.WARNING)
    call_command("migrate", verbosity=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", default="10,100,1000", help="client counts, comma separated")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--per-process", type=int, default=50,
                        help="clients (and raw subscribers) per process")
    parser.add_argument("--skip-propagation", action="store_true")
    args = parser.parse_args()
    sizes = [int(x) for x in args.n.split(",") if x]
    with tempfile.TemporaryDirectory(prefix="bench-client-") as tmp, EmbeddedRedis() as server:
        setup_django(server.url, Path(tmp))
        r = redis.Redis.from_url(server.url, decode_responses=True)
        print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; redis {r.info()['redis_version']}")
        bench_hot_path(server.url, r)
        if not args.skip_propagation:
            # ~40 MB per process of --per-process members, twice (clients and raw).
            avail = _available_mb()
            need = {n: 2 * -(-n // args.per_process) * 40 for n in sizes}
            fits = [n for n in sizes if need[n] < avail * 0.8]
            for n in sorted(set(sizes) - set(fits)):
                print(f"N={n} skipped: needs ~{need[n]} MB, {avail} MB available")
            r.flushdb()
            bench_propagation(server.url, r, fits, args.rounds, args.per_process)
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
