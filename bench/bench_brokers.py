"""Broker work benchmark: activation -> verified run end, through a real Celery worker.

    .venv/bin/python bench/bench_brokers.py [--paper-orders 10000] [--ib-orders 1000]

1. Paper: 10,000 working paper orders (two accounts), global HALT; time from
   activate() to every run completed (cancelled and re-read). Goal <= 1 s.
2. Fake IB gateway (TWS wire protocol, real ib_async): 1,000 working orders placed
   by another API client; global HALT (one reqGlobalCancel) against an account HALT
   (order by order, throttled to 40 messages/s). Goal: global <= 1 s. The
   order-by-order time is the baseline measured in the same run.
3. Fake IB gateway: account KILL of 200 positions across four secTypes (50 each of
   FUT, OPT, CASH, CRYPTO, each closed on its own contract qualified by conId),
   activation -> verified flat, next to the same kill of 200 stock positions (the
   baseline); pacing violations counted by the gateway (must be 0).

Everything runs on a private SQLite file, an embedded Redis and a worker subprocess.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--paper-orders", type=int, default=10_000)
    parser.add_argument("--ib-orders", type=int, default=1_000)
    parser.add_argument("--ib-positions", type=int, default=200)
    args = parser.parse_args()

    import yaml

    from riskcontrol.embedded_redis import EmbeddedRedis, free_port
    from tests.fake_ib.gateway import FakeGateway

    tmp = Path(tempfile.mkdtemp(prefix="bench-brokers-"))
    redis_server = EmbeddedRedis().start()
    gateway = FakeGateway(port=free_port(), accounts=("DU333333",)).start()
    policy = yaml.safe_load((BASE / "config" / "risk_limits.yaml").read_text())
    policy["kill_switch"]["cooldown_minutes"] = 0
    policy["brokers"] = {
        "paper": {"accounts": ["DU111111", "DU222222"]},
        "ib": {"connections": [{"name": "fake", "port": gateway.port, "client_id": 90, "sweep_client_id": 91,
                                "accounts": ["DU333333"], "confirm_timeout_seconds": 5}]},
        "runs": {"lease_seconds": 30, "verify_rounds": 3},
    }
    (tmp / "policy.yaml").write_text(yaml.safe_dump(policy))
    os.environ.update({
        "DATABASE_URL": f"sqlite:///{tmp / 'bench.sqlite3'}", "REDIS_URL": redis_server.url,
        "RISK_LIMITS_PATH": str(tmp / "policy.yaml"), "PAPER_ONLY": "false", "LOG_LEVEL": "WARNING",
        "DJANGO_SETTINGS_MODULE": "riskcontrol.settings",
    })
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "riskcontrol", "worker", "--pool=solo", "--loglevel=WARNING",
         "-Q", "broker",
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=BASE, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        return run(args, gateway, worker)
    finally:
        worker.terminate()
        worker.wait(timeout=20)
        gateway.stop()
        redis_server.cleanup()


def run(args, gateway, worker) -> int:
    from brokers.adapters import paper
    from brokers.models import TERMINAL_STATES, BrokerRun, PaperOrder
    from killswitch import services as ks

    def activate_and_wait(scope: str, level: str = "halt") -> float:
        before = BrokerRun.objects.order_by("-id").values_list("id", flat=True).first() or 0
        start = time.perf_counter()
        ks.activate(scope=scope, level=level, reason="bench", actor="cli:bench", source="cli")
        while True:
            runs = list(BrokerRun.objects.filter(id__gt=before).values_list("state", flat=True))
            if runs and all(s in TERMINAL_STATES for s in runs):
                elapsed = time.perf_counter() - start
                break
            if worker.poll() is not None:
                raise SystemExit("the celery worker died")
            time.sleep(0.02)  # light polling: the gateway shares this process
        if set(runs) != {"completed"}:
            raise SystemExit(f"runs did not complete: {runs}")
        ks.deactivate(scope=scope, actor="cli:bench", source="cli")
        return elapsed

    # Warm-up: the worker's first task imports and connects.
    for code in ("DU111111", "DU222222"):
        paper.ensure_account(code)
    activate_and_wait("account:DU111111")

    accounts = [paper.get_account("DU111111"), paper.get_account("DU222222")]
    PaperOrder.objects.bulk_create(
        [PaperOrder(account=accounts[i % 2], symbol="AAPL", side="BUY", quantity=1, limit_price=1,
                    strategy=f"s{i % 7}") for i in range(args.paper_orders)], batch_size=2000)
    paper_s = activate_and_wait("global")
    left = PaperOrder.objects.filter(status="working").count()
    print(f"paper: {args.paper_orders} working orders, global halt -> verified: {paper_s:.3f} s "
          f"(goal 1 s: {paper_s / 1.0:.2f}x of goal; {left} left working)")

    def place_ib_orders() -> None:
        for i in range(args.ib_orders):
            gateway.add_working_order("DU333333", "AAPL", "BUY", 1, 10.0, order_ref=f"s{i % 7}", client_id=7)

    place_ib_orders()
    global_s = activate_and_wait("global")
    assert gateway.global_cancel_count >= 1
    place_ib_orders()
    by_order_s = activate_and_wait("account:DU333333")
    working = [o for o in gateway.orders() if o["status"] in ("Submitted", "PreSubmitted")]
    print(f"fake IB gateway: {args.ib_orders} working orders, global halt (reqGlobalCancel) -> verified: "
          f"{global_s:.3f} s (goal 1 s: {global_s:.2f}x of goal)")
    print(f"fake IB gateway: {args.ib_orders} working orders, account halt (order by order at "
          f"40 msg/s) -> verified: {by_order_s:.3f} s")
    print(f"ratio order-by-order / global: {by_order_s / global_s:.1f}x; pacing violations: "
          f"{gateway.pacing_violations}; left working: {len(working)}")
    stock_s, mixed_s, flat = kill_positions(gateway, args.ib_positions, activate_and_wait)
    ok = paper_s <= 1.0 and global_s <= 1.0 and not working and not left and flat
    ok = ok and gateway.pacing_violations == 0
    print("goals met" if ok else "goals NOT met")
    return 0 if ok else 1


def kill_positions(gateway, count: int, activate_and_wait) -> tuple[float, float, bool]:
    """KILL of `count` stock positions (baseline), then of `count` positions across
    FUT, OPT, CASH and CRYPTO; each from activation to the run verified flat."""
    account = "DU333333"
    for i in range(count):
        gateway.set_position(account, f"S{i:03d}", 10 + i % 7, 50.0)
    stock_s = activate_and_wait(f"account:{account}", "kill")
    stock_flat = not gateway.positions()
    sent_before = len(gateway.placed_orders)
    per = count // 4
    kinds = {
        "FUT": lambda i: dict(symbol=f"F{i:02d}", exchange="CME", multiplier="50", last_trade_date="20271217",
                              local_symbol=f"F{i:02d}Z7"),
        "OPT": lambda i: dict(symbol="AAPL", exchange="SMART", multiplier="100", last_trade_date="20271217",
                              strike=100.0 + i, right="C" if i % 2 else "P"),
        "CASH": lambda i: dict(symbol=f"C{i:02d}", exchange="IDEALPRO"),
        "CRYPTO": lambda i: dict(symbol=f"K{i:02d}", exchange="PAXOS"),
    }
    con_id = 800_000_000
    for n, (sec_type, fields) in enumerate(kinds.items()):
        for i in range(per):
            con_id += 1
            gateway.add_contract(con_id, sec_type=sec_type, **fields(i))
            gateway.set_price(con_id, 10.0 + i)
            qty = (25_000 if sec_type == "CASH" else 0.5 if sec_type == "CRYPTO" else 1 + i % 5)
            gateway.set_position(account, con_id, qty if (i + n) % 2 else -qty, 10.0)
    mixed_s = activate_and_wait(f"account:{account}", "kill")
    left = gateway.positions()
    closing = [p for p in gateway.placed_orders[sent_before:] if p["order_ref"].startswith("ks-close-")]
    wrong = [p for p in closing if p["con_id"] != p["requested_con_id"] or p["outcome"] != "filled"]
    print(f"fake IB gateway: kill of {count} stock positions -> verified flat: {stock_s:.3f} s")
    print(f"fake IB gateway: kill of {per * 4} positions across FUT, OPT, CASH, CRYPTO (closed by conId) -> "
          f"verified flat: {mixed_s:.3f} s ({mixed_s / stock_s:.2f}x the stock-only kill); "
          f"{len(closing)} closing orders, {len(wrong)} not filled on their own contract; "
          f"{len(left)} positions left; pacing violations: {gateway.pacing_violations}")
    return stock_s, mixed_s, stock_flat and not left and not wrong


if __name__ == "__main__":
    sys.exit(main())
