"""Reads (no rules, no writes): the state of every scope, the audit log, the trading
processes. One module per family; this package lists what the interfaces use."""

from __future__ import annotations

from .clients import (
    ClientStatus,
    client_statuses,
    ingest_acknowledgements_safely,
    recent_propagation,
)
from .history import MAX_PAGE, event_as_dict, history
from .open_items import open_in_scope
from .scopes import ScopeState, effective_level, global_level, scope_states, state_version, status

__all__ = [
    "MAX_PAGE", "ClientStatus", "ScopeState", "client_statuses", "effective_level", "event_as_dict",
    "global_level", "history", "open_in_scope", "ingest_acknowledgements_safely", "recent_propagation", "scope_states",
    "state_version", "status",
]
