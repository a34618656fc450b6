"""Demo users for `make run`: one per role, staff so they can log into the admin.

Passwords are random on first run and kept in var/demo_credentials.json (mode 0600), so
a fresh clone never runs with a known password and repeated runs print the same ones.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

DEMO_USERS = (
    ("viewer", "viewer", False),
    ("trader", "trader", False),
    ("risk", "risk_officer", False),
    ("admin", None, True),
)


def credentials_file() -> Path:
    return Path(settings.BASE_DIR) / "var" / "demo_credentials.json"


@transaction.atomic
def ensure_demo_users() -> dict[str, dict[str, str]]:
    """Create (or repair) the demo users; return {username: {password, role}}."""
    path = credentials_file()
    path.parent.mkdir(exist_ok=True)
    stored: dict[str, dict[str, str]] = json.loads(path.read_text()) if path.exists() else {}
    User = get_user_model()
    for username, group, is_super in DEMO_USERS:
        entry = stored.get(username) or {"password": secrets.token_urlsafe(12)}
        entry["role"] = group or "superuser"
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User(username=username)
        user.is_staff = True
        user.is_superuser = is_super
        if not user.check_password(entry["password"]):
            user.set_password(entry["password"])
        user.save()
        if group:
            user.groups.set([Group.objects.get(name=group)])
        stored[username] = entry
    path.touch(mode=0o600)
    path.write_text(json.dumps(stored, indent=2))
    return stored
