"""History at scale: 1,000,000 audit events behind the history API and the admin's event
list, every filter timed, each against the cheapest read of the same table in the same run.

Everything is private to this run: a temporary SQLite database (or, with --postgres URL,
a temporary database on that server, dropped afterwards), migrated, then filled with
1,000,000 events in bulk (executemany / COPY; the hash chain is not built: nothing here
verifies it). Three years of a desk's audit log: activations, resumes, refusals,
cooldown violations over a global scope, 60 accounts, 25 strategies and 150 symbols, 300
actors, every source.

1. GET /api/risk/kill-switch/history with each filter (scope, action, actor, source,
   since, until, before, limit, and combinations), old and recent values: p50/p95
   over --samples requests each. Goal p95 <= 50 ms.
2. GET /admin/killswitch/event/ (the Risk page's "View History"): the list, each
   list filter, a search, a deep page. Goal p95 <= 300 ms.
The baseline is the first page of the API without filters (ratios are against it).
Requests go through Django's full handler (middleware, authentication, view,
serialization, template), in this process.

Usage: .venv/bin/python bench/bench_history.py [--events 1000000] [--samples 20] [--postgres URL]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

API = "/api/risk/kill-switch/history"
ADMIN = "/admin/killswitch/event/"
API_GOAL_MS, ADMIN_GOAL_MS = 50.0, 300.0
ACCOUNTS = [f"DU{100000 + i}" for i in range(60)]
STRATEGIES = [f"strat{i:02d}" for i in range(25)]
SYMBOLS = [f"SYM{i:03d}" for i in range(150)]
ACTORS = [f"trader{i:03d}" for i in range(300)] + ["system:reconciler", "redis-cli", "cli:ops"]
SOURCES = ["api", "admin", "cli", "redis", "telegram", "automatic"]
# (action, outcome, weight): a desk's log is mostly refusals and repeats, a few changes.
ACTIONS = [("activate", "applied", 20), ("activate", "noop", 15), ("deactivate", "applied", 12),
           ("refused", "refused", 35), ("cooldown_violation", "refused", 8), ("out_of_band", "applied", 3),
           ("restored", "applied", 2), ("alert", "recorded", 5)]
LEVELS = ["running", "pause", "halt", "kill"]
COLUMNS = ("seq", "created_at", "action", "outcome", "scope_kind", "scope_key", "previous_level", "new_level",
           "requested_level", "actor", "actor_user_id", "source", "reason", "detail", "client_address", "version",
           "prev_hash", "hash")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def rows(n: int, start: datetime, span: timedelta):
    """n synthetic events, oldest first, timestamps spread evenly over `span`."""
    rng = random.Random(18)
    weights = [w for _, _, w in ACTIONS]
    step = span / n
    for seq in range(1, n + 1):
        action, outcome, _ = rng.choices(ACTIONS, weights)[0]
        kind = rng.choices(["global", "account", "strategy", "symbol"], [30, 35, 15, 20])[0]
        key = {"global": "", "account": rng.choice(ACCOUNTS), "strategy": rng.choice(STRATEGIES),
               "symbol": rng.choice(SYMBOLS)}[kind]
        before, after = rng.choice(LEVELS), rng.choice(LEVELS)
        yield (seq, start + step * seq, action, outcome, kind, key, before, after, after, rng.choice(ACTORS),
               None, rng.choice(SOURCES), f"reason {rng.randrange(10_000)}: market move on {rng.choice(SYMBOLS)}",
               "", f"10.0.{rng.randrange(256)}.{rng.randrange(256)}", seq // 3, f"{seq - 1:064x}", f"{seq:064x}")


def fill(n: int) -> tuple[datetime, datetime]:
    """Insert n events in bulk; returns (first, last) created_at."""
    from django.db import connection, transaction

    from killswitch.models import AuditHead, Event

    start = datetime.now(UTC) - timedelta(days=3 * 365)
    span = timedelta(days=3 * 365) - timedelta(minutes=5)
    table = Event._meta.db_table
    # Columns this bench does not vary (e.g. the chain version) take the model's defaults.
    rest = [f for f in Event._meta.concrete_fields if not f.primary_key and f.column not in COLUMNS]
    columns = (*COLUMNS, *(f.column for f in rest))
    defaults = tuple(f.get_db_prep_save(f.get_default(), connection) for f in rest)
    started = time.monotonic()
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA synchronous=OFF")  # a throw-away database: no fsync per batch
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            with cursor.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows(n, start, span):
                    copy.write_row((*row, *defaults))
        else:
            sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(columns))})"
            batch: list[tuple] = []
            for row in rows(n, start, span):
                batch.append((*row[:1], connection.ops.adapt_datetimefield_value(row[1]), *row[2:], *defaults))
                if len(batch) == 50_000:
                    cursor.executemany(sql, batch)
                    batch.clear()
            if batch:
                cursor.executemany(sql, batch)
        AuditHead.objects.filter(pk=1).update(last_seq=n, last_hash=f"{n:064x}", state_version=n // 3)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # what autovacuum does after a bulk load; SQLite is left as Django leaves it
    print(f"inserted {n:,} events in {time.monotonic() - started:.1f} s ({connection.vendor})")
    return start, start + span


def timed(client, path: str, samples: int, **headers: str) -> list[float]:
    client.get(path, **headers)  # warm: the first request compiles queries and templates
    ms = []
    for _ in range(samples):
        started = time.perf_counter()
        response = client.get(path, **headers)
        ms.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise SystemExit(f"{path}: HTTP {response.status_code}: {response.content[:300]!r}")
    return ms


def api_cases(first: datetime, last: datetime, n: int) -> list[tuple[str, str]]:
    def iso(moment: datetime) -> str:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    old, middle, recent = first + timedelta(days=30), first + (last - first) / 2, last - timedelta(hours=6)
    return [
        ("first page (baseline)", ""),
        ("scope=global", "scope=global"),
        ("scope=account (one of 60)", f"scope=account:{ACCOUNTS[17]}"),
        ("scope=symbol (one of 150)", f"scope=symbol:{SYMBOLS[42]}"),
        ("action=refused", "action=refused"),
        ("action=restored (rare)", "action=restored"),
        ("actor (one of 303)", f"actor={ACTORS[42]}"),
        ("source=telegram", "source=telegram"),
        ("since=6 h ago", f"since={iso(recent)}"),
        ("since=3 years ago", f"since={iso(first)}"),
        ("until=a month after the start", f"until={iso(old)}"),
        ("until=the middle", f"until={iso(middle)}"),
        ("until=6 h ago", f"until={iso(recent)}"),
        ("since+until: one day, 2 years ago", f"since={iso(old + timedelta(days=335))}"
                                              f"&until={iso(old + timedelta(days=336))}"),
        ("before=seq 1000 (deep page)", "before=1000"),
        ("before=the middle", f"before={n // 2}"),
        ("limit=500", "limit=500"),
        ("scope+action", f"scope=account:{ACCOUNTS[3]}&action=activate"),
        ("actor+source", f"actor={ACTORS[7]}&source=api"),
        ("action+until old", f"action=deactivate&until={iso(old)}"),
        ("scope+until old+before", f"scope=account:{ACCOUNTS[5]}&until={iso(middle)}&before={n // 4}"),
    ]


def admin_cases() -> list[tuple[str, str]]:
    return [
        ("the list (View History)", ""),
        ("filter action=refused", "action__exact=refused"),
        ("filter outcome=noop", "outcome__exact=noop"),
        ("filter source=telegram", "source__exact=telegram"),
        ("filter scope kind=symbol", "scope_kind__exact=symbol"),
        ("filter new level=kill", "new_level=kill"),
        ("filter recorded within 7 days", "within=7d"),
        ("filter recorded within a year", "within=365d"),
        ("filters action+source+kind", "action__exact=activate&source__exact=api&scope_kind__exact=account"),
        ("search an actor", f"q={ACTORS[42]}"),
        ("search an account", f"q={ACCOUNTS[17]}"),
        ("search a scope label", f"q=symbol:{SYMBOLS[42]}"),
        ("search an event number", "q=%23123456"),
        ("page 50", "p=50"),
    ]


def report(title: str, cases: list[tuple[str, list[float]]], goal: float, baseline: float) -> bool:
    print(f"\n{title} (p95 goal <= {goal:.0f} ms; ratios against the API's first page, p50 {baseline:.1f} ms)")
    ok = True
    for name, ms in cases:
        p95 = pct(ms, 95)
        meets = p95 <= goal
        ok &= meets
        print(f"  {name:<38} p50={statistics.median(ms):8.1f} ms  p95={p95:8.1f} ms  "
              f"{statistics.median(ms) / baseline:6.1f}x  {'meets' if meets else 'MISSES'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=20, help="requests per case (default 20)")
    parser.add_argument("--postgres", metavar="URL", help="run on a temporary database on this server")
    args = parser.parse_args()

    from riskcontrol.embedded_redis import EmbeddedRedis

    work = Path(tempfile.mkdtemp(prefix="bench-history-"))
    database = None
    if args.postgres:
        from bench.bench_api import _TemporaryPostgres

        database = _TemporaryPostgres(args.postgres)
    redis_server = EmbeddedRedis().start()
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "riskcontrol.settings",
        "DATABASE_URL": database.url if database else f"sqlite:///{work / 'bench.sqlite3'}",
        "REDIS_URL": redis_server.url, "LOG_LEVEL": "WARNING", "ALLOWED_HOSTS": "testserver",
    })
    import django

    django.setup()
    from django.contrib.auth.models import Group, User
    from django.core.management import call_command
    from django.test import Client

    from killswitch.services.tokens import issue_token

    try:
        call_command("migrate", verbosity=0)
        User.objects.create_user("bench_viewer").groups.add(Group.objects.get(name="viewer"))
        officer = User.objects.create_user("bench_officer", is_staff=True)
        officer.groups.add(Group.objects.get(name="risk_officer"))
        token = issue_token(username="bench_viewer").key
        first, last = fill(args.events)
        client = Client()
        headers = {"HTTP_AUTHORIZATION": f"Token {token}"}
        api = [(name, timed(client, f"{API}?{query}", args.samples, **headers))
               for name, query in api_cases(first, last, args.events)]
        client.force_login(officer)
        admin = [(name, timed(client, f"{ADMIN}?{query}", args.samples))
                 for name, query in admin_cases()]
    finally:
        redis_server.cleanup()
        if database:
            from django.db import connections

            connections.close_all()
            database.drop()
    baseline = statistics.median(api[0][1])
    kind = f"PostgreSQL ({database.name})" if database else "SQLite"
    print(f"\n{args.events:,} events, {kind}, {args.samples} requests per case")
    api_ok = report("history API", api, API_GOAL_MS, baseline)
    admin_ok = report("admin event list", admin, ADMIN_GOAL_MS, baseline)
    print("\ngoals met" if api_ok and admin_ok else "\ngoals NOT met")
    return 0 if api_ok and admin_ok else 1


if __name__ == "__main__":
    sys.exit(main())
