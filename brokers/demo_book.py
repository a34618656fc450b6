"""Restoring the demo book for `manage.py killswitch demo-reset` (registered in apps.py,
called by killswitch.services.demo_reset after every scope is running again): the demo
accounts (brokers/demo.py) get back exactly their demo prices, positions and working
orders, whatever a demo's halts and kills cancelled, closed or filled.

Only the demo accounts, only at the paper broker: the reset refuses to run unless the
installation is PAPER_ONLY (checked by the service) and an account of the demo that is
not a configured paper account is left alone.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db import transaction
from django.utils import timezone

from .config import brokers_config
from .demo import DEMO_ACCOUNTS, DEMO_ORDERS, DEMO_POSITIONS, DEMO_PRICES
from .models import PAPER_WORKING, PaperOrder, PaperPosition


def reset_demo_book() -> dict[str, Any]:
    """Cancel every working order of the demo accounts, set their positions to the demo's
    (and nothing else), set the demo prices, and place the demo orders again (fresh
    client ids: the old ones are kept as cancelled history). Returns the counts."""
    from .adapters import paper

    accounts = [a for a in DEMO_ACCOUNTS if a in brokers_config().paper_accounts]
    stamp = timezone.now().strftime("%Y%m%d%H%M%S%f")
    with transaction.atomic():
        for account in accounts:
            paper.ensure_account(account)
            for order in PaperOrder.objects.filter(account__code=account, status__in=PAPER_WORKING):
                paper.cancel(order.pk)
            PaperPosition.objects.filter(account__code=account).exclude(quantity=0).update(
                quantity=0, avg_cost=0, updated_at=timezone.now())
        for symbol, price in DEMO_PRICES.items():
            paper.set_price(symbol, price)
        positions = [p for p in DEMO_POSITIONS if p[0] in accounts]
        for account, symbol, qty, cost in positions:
            paper.set_position(account=account, symbol=symbol, quantity=qty, avg_cost=cost)
        orders = [o for o in DEMO_ORDERS if o[1] in accounts]
        for ref, account, symbol, side, qty, limit, strategy in orders:
            paper.place_order(account=account, symbol=symbol, side=side, quantity=Decimal(qty), limit_price=limit,
                              strategy=strategy, client_order_id=f"{ref}-{stamp}")
    return {"accounts": len(accounts), "positions": len(positions), "orders": len(orders)}
