"""REST API: activation latency under read load, and status-read throughput against a
bare Django view on the same server in the same run.

Everything is private to this run: an embedded redis-server, a temporary SQLite
database (or with --postgres URL a temporary database created on that PostgreSQL
server and dropped afterwards; the URL's role needs CREATEDB), one real daphne
serving bench/api_support.py (the product's URLs plus a bare view, through the
product's ASGI handler and read admission). Load comes from keep-alive HTTP/1.1 clients on asyncio in this process;
activations come from a separate process so the load generator's own work does not
delay them.

1. throughput: C clients GET the bare view for T s, then GET /api/risk/kill-switch
   (token authenticated, viewer role) for T s; ratio status/bare. Goal >= 0.5x.
2. latency: while C clients read the status, another process POSTs an activation
   (a fresh scope each time, so each one is a real transition: row lock, audit event,
   commit, Redis publish) every 100 ms. p50/p99. Goal p99 <= 50 ms.

Usage: .venv/bin/python bench/bench_api.py [--clients 200] [--seconds 8] [--activations 100]
                                          [--postgres postgres://user:pw@host:5432/any] [--ablation]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


async def _client(port: int, path: str, headers: str, running, counts: list[int],
                  errors: list[str]) -> None:
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n").encode()
    reader = writer = None
    while running():
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            close = False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode().partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and "close" in value.lower():
                    close = True
            await reader.readexactly(length)
            if b" 200 " not in status_line:
                errors.append(status_line.decode().strip())
            else:
                counts[0] += 1
            if close:
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError) as exc:
            errors.append(repr(exc))
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


async def _load(port: int, path: str, token: str | None, clients: int, seconds: float) -> tuple[float, int]:
    headers = f"Authorization: Token {token}\r\n" if token else ""
    counts, errors = [0], []
    stop_at = time.monotonic() + seconds
    started = time.monotonic()
    await asyncio.gather(*(_client(port, path, headers, lambda: time.monotonic() < stop_at, counts, errors)
                           for _ in range(clients)))
    elapsed = time.monotonic() - started
    if errors:
        print(f"  {len(errors)} errors on {path}, e.g. {errors[:3]}")
    return counts[0] / elapsed, len(errors)


def _activator(port: int, token: str, n: int, interval: float, start_after: float, out,
               tag: str = "LOAD") -> None:
    """Runs in its own process: n activations, one every `interval` seconds."""
    time.sleep(start_after)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
    latencies, failures = [], []
    for i in range(n):
        body = json.dumps({"action": "activate", "reason": f"bench {i}", "scope": f"symbol:{tag}{i}"})
        started = time.perf_counter()
        conn.request("POST", "/api/risk/kill-switch", body=body, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status != 200 or json.loads(payload).get("changed") is not True:
            failures.append(f"{response.status} {payload[:200]!r}")
        time.sleep(max(0.0, interval - latencies[-1] / 1000))
    out.put((latencies, failures))


VARIANTS = ("", "one-hop", "admission", "replay", "auth-cache", "status-cache")


def _serve_and_measure(args, reader_token: str, trader_token: str, work: Path, without: str) -> dict:
    """Start one daphne (leaving out `without`, see api_support.py), measure, stop it."""
    from riskcontrol.embedded_redis import free_port

    port = free_port()
    log = open(work / f"daphne-{without or 'full'}.log", "wb")
    daphne = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "bench.api_support:application"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "BENCH_WITHOUT": without},
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/bench/bare")
                conn.getresponse().read()
                break
            except OSError:
                if time.monotonic() > deadline or daphne.poll() is not None:
                    raise RuntimeError(f"daphne did not start; see {log.name}") from None
                time.sleep(0.1)
        status_path = "/api/risk/kill-switch"
        asyncio.run(_load(port, "/bench/bare", None, 20, 1.0))  # warm-up
        asyncio.run(_load(port, status_path, reader_token, 20, 1.0))
        bare_rps, bare_err = asyncio.run(_load(port, "/bench/bare", None, args.clients, args.seconds))
        status_rps, status_err = asyncio.run(_load(port, status_path, reader_token, args.clients, args.seconds))
        queue: multiprocessing.Queue = multiprocessing.Queue()
        tag = (without or "full").replace("-", "").upper()
        # Baseline: the same activations with no readers (the cost of the write itself:
        # SQLite commit, audit chain, Redis publish, signal receivers).
        # Warm-up, not measured: the first activations of a process load what the path
        # imports lazily and open its connections (the first took 30-45 ms on PostgreSQL).
        _activator(port, trader_token, 5, 0.1, 0.0, queue, f"WARM{tag}")
        queue.get(timeout=60)
        _activator(port, trader_token, args.activations // 2, 0.1, 0.0, queue, f"IDLE{tag}")
        idle, idle_failures = queue.get(timeout=60)
        activator = multiprocessing.Process(
            target=_activator, args=(port, trader_token, args.activations, 0.1, 1.0, queue, f"LOAD{tag}"))
        activator.start()
        # The readers keep going until the activator is done.
        loaded_rps = asyncio.run(_load_until(port, status_path, reader_token, args.clients, activator))
        latencies, failures = queue.get(timeout=60)
        activator.join(timeout=10)
        if os.environ.get("BENCH_TRACE"):
            (work / f"client-{without or 'full'}.txt").write_text(
                "\n".join(f"{x:.1f}" for x in idle + latencies))
            print(f"  traces: {work}")
    finally:
        daphne.terminate()
        try:
            daphne.wait(timeout=10)
        except subprocess.TimeoutExpired:
            daphne.kill()
        log.close()
    return {"bare_rps": bare_rps, "bare_err": bare_err, "status_rps": status_rps, "status_err": status_err,
            "idle": idle, "idle_failures": idle_failures, "latencies": latencies, "failures": failures,
            "loaded_rps": loaded_rps}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=8.0, help="per throughput phase")
    parser.add_argument("--activations", type=int, default=100)
    parser.add_argument("--postgres", metavar="URL", help="run on a temporary database on this server")
    parser.add_argument("--ablation", action="store_true",
                        help="measure again without each piece of riskcontrol/performance, in the same run")
    args = parser.parse_args()

    from riskcontrol.embedded_redis import EmbeddedRedis

    work = Path(tempfile.mkdtemp(prefix="bench-api-"))
    database = _TemporaryPostgres(args.postgres) if args.postgres else None
    redis_server = EmbeddedRedis().start()
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "riskcontrol.settings",
        "DATABASE_URL": database.url if database else f"sqlite:///{work / 'bench.sqlite3'}",
        "REDIS_URL": redis_server.url,
        "LOG_LEVEL": "WARNING",
    })
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command

    from killswitch.services.tokens import issue_token

    call_command("migrate", verbosity=0)
    for name, role in (("bench_viewer", "viewer"), ("bench_trader", "trader")):
        User.objects.create_user(name).groups.add(Group.objects.get(name=role))
    reader_token = issue_token(username="bench_viewer").key
    trader_token = issue_token(username="bench_trader").key
    results: dict[str, dict] = {}
    try:
        for without in VARIANTS if args.ablation else ("",):
            # Every variant starts from the same state: the activations of the one before
            # left scopes behind, and every status read lists every scope.
            _reset_scopes()
            results[without] = _serve_and_measure(args, reader_token, trader_token, work, without)
    finally:
        redis_server.cleanup()
        if database:
            from django.db import connections

            connections.close_all()
            database.drop()

    kind = f"PostgreSQL ({database.name})" if database else "SQLite"
    print(f"clients: {args.clients} keep-alive connections, one daphne process, {kind}, embedded Redis")
    full = results[""]
    ratio = full["status_rps"] / full["bare_rps"] if full["bare_rps"] else 0.0
    latencies, idle = full["latencies"], full["idle"]
    p50, p99 = statistics.median(latencies), pct(latencies, 99)
    print(f"bare Django view            {full['bare_rps']:8.1f} req/s  ({full['bare_err']} errors)")
    print(f"GET /api/risk/kill-switch   {full['status_rps']:8.1f} req/s  ({full['status_err']} errors)")
    print(f"ratio status/bare: {ratio:.2f}x  (goal >= 0.5x: {'meets' if ratio >= 0.5 else 'MISSES'})")
    print(f"activation, no readers:     n={len(idle)} p50={statistics.median(idle):.1f} ms  "
          f"p99={pct(idle, 99):.1f} ms  failures={len(full['idle_failures'])}")
    print(f"activation under load ({args.clients} readers at {full['loaded_rps']:.0f} req/s): n={len(latencies)} "
          f"p50={p50:.1f} ms  p99={p99:.1f} ms  max={max(latencies):.1f} ms  failures={len(full['failures'])}")
    print(f"activation p99 {p99:.1f} ms (goal <= 50 ms: {'meets' if p99 <= 50 else 'MISSES'})")
    if full["failures"]:
        print("  e.g.", full["failures"][:3])
    print(f"activation p99 under load / without load: {p99 / max(pct(idle, 99), 0.001):.2f}x")
    if args.ablation:
        print("\nwithout one piece of riskcontrol/performance (same run; ratios against the full stack):")
        print(f"{'left out':<14} {'status req/s':>13} {'vs full':>8} {'act. p50':>9} {'act. p99':>9} {'vs full':>8}")
        for without, r in results.items():
            q99 = pct(r["latencies"], 99)
            print(f"{without or '(nothing)':<14} {r['status_rps']:13.1f} {r['status_rps'] / full['status_rps']:7.2f}x "
                  f"{statistics.median(r['latencies']):8.1f}  {q99:8.1f}  {q99 / p99:7.2f}x")
    return 0 if ratio >= 0.5 and p99 <= 50 and not full["failures"] else 1


def _reset_scopes() -> None:
    """Scopes back to the global one (events stay: the audit log is append-only)."""
    from django.db import connection

    from brokers.models import BrokerRun
    from killswitch.distribution import publish
    from killswitch.models import AuditHead, Scope

    BrokerRun.objects.all().delete()
    Scope.objects.exclude(kind="global").delete()
    Scope.objects.filter(kind="global").update(level="running", version=0, cooldown_until=None)
    AuditHead.objects.filter(pk=1).update(state_version=0)
    # Redis as the reconciler keeps it in a running stack (it republishes the state).
    publish.publish_state(publish.take_snapshot(), force=True)
    connection.close()


class _TemporaryPostgres:
    """A database created for this run on the server `url` points at, dropped at the end."""

    def __init__(self, url: str) -> None:
        from urllib.parse import urlsplit, urlunsplit

        import psycopg

        parts = urlsplit(url)
        self.name = f"bench_api_{os.getpid()}"
        self.admin_url = urlunsplit(parts._replace(path="/postgres"))
        self.url = urlunsplit(parts._replace(path=f"/{self.name}"))
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')

    def drop(self) -> None:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


async def _load_until(port: int, path: str, token: str, clients: int, process) -> float:
    """Readers run until `process` has exited; returns their req/s."""
    headers = f"Authorization: Token {token}\r\n"
    counts, errors = [0], []
    alive = [True]

    async def watch() -> None:
        while process.is_alive():
            await asyncio.sleep(0.05)
        alive[0] = False

    started = time.monotonic()
    await asyncio.gather(watch(), *(_client(port, path, headers, lambda: alive[0], counts, errors)
                                    for _ in range(clients)))
    if errors:
        print(f"  {len(errors)} errors on {path} under activation, e.g. {errors[:3]}")
    return counts[0] / (time.monotonic() - started)


if __name__ == "__main__":
    sys.exit(main())
