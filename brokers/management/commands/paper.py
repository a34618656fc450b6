"""`manage.py paper ...`: drive the paper broker (demos, manual checks).

    paper seed                                   demo accounts, prices, positions, orders
    paper account DU333333                       open an account
    paper price AAPL 190.5                       set the last price (fills crossing limits)
    paper place DU111111 BUY 100 AAPL --limit 189 --strategy momo [--client-id X]
    paper place DU111111 SELL 10 AAPL --market
    paper place DU111111 BUY 2 ESZ6 --market --asset-class future
    paper fill 42 [--qty 10] [--price 190]       fill (part of) a working order
    paper cancel 42
    paper position DU111111 AAPL -50 --cost 191  overwrite a position
    paper orders [--account A] [--status working] [--json]
    paper positions [--account A] [--json]
    paper offline DU111111                       the account's broker connection goes down
    paper online DU111111                        ... and comes back
"""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError

from brokers import demo, selectors
from brokers.adapters import paper
from brokers.adapters.base import BrokerError
from brokers.adapters.paper_figures import set_offline
from brokers.selectors import plain as _n
from killswitch.cli._common import table


def _order_dict(o) -> dict:
    o.refresh_from_db()
    return {"id": o.pk, "account": o.account.code, "client_order_id": o.client_order_id, "strategy": o.strategy,
            "symbol": o.symbol, "asset_class": o.asset_class, "side": o.side, "type": o.order_type, "quantity": _n(o.quantity),
            "limit_price": None if o.limit_price is None else _n(o.limit_price),
            "filled": _n(o.filled_quantity), "status": o.status, "reject_reason": o.reject_reason}


class Command(BaseCommand):
    help = ("Drive the paper broker: seed, account, price, place, fill, cancel, position, orders, positions, "
            "offline, online.")
    requires_system_checks: list[str] = []  # as `killswitch`: output for people, no deployment warnings

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="sub", required=True, metavar="SUBCOMMAND")
        sub.add_parser("seed", help="demo accounts DU111111/DU222222 with positions and working orders")
        p = sub.add_parser("account", help="open a paper account")
        p.add_argument("code")
        p = sub.add_parser("price", help="set the last price of a symbol")
        p.add_argument("symbol")
        p.add_argument("price")
        p.add_argument("--asset-class", dest="asset_class", default="stock")
        p = sub.add_parser("place", help="place an order")
        p.add_argument("account")
        p.add_argument("side", choices=["BUY", "SELL", "buy", "sell"])
        p.add_argument("quantity")
        p.add_argument("symbol")
        kind = p.add_mutually_exclusive_group(required=True)
        kind.add_argument("--limit")
        kind.add_argument("--market", action="store_true")
        p.add_argument("--strategy", default="")
        p.add_argument("--client-id", dest="client_id")
        p.add_argument("--asset-class", dest="asset_class", default="stock",
                       help="stock (default), future, option, fx, cfd, crypto, bond, fund")
        p = sub.add_parser("fill", help="fill a working order")
        p.add_argument("order_id", type=int)
        p.add_argument("--qty")
        p.add_argument("--price")
        p = sub.add_parser("cancel", help="cancel an order")
        p.add_argument("order_id", type=int)
        p = sub.add_parser("position", help="overwrite a position")
        p.add_argument("account")
        p.add_argument("symbol")
        p.add_argument("quantity")
        p.add_argument("--cost", default="0")
        p.add_argument("--asset-class", dest="asset_class", default="stock")
        for name, what in (("offline", "take the account's broker connection down (every read and order "
                                        "is refused until `paper online`)"), ("online", "bring it back")):
            sub.add_parser(name, help=what).add_argument("account")
        for name in ("orders", "positions"):
            p = sub.add_parser(name, help=f"list {name}")
            p.add_argument("--account")
            p.add_argument("--json", action="store_true")
            if name == "orders":
                p.add_argument("--status")

    def handle(self, *args, **o) -> None:
        try:
            getattr(self, f"do_{o['sub']}")(o)
        except paper.PaperError as exc:
            raise CommandError(str(exc)) from None
        except BrokerError as exc:
            raise CommandError(exc.message) from None

    def do_offline(self, o) -> None:
        account = set_offline(o["account"], True)
        self.stdout.write(f"{account.code} offline since {account.offline_since:%H:%M:%S} UTC")

    def do_online(self, o) -> None:
        self.stdout.write(f"{set_offline(o['account'], False).code} online")

    def do_seed(self, o) -> None:
        counts = demo.seed_demo_data()
        self.stdout.write(f"paper demo data: {counts['accounts']} accounts, {counts['positions']} positions, "
                          f"{counts['orders']} orders (idempotent)")

    def do_account(self, o) -> None:
        self.stdout.write(f"account {paper.ensure_account(o['code']).code}")

    def do_price(self, o) -> None:
        filled = paper.set_price(o["symbol"], o["price"], o["asset_class"])
        self.stdout.write(f"{o['symbol'].upper()} = {o['price']}" + (f"; filled {[x.pk for x in filled]}" if filled else ""))

    def do_place(self, o) -> None:
        order = paper.place_order(account=o["account"], symbol=o["symbol"], side=o["side"], quantity=o["quantity"],
                                  order_type="MKT" if o["market"] else "LMT", limit_price=o["limit"],
                                  strategy=o["strategy"], client_order_id=o["client_id"],
                                  asset_class=o["asset_class"])
        self.stdout.write(json.dumps(_order_dict(order)))

    def do_fill(self, o) -> None:
        self.stdout.write(json.dumps(_order_dict(paper.fill(o["order_id"], o["qty"], o["price"]))))

    def do_cancel(self, o) -> None:
        outcome, order = paper.cancel(o["order_id"])
        self.stdout.write(f"{outcome}: " + json.dumps(_order_dict(order)))

    def do_position(self, o) -> None:
        p = paper.set_position(account=o["account"], symbol=o["symbol"], quantity=o["quantity"], avg_cost=o["cost"],
                               asset_class=o["asset_class"])
        self.stdout.write(f"{p.account.code} {p.symbol} {p.asset_class} {_n(p.quantity)} @ {_n(p.avg_cost)}")

    def do_orders(self, o) -> None:
        rows = [_order_dict(x) for x in selectors.paper_orders(account=o.get("account"), status=o.get("status"))]
        if o["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        table(self.stdout, ["ID", "ACCOUNT", "SIDE", "QTY", "SYMBOL", "TYPE", "LIMIT", "FILLED", "STATUS",
                            "STRATEGY", "REJECTED BECAUSE"],
              [(r["id"], r["account"], r["side"], r["quantity"], r["symbol"], r["type"], r["limit_price"],
                r["filled"], r["status"], r["strategy"], r["reject_reason"]) for r in rows],
              empty="No orders.", right=["ID", "QTY", "LIMIT", "FILLED"])

    def do_positions(self, o) -> None:
        rows = [{"account": p.account.code, "symbol": p.symbol, "asset_class": p.asset_class,
                 "quantity": _n(p.quantity),
                 "avg_cost": _n(p.avg_cost)} for p in selectors.paper_positions(account=o.get("account"))]
        if o["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        table(self.stdout, ["ACCOUNT", "SYMBOL", "CLASS", "QTY", "AVG COST"],
              [(r["account"], r["symbol"], r["asset_class"], r["quantity"], r["avg_cost"]) for r in rows],
              empty="No open positions.", right=["QTY", "AVG COST"])
