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

Other parts call `push("run", {...})` (broker run progress), `push("ack", {...})`
(a trading process acknowledged a version) and `push("breaker", {"breakers": [...]})`
(the breaker loop's readings, when a state changes and at most every second while
figures move); the page re-reads the runs and clients it shows when one arrives and
redraws the Breakers panel from the payload.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any

from channels.layers import get_channel_layer

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
    if kind not in KINDS:
        raise ValueError(f"unknown live push kind {kind!r}; expected one of {', '.join(KINDS)}")
    layer = get_channel_layer()
    if layer is None:
        return False
    message = {
        "type": "killswitch.push",  # -> RiskConsumer.killswitch_push
        "kind": kind,
        "payload": _jsonable(payload),
        "sent_at": time.time(),
    }
    try:
        # Sent from the after-commit lane: the committing request does not wait for the
        # channel layer, nor borrow the server's busy event loop (background.py).
        background.live.submit(layer.group_send, GROUP, message)
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
    if changed:
        try:
            payload["scopes"] = snapshot_rows(snapshot) or scope_rows()
        except Exception:  # the page falls back to re-reading the state
            logger.warning("could not read scopes for the live push", exc_info=True)
    push("event", payload)



def on_heartbeat_sent(sender: Any, version: int = 0, **kwargs: Any) -> None:
    """Receiver for killswitch.runtime.hooks.heartbeat_sent: a liveness ping to every page."""
    push("ping", {"version": version})


def connect() -> None:
    """Connect the receivers once (idempotent; dispatch_uid guards double imports)."""
    from killswitch.runtime.hooks import event_committed, heartbeat_sent

    event_committed.connect(on_event_committed, dispatch_uid="killswitch.live.push_event")
    heartbeat_sent.connect(on_heartbeat_sent, dispatch_uid="killswitch.live.push_ping")
