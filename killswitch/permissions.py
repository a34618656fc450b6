"""DRF permission classes for the roles (viewer, trader, risk_officer).

These only gate what a view may show; the services check again on every write,
so a rule never depends on a view remembering it.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission


class CanViewKillSwitch(BasePermission):
    message = "The viewer role (view permission) is required to read the kill switch."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("killswitch.view_killswitch"))
