from __future__ import annotations

import getpass
import json
from typing import Any

from django.contrib.auth import get_user_model

from ..services import Actor


def cli_actor(username: str | None) -> Actor:
    """`--user NAME` acts as that Django user (with its permissions); otherwise the
    operator's OS account, as a trusted system actor (`cli:<login>`)."""
    if username:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise SystemExit(f"No user named {username!r}.")
        return Actor.of(user)
    try:
        login = getpass.getuser()
    except Exception:  # no login name in some containers
        login = "unknown"
    return Actor.system(f"cli:{login}")


def emit_json(out: Any, payload: Any) -> None:
    out.write(json.dumps(payload, indent=2, default=str) + "\n")


def resumed_json(result: Any) -> dict[str, Any]:
    """A resume's answer as the API gives it: kill_switch_deactivated, or resume_requested
    when a second risk officer must approve."""
    from ..services import ResumeRequested

    if isinstance(result, ResumeRequested):
        return {"status": "resume_requested", "request": result.request_id, "scope": result.scope,
                "level": result.level, "requested_by": result.requested_by, "requested_at": result.requested_at,
                "expires_at": result.expires_at, "seq": result.seq, "message": result.message}
    return {"status": "kill_switch_deactivated" if result.changed else "already_running", "scope": result.scope,
            "deactivated_at": result.at, "version": result.version, "seq": result.seq, "message": result.message}
