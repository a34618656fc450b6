"""The broker side of the drill, contributed by the app that owns the brokers.

killswitch imports nothing of brokers/: the brokers app registers a BrokerDrill from
its AppConfig.ready (brokers/drill.py). The drill asks it which accounts may be
drilled, to seed them, and what the broker shows afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class BrokerObservation:
    """What the broker shows after the activation (JSON-ready values)."""

    runs: list[dict[str, Any]] = field(default_factory=list)  # id, account, level, state, attempts,
    # event_seq, created_at, finished_at, notes, error
    finished: bool = False  # every expected run has reached a terminal state
    orders_left: int = 0  # working orders left in the drilled accounts
    positions_left: list[str] = field(default_factory=list)  # "DRILL01 AAPL 100"
    seeded_orders: int = 0
    orders: list[dict[str, Any]] = field(default_factory=list)  # per order/position: action, outcome, ...


class BrokerDrill(Protocol):
    def check_accounts(self, accounts: list[str] | None, *, default: str) -> tuple[list[str], bool]:
        """The accounts to drill and whether the default drill account is used. Raises
        DrillRefused for any account the broker side does not let the drill trade (the
        brokers app: paper accounts, and MT5 demo accounts named with --account)."""

    def seed(self, accounts: list[str], *, reset: bool, stamp: str) -> dict[str, list[str]]:
        """Positions and working orders on each account (reset first if asked); returns
        account -> the broker ids of the orders placed."""

    def observe(self, accounts: list[str], *, event_seqs: list[int],
                placed: dict[str, list[str]]) -> BrokerObservation:
        """The runs of the activations `event_seqs` and what is left at the broker."""

    def settings(self) -> dict[str, Any]:
        """Broker settings worth recording in the report."""


_registered: BrokerDrill | None = None


def register(steps: BrokerDrill) -> None:
    global _registered
    _registered = steps


def broker_drill() -> BrokerDrill:
    """The registered broker steps. Raises LookupError when no app registered any."""
    if _registered is None:
        raise LookupError("no broker drill steps are registered (is the brokers app installed?)")
    return _registered
