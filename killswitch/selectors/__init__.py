"""Reads (no rules, no writes): the state of every scope, the audit log, the trading
processes. One module per family; this package lists what the interfaces use."""

from __future__ import annotations

from .clients import (
    ClientStatus,
    client_counts,
    client_statuses,
    ingest_acknowledgements_safely,
    recent_propagation,
)
from .history import MAX_PAGE, event_as_dict, history
from .open_items import open_in_scope
from .operations import event_counts, notification_outcomes, propagation_histogram
from .scopes import ScopeState, effective_level, global_level, scope_states, state_version, status

__all__ = [
    "MAX_PAGE", "ClientStatus", "ScopeState", "client_counts", "client_statuses", "effective_level",
    "event_as_dict", "event_counts", "global_level", "history", "ingest_acknowledgements_safely",
    "notification_outcomes", "open_in_scope", "propagation_histogram", "recent_propagation", "scope_states",
    "state_version", "status",
]
