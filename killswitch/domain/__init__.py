"""The kill switch's domain: levels, scopes and the Redis contract (key names, message
shapes, severity), as the service uses them.

The facts themselves are written once, in `killswitch_client.contract`: trading
processes install only that distribution (no Django), so it owns the contract and
the service depends on it, never the other way round. This package is the service's
one door to those facts: service code imports them from `killswitch.domain`, the
Lua scripts get their severity table from it (`lua_severity_table()`), and nothing
else restates a key name, a level or the severity order.
"""

from __future__ import annotations

from killswitch_client.contract import (
    ACCOUNT,
    ACKS_MAXLEN,
    ACTIVE_LEVELS,
    BROKER_LEVELS,
    CHANNEL,
    CLIENT_READ_KEYS,
    CLIENT_WRITE_KEYS,
    GLOBAL,
    HALT,
    KEY_ACKS,
    KEY_CLIENTS,
    KEY_GLOBAL,
    KEY_HEARTBEAT,
    KEY_LOG,
    KEY_PENDING,
    KEY_REFUSALS,
    KEY_SCOPES,
    KEY_STATE,
    KILL,
    LEVELS,
    MAX_SCOPE_KEY,
    PAUSE,
    RUNNING,
    SCOPE_FORMS,
    SCOPE_KINDS,
    SEVERITY,
    STATE_META_FIELDS,
    STRATEGY,
    SYMBOL,
    ScopeError,
    ScopeRef,
    effective_level,
    heartbeat_message,
    label,
    levels_of,
    lua_severity_table,
    matching_scopes,
    more_severe,
    normalize_level,
    parse_heartbeat,
    state_message,
    version_of,
)

__all__ = [
    "ACCOUNT", "ACKS_MAXLEN", "ACTIVE_LEVELS", "BROKER_LEVELS", "CHANNEL", "CLIENT_READ_KEYS",
    "CLIENT_WRITE_KEYS", "GLOBAL", "HALT", "KEY_ACKS", "KEY_CLIENTS", "KEY_GLOBAL", "KEY_HEARTBEAT",
    "KEY_LOG", "KEY_PENDING", "KEY_REFUSALS", "KEY_SCOPES", "KEY_STATE", "KILL", "LEVELS", "MAX_SCOPE_KEY", "PAUSE",
    "RUNNING", "SCOPE_FORMS", "SCOPE_KINDS", "SEVERITY", "STATE_META_FIELDS", "STRATEGY", "SYMBOL",
    "ScopeError", "ScopeRef", "effective_level", "heartbeat_message", "label", "levels_of",
    "lua_severity_table", "matching_scopes", "more_severe", "normalize_level", "parse_heartbeat",
    "state_message", "version_of",
]
