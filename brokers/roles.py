"""Who may read broker runs: viewer, trader and risk officer (view_brokerrun).

Applied by migration 0002 and again after every migrate/flush (post_migrate), so the
grant survives test-database flushes like the kill switch's own roles.
"""

from __future__ import annotations

from typing import Any

GRANTS: dict[str, list[str]] = {
    "viewer": ["view_brokerrun", "view_brokeraction"],
    "trader": ["view_brokerrun", "view_brokeraction"],
    "risk_officer": ["view_brokerrun", "view_brokeraction"],
}


def ensure_grants(apps: Any) -> None:
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in GRANTS.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*Permission.objects.filter(content_type__app_label="brokers",
                                                         codename__in=codenames))


def ensure_grants_after_migrate(sender: Any, apps: Any = None, **kwargs: Any) -> None:
    from django.apps import apps as global_apps

    ensure_grants(apps or global_apps)
