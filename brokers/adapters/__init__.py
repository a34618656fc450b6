"""Broker adapters: the interface (base), the paper broker, Interactive Brokers, MetaTrader 5.

`adapter_for(account)` is the only way the runs and the sweep obtain an adapter:
it maps the account to its broker through the `brokers:` configuration and the
registry below, and refuses every broker but the paper broker when PAPER_ONLY is set.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.module_loading import import_string

from ..config import IB, MT5, PAPER, brokers_config
from .base import BrokerAdapter, BrokerError, BrokerScope

# kind -> dotted path of the adapter class
REGISTRY: dict[str, str] = {
    PAPER: "brokers.adapters.paper.PaperAdapter",
    IB: "brokers.adapters.ib.IBAdapter",
    MT5: "brokers.adapters.mt5.MT5Adapter",
}

RUN, SWEEP, BREAKER = "run", "sweep", "breaker"


def broker_of(account: str) -> str:
    """The broker kind an account is configured at. Raises BrokerError (not retryable)."""
    kind = brokers_config().accounts.get(account)
    if kind is None:
        raise BrokerError(f"account {account!r} is not configured under brokers: in risk_limits.yaml",
                          retryable=False)
    return kind


def session_key(account: str) -> str:
    """Accounts that share one broker session (IB: one connection, one client id per
    purpose) share one key: a caller keeping adapters open (the sweep loop) keeps one
    per key, since a second session with the same IB client id is refused. An MT5
    session serves one login of its terminal: one key per account."""
    kind = broker_of(account)
    if kind == IB:
        conn = brokers_config().ib_connection_for(account)
        return f"{IB}:{conn.name}" if conn else f"{IB}:{account}"
    if kind == MT5:
        return f"{MT5}:{account}"
    return kind


def adapter_for(account: str, *, purpose: str = RUN) -> BrokerAdapter:
    """A new adapter for `account`'s broker. `purpose` picks the IB client id (runs, the
    sweep loop and the breaker loop are separate processes and need separate sessions).

    Raises BrokerError(retryable=False) for an unknown account or, in PAPER_ONLY mode,
    any broker other than the paper broker.
    """
    kind = broker_of(account)
    if kind != PAPER and getattr(settings, "PAPER_ONLY", True):
        raise BrokerError(f"PAPER_ONLY is set: refusing broker {kind!r} for account {account}",
                          retryable=False)
    cls = import_string(REGISTRY[kind])
    if kind == IB:
        conn = brokers_config().ib_connection_for(account)
        # Run sessions are kept open by the worker process between runs; the sweep loop
        # holds its adapters itself.
        client_id = {SWEEP: conn.sweep_client_id, BREAKER: conn.breaker_client_id}.get(purpose, conn.client_id)
        return cls(conn, client_id=client_id, persistent=purpose == RUN)
    if kind == MT5:
        return cls(brokers_config().mt5_terminal_for(account), account)
    return cls()


__all__ = ["BrokerAdapter", "BrokerError", "BrokerScope", "REGISTRY", "adapter_for", "broker_of", "session_key"]
