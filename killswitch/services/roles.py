"""The roles and the rows every installation needs, created idempotently.

Run by migration 0002 and again after every `migrate`/`flush` (post_migrate), so a
database is never without its roles, its global scope or its audit chain head.
"""

from __future__ import annotations

from typing import Any

ROLES: dict[str, list[str]] = {
    "viewer": ["view_killswitch", "view_scope", "view_event"],
    "trader": ["view_killswitch", "view_scope", "view_event", "activate_killswitch"],
    "risk_officer": ["view_killswitch", "view_scope", "view_event", "activate_killswitch",
                     "deactivate_killswitch"],
}


def ensure_baseline(apps: Any) -> None:
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*Permission.objects.filter(content_type__app_label="killswitch",
                                                         codename__in=codenames))
    apps.get_model("killswitch", "Scope").objects.get_or_create(kind="global", key="")
    apps.get_model("killswitch", "AuditHead").objects.get_or_create(pk=1)


def ensure_baseline_after_migrate(sender: Any, apps: Any = None, using: str = "default", **kwargs: Any) -> None:
    from django.apps import apps as global_apps

    ensure_baseline(apps or global_apps)
