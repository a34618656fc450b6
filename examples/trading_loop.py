"""The seed's main trading loop, rewritten on the kill switch client.

    make run                                   # the service, Redis, the paper broker
    .venv/bin/python examples/trading_loop.py  # in another terminal (same machine)

Then, from the dashboard, the API, the CLI or `redis-cli SET trading_switch pause`:
- pause: the loop stops generating signals; only reduce-only orders pass the gate;
- halt:  no orders; the service cancels this account's working orders;
- kill:  `on_kill` runs, then the process exits with code 1 (the seed's behaviour);
- Redis down, state flushed, service heartbeat stale: the loop reads `halt` and
  prints why, and resumes by itself once the state is known again.

`manage.py killswitch clients` (or GET /api/risk/clients) shows this process, the
level it sees and how fast it acknowledged each change. Each iteration also reports
its market data (`switch.market_data`) and renews a dead-man's switch
(`switch.heartbeat`), the inputs of the automatic breakers.

With no --redis-url the client finds Redis itself: REDIS_SENTINELS, REDIS_URL, the
seed's REDIS_HOST/PORT/PASSWORD, then the record `make run` writes (var/stack.json).

Orders go to the paper broker (the project's database) when Django is importable
(`--broker paper`, the default); `--broker print` only prints them, so the kill
switch part runs anywhere with only the client installed (`pip install ./clients/python`).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import sys
import time
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from killswitch_client import KillSwitch, OrderRefused

ROOT = Path(__file__).resolve().parent.parent


def log(message: str) -> None:
    print(f"[{datetime.now().isoformat(timespec='seconds')}] {message}", flush=True)


class PrintBroker:
    def place(self, *, symbol: str, side: str, quantity: int, reduce_only: bool) -> str:
        return f"(not sent) {side} {quantity} {symbol}{' reduce-only' if reduce_only else ''}"


class PaperBroker:
    """Orders into the service's paper broker: limit orders that rest, so a halt has
    working orders to cancel."""

    def __init__(self, account: str, strategy: str) -> None:
        sys.path.insert(0, str(ROOT))  # the service's code, from this checkout
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskcontrol.settings")
        import django

        django.setup()
        from brokers.adapters import paper

        self.paper, self.account, self.strategy = paper, account, strategy
        paper.ensure_account(account)

    def place(self, *, symbol: str, side: str, quantity: int, reduce_only: bool) -> str:
        price = self.paper.last_price(symbol) or Decimal(100)
        # 1% away from the last price: the order rests, so a halt has something to cancel.
        limit = (price * (Decimal("0.99") if side == "BUY" else Decimal("1.01"))).quantize(Decimal("0.01"))
        order = self.paper.place_order(account=self.account, symbol=symbol, side=side,
                                       quantity=quantity, order_type="LMT", limit_price=limit,
                                       strategy=self.strategy)
        return f"paper order #{order.pk} {side} {quantity} {symbol} @ {order.limit_price} ({order.status})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redis-url", default=None,
                        help="default: REDIS_SENTINELS, REDIS_URL, REDIS_HOST/PORT/PASSWORD, var/stack.json")
    parser.add_argument("--account", default="DU111111", help="default: a demo paper account")
    parser.add_argument("--strategy", default="example")
    parser.add_argument("--symbol", default="AAPL")
    parser.add_argument("--name", default="example-trading-loop")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds per iteration (the seed: 1)")
    parser.add_argument("--iterations", type=int, default=0, help="stop after N iterations (0: forever)")
    parser.add_argument("--broker", choices=("paper", "print"), default="paper")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    broker = PaperBroker(args.account, args.strategy) if args.broker == "paper" else PrintBroker()

    def on_kill() -> None:
        # The service closes this account's positions at market on kill; a process
        # may add its own last words here (flush state, tell its operator).
        log("KILL: emergency stop; the service is liquidating positions; exiting with code 1")

    switch = KillSwitch(args.redis_url, account=args.account, strategy=args.strategy,
                        name=args.name, on_kill=on_kill)
    if not switch.wait_ready(timeout=10):
        log(f"kill switch state not readable yet ({switch.cause}); the loop reads halt meanwhile")
    log(f"started as {switch.identity.client_id}; account {args.account}, strategy {args.strategy}")

    last = None
    try:
        for loop_count in itertools.count(1):
            if args.iterations and loop_count > args.iterations:
                return 0
            # CHECK KILL SWITCH AT START OF EVERY ITERATION (a memory read; exits on kill)
            status = switch.check()
            if status != last:
                detail = f" ({switch.view.describe()})" if status != "running" else ""
                log(f"kill switch: {status}{detail}")
                last = status
            # At every level: market data goes on (a memory write, sent once a second) and
            # the loop renews its dead-man's switch, the automatic breakers' inputs.
            switch.market_data(args.symbol)
            switch.heartbeat("signal-loop")

            if status == "pause":
                # No new signals. Exits and stop changes are still allowed (reduce-only).
                time.sleep(args.interval)
                continue
            if status == "halt":
                # No orders at all; keep watching positions and market data.
                time.sleep(args.interval)
                continue

            # Normal operation (status == 'running'): signal, risk, execution.
            side = "BUY" if loop_count % 2 else "SELL"
            try:
                switch.gate(args.symbol)  # refused if a symbol scope or a new change forbids it
                log(broker.place(symbol=args.symbol, side=side, quantity=1, reduce_only=False))
            except OrderRefused as refused:
                log(f"order refused: {refused}")

            time.sleep(args.interval)
            if loop_count % 60 == 0:
                log(f"Loop iteration {loop_count}")
    except KeyboardInterrupt:
        log("Shutdown signal received")
        return 0
    finally:
        switch.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
