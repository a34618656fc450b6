"""Demo data for `make run` and `manage.py paper seed`: paper accounts with prices,
long and short positions and working orders tagged with strategies."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

DEMO_ACCOUNTS = ("DU111111", "DU222222")
DEMO_PRICES = {"AAPL": "190.00", "MSFT": "410.00", "TSLA": "240.00", "SPY": "520.00", "NVDA": "900.00"}
DEMO_POSITIONS = (
    ("DU111111", "AAPL", "100", "185.50"),
    ("DU111111", "TSLA", "-50", "250.00"),
    ("DU222222", "MSFT", "30", "400.00"),
    ("DU222222", "SPY", "-20", "525.00"),
)
DEMO_ORDERS = (
    ("demo-1", "DU111111", "AAPL", "BUY", "50", "180.00", "momentum"),
    ("demo-2", "DU111111", "TSLA", "SELL", "25", "260.00", "mean_reversion"),
    ("demo-3", "DU111111", "NVDA", "BUY", "10", "850.00", "momentum"),
    ("demo-4", "DU222222", "MSFT", "SELL", "15", "420.00", "momentum"),
    ("demo-5", "DU222222", "SPY", "BUY", "40", "500.00", "index_arb"),
)


def seed_demo_data() -> dict[str, int]:
    """Paper accounts DU111111 and DU222222 with prices, long and short positions and
    working orders tagged with strategies. Every other configured paper account (e.g.
    the drill's DRILL01) is opened empty, so a global halt finds nothing missing there.
    Idempotent: existing orders (by their client ids) and positions are left as they are."""
    from .adapters import paper
    from .config import brokers_config

    with transaction.atomic():
        for code in dict.fromkeys([*DEMO_ACCOUNTS, *brokers_config().paper_accounts]):
            paper.ensure_account(code)
        for symbol, price in DEMO_PRICES.items():
            if paper.last_price(symbol) is None:
                paper.set_price(symbol, price)
        from .models import PaperPosition

        for account, symbol, qty, cost in DEMO_POSITIONS:
            if not PaperPosition.objects.filter(account__code=account, symbol=symbol).exists():
                paper.set_position(account=account, symbol=symbol, quantity=qty, avg_cost=cost)
        for ref, account, symbol, side, qty, limit, strategy in DEMO_ORDERS:
            paper.place_order(account=account, symbol=symbol, side=side, quantity=Decimal(qty),
                              limit_price=limit, strategy=strategy, client_order_id=ref)
    return {"accounts": len(DEMO_ACCOUNTS), "positions": len(DEMO_POSITIONS), "orders": len(DEMO_ORDERS)}
