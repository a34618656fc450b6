"""Live pushes to the Risk page: every committed event, broker run progress and
client acknowledgement goes to one channel-layer group that the dashboard
consumer (killswitch.web.consumers.RiskConsumer) forwards to each open page.

Guarantees:
- `push()` never raises: a dead channel layer must not break the switch, the
  broker run or the acknowledgement that called it. Failures are logged.
- Events are pushed from `event_committed`, i.e. after their transaction commits,
  in the order this process queued them (background.py); each
  carries its `seq`, so a page can drop duplicates and notice a gap (it then
  reloads the state).

What is pushed, by kind (each message `{"kind", "payload", "sent_at"}`):
- `event`: every committed audit event (`event_committed`), with every scope's new
  state when a level changed;
- `ack`: the trading processes as the page shows them (`client_rows()`), whenever the
  acknowledgement ingestion committed a change (`clients_changed`: a process joined,
  left, acknowledged a version or changed what it reports), with who joined and left;
- `run`: one broker run with each order's outcome, pushed by the app that owns the
  runs (brokers/live.py) as the run progresses;
- `breaker`: the breaker loop's readings (`{"breakers": [...]}`), when a state changes
  and at most every second while figures move; the page redraws its Breakers panel;
- `ping`: the reconciler's heartbeat (`heartbeat_sent`), the page's proof that the
  service is alive: no ping for a few seconds and the page says it may be stale.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from channels.layers import get_channel_layer

from killswitch import domain as L
from killswitch.runtime import background

logger = logging.getLogger("killswitch")

# Channel-layer group names allow letters, digits, "-", "_" and "." only.
GROUP = "killswitch.events"
KINDS = ("event", "run", "ack", "ping", "breaker")


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def push(kind: str, payload: dict[str, Any]) -> bool:
    """Send `payload` to every open Risk page as `{"kind": kind, "payload": ..., "sent_at": ...}`.

    `kind` is one of event, run, ack, ping, breaker (the breakers' readings). Datetimes are sent as ISO strings.
    Queued and sent in order from the after-commit lane (background.py); returns False when
    there is no channel layer or the push could not be queued; a failed send is logged
    there. Raises only ValueError for an unknown kind (a programming error).
    """
    return _queue(kind, lambda: payload)


def _queue(kind: str, build: Any) -> bool:
    """Queue the push of `build()`'s payload on the after-commit lane; the payload is
    built there too (it must not read the database)."""
    if kind not in KINDS:
        raise ValueError(f"unknown live push kind {kind!r}; expected one of {', '.join(KINDS)}")
    layer = get_channel_layer()
    if layer is None:
        return False

    async def send() -> None:
        message = {
            "type": "killswitch.push",  # -> RiskConsumer.killswitch_push
            "kind": kind,
            "payload": _jsonable(build()),
            "sent_at": time.time(),
        }
        await layer.group_send(GROUP, message)

    try:
        # Sent from the after-commit lane: the committing request does not wait for the
        # channel layer, nor borrow the server's busy event loop (background.py).
        background.live.submit(send)
    except Exception:  # the page re-syncs on reconnect; the switch must go on
        logger.warning("live push of %s could not be queued", kind, exc_info=True)
        return False
    return True


def scope_rows() -> list[dict[str, Any]]:
    """Every scope as the Risk page shows it (JSON-ready)."""
    from killswitch.selectors import scope_states

    return [
        {
            "scope": s.scope, "kind": s.kind, "key": s.key, "level": s.level, "reason": s.reason,
            "actor": s.actor, "source": s.source, "since": s.since.isoformat() if s.since else None,
            "cooldown_until": s.cooldown_until.isoformat() if s.cooldown_until else None,
            "cooldown_remaining_seconds": round(s.cooldown_remaining_seconds, 1),
            "version": s.version,
        }
        for s in scope_states()
    ]


def event_row(event: Any) -> dict[str, Any]:
    """One event as the Risk page's history shows it (JSON-ready)."""
    return {
        "seq": event.seq,
        "timestamp": event.created_at.isoformat(),
        "action": event.action,
        "outcome": event.outcome,
        "scope": event.scope_label if event.scope_kind else (event.scope_key or "?"),
        "previous_level": event.previous_level,
        "new_level": event.new_level,
        "requested_level": event.requested_level,
        "actor": event.actor,
        "source": event.source,
        "reason": event.reason,
        "detail": event.detail,
        "version": event.version,
    }


def snapshot_rows(snapshot: Any) -> list[dict[str, Any]] | None:
    """scope_rows() from a distribution.publish.Snapshot taken after the commit (the one just
    published to Redis), so a transition reads its scopes once, not twice. None when
    the snapshot lacks the global row (scope_rows() then fills it in)."""
    from killswitch import domain as L
    from killswitch.runtime import clock

    if snapshot is None or L.GLOBAL not in snapshot.details:
        return None
    now = clock.now().timestamp()
    rows = []
    for d in sorted(snapshot.details.values(), key=lambda d: (L.SCOPE_KINDS.index(d["kind"]), d["key"])):
        until = datetime.fromisoformat(d["cooldown_until"]).timestamp() if d["cooldown_until"] else None
        rows.append({**d, "cooldown_remaining_seconds": round(max(0.0, until - now), 1) if until else 0.0})
    return rows


def on_event_committed(sender: Any, event: Any, changed: bool = False, snapshot: Any = None,
                       **kwargs: Any) -> None:
    """Receiver for killswitch.runtime.hooks.event_committed: push the event and, when a level
    changed, every scope's new state, so the page redraws without a round trip."""
    payload: dict[str, Any] = {"event": event_row(event), "changed": bool(changed)}
    if changed and (snapshot is None or L.GLOBAL not in snapshot.details):
        try:
            payload["scopes"] = scope_rows()  # read here: the lane must not use the database
        except Exception:  # the page falls back to re-reading the state
            logger.warning("could not read scopes for the live push", exc_info=True)
    elif changed:
        # The rows come from the snapshot just published, built on the lane (not in the
        # committing request).
        def build() -> dict[str, Any]:
            return {**payload, "scopes": snapshot_rows(snapshot)}

        _queue("event", build)
        return
    push("event", payload)


def client_rows() -> list[dict[str, Any]] | None:
    """Connected trading processes as the Risk page shows them, with the version each
    acknowledged (None when they cannot be read). Staleness is judged now, against
    kill_switch.client_stale_after_seconds."""
    from killswitch.models import TradingClient
    from killswitch.policy import kill_switch_policy
    from killswitch.runtime import clock

    try:
        rows = list(TradingClient.objects.filter(disconnected_at__isnull=True).order_by("name", "client_id")[:200])
    except Exception:  # table not migrated yet
        logger.warning("trading clients could not be read", exc_info=True)
        return None
    stale_after = kill_switch_policy().client_stale_after_seconds
    now = clock.now()
    return [{
        "client_id": c.client_id, "name": c.name, "host": c.host, "pid": c.pid, "account": c.account,
        "strategy": c.strategy, "applied_version": c.applied_version,
        "acked_at": c.acked_at.isoformat() if c.acked_at else None,
        "level_seen": c.level_seen, "scope_seen": c.scope_seen, "cause": c.cause,
        "last_seen_at": c.last_seen_at.isoformat() if c.last_seen_at else None,
        "stale": bool(c.last_seen_at and (now - c.last_seen_at).total_seconds() > stale_after),
    } for c in rows]


def on_clients_changed(sender: Any, joined: list[str] | None = None, left: list[str] | None = None,
                       acks: int = 0, **kwargs: Any) -> None:
    """Receiver for killswitch.runtime.hooks.clients_changed: the processes, as the page
    shows them, to every open page."""
    from killswitch.selectors import state_version

    rows = client_rows()
    if rows is None:
        return
    push("ack", {"clients": rows, "version": state_version(), "joined": list(joined or []),
                 "left": list(left or []), "acks": acks})


def on_heartbeat_sent(sender: Any, version: int = 0, **kwargs: Any) -> None:
    """Receiver for killswitch.runtime.hooks.heartbeat_sent: a liveness ping to every page."""
    push("ping", {"version": version})


def connect() -> None:
    """Connect the receivers once (idempotent; dispatch_uid guards double imports)."""
    from killswitch.runtime.hooks import clients_changed, event_committed, heartbeat_sent

    event_committed.connect(on_event_committed, dispatch_uid="killswitch.live.push_event")
    heartbeat_sent.connect(on_heartbeat_sent, dispatch_uid="killswitch.live.push_ping")
    clients_changed.connect(on_clients_changed, dispatch_uid="killswitch.live.push_clients")
