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
