"""What every kill switch API view shares: JSON only, the role check through
services.authorization, and failed-attempt throttling before any service runs (never
for a permitted request)."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from killswitch.runtime.addresses import client_address
from killswitch.services.authorization import VIEW, missing_role_message, user_may

from .limits import check_failures
from .parsers import ShallowJSONParser


class CanViewKillSwitch(BasePermission):
    """The viewer role (view permission); the services check again on every write."""

    message = "The viewer role (view permission) is required to read the kill switch."

    def has_permission(self, request, view) -> bool:
        return user_may(request.user, VIEW)


class KillSwitchView(APIView):
    """Base of the kill switch views. `needed_permission` names what the request asks
    (view, activate, deactivate); `audit_subject` what a refusal is recorded as."""

    parser_classes = [ShallowJSONParser]
    renderer_classes = [JSONRenderer]

    def needed_permission(self, request) -> str:
        return VIEW

    def audit_subject(self, request) -> dict[str, Any]:
        raise NotImplementedError

    def initial(self, request, *args: Any, **kwargs: Any) -> None:
        try:
            permitted = user_may(request.user, self.needed_permission(request))  # authenticates
        except (exceptions.AuthenticationFailed, exceptions.PermissionDenied):
            throttled = check_failures(client_address(request))
            if throttled:
                raise throttled from None
            raise
        if not permitted:
            throttled = check_failures(client_address(request))
            if throttled:
                raise throttled
        super().initial(request, *args, **kwargs)


__all__ = ["CanViewKillSwitch", "KillSwitchView", "missing_role_message"]
