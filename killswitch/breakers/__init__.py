"""Automatic circuit breakers and dead-man's switches: configured limits that trip the
switch by themselves, through the same services as any person (DESIGN: "Automatic
breakers").

- config: the `breakers:` list of config/risk_limits.yaml, validated at start-up;
- feeds: the interface brokers fill (P&L, positions, orders, connection), a registry;
- inputs: what trading processes report (market data times, heartbeats);
- kinds: each kind's figure from one round's data (pure);
- engine: the loop (leadership lease, latch, trip, warn), `manage.py killswitch breakers run`;
- state: what the loop keeps in Redis and what every interface reads;
- deadman: renewing a dead-man's switch over the API.

`connect()` (KillswitchConfig.ready) plugs the breakers into the Risk page, the open
items of every resume answer, /metrics and the process list of `make run`. The loop's
leadership lease is the shared one (killswitch.runtime.leadership, `breakers`).
"""

from __future__ import annotations

from typing import Any

from killswitch import domain as L


def open_breakers(ref: L.ScopeRef) -> list[dict[str, Any]]:
    """The breakers of scope `ref` that are tripped or beyond their limit now: a resume
    re-arms them, and one still beyond its limit trips again at once."""
    from . import state

    snap = state.snapshot()
    found = []
    for row in snap.rows:
        if row["scope"] != str(ref) or row["state"] not in (state.TRIPPED, state.BREACHED, state.UNKNOWN):
            continue
        value, limit = row.get("value"), row.get("limit_value")
        beyond = value is not None and limit is not None and value > limit
        found.append({
            "name": row["name"], "kind": row["kind"], "state": row["state"], "figure": row["figure"],
            "limit": row["limit"], "still_beyond_limit": beyond,
            "note": ("still beyond its limit: resuming trips it again at once" if beyond
                     else row.get("unknown") or "within its limit: resuming re-arms it"),
        })
    return found


def panel() -> dict[str, Any]:
    """The Risk page's Breakers panel (JSON-ready)."""
    from . import state

    snap = state.snapshot()
    return {"rows": snap.rows, "evaluated_at": snap.evaluated_at, "fresh": snap.fresh, "note": snap.note,
            "leader": snap.leader}


def connect() -> None:
    """Register the panel, the open items source, the /metrics readings and the breaker
    process (idempotent). Validates the `breakers:` section first: a bad entry stops
    start-up here."""
    from killswitch.ops import hooks as ops_hooks
    from killswitch.runtime import processes
    from killswitch.selectors import open_items
    from killswitch.web import panels

    from . import state
    from .config import configured

    configured()
    panels.register(panels.Panel("breakers", "Breakers", panel))
    open_items.register("breakers", open_breakers)
    ops_hooks.register_breakers("breakers", state.metric_readings)
    processes.register(processes.Process(
        "breakers", (processes.PYTHON, "manage.py", "killswitch", "breakers", "run"),
        "automatic breakers and dead-man's switches: trip the switch on configured limits",
        when=lambda: bool(configured())))
