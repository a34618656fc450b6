"""What the brokers tell the kill switch about known scopes (registered in apps.py,
read by killswitch.services.known_scopes): every configured account, and the symbols
held where positions can be read from here.

Positions are read from the paper broker's tables only: other brokers are not
connected to from a web process (their sessions belong to the worker and the sweep),
so their symbols are not suggested; an activation on them is never warned about
(symbols are not checked), only not suggested.
"""

from __future__ import annotations

from .config import brokers_config
from .models import PaperPosition


def configured_accounts() -> list[str]:
    """Every account of every configured broker (the accounts a run can act on)."""
    return sorted(brokers_config().accounts)


def symbols_held() -> list[str]:
    """Symbols with an open position on a configured paper account."""
    paper = brokers_config().paper_accounts
    return sorted(set(PaperPosition.objects.filter(account__code__in=paper).exclude(quantity=0)
                      .values_list("symbol", flat=True)))
