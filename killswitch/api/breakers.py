"""The automatic breakers over HTTP.

    GET  /api/risk/breakers            every breaker: figure now, limit, state, last trip (viewer)
    POST /api/risk/deadman/<name>      renew the dead-man's switch <name> (trader)

Views translate HTTP into one call (killswitch.breakers.state.snapshot, deadman.renew_dead_man)
and present the result; refusals are audited there or by api.errors.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from killswitch import services
from killswitch.breakers import deadman, state
from killswitch.models import Source
from killswitch.policy import get_policy, kill_switch_policy
from killswitch.runtime.addresses import client_address
from killswitch.services.authorization import ACTIVATE

from .base import CanViewKillSwitch, KillSwitchView
from .errors import READ_ERRORS, WRITE_ERRORS, zulu
from .serializers import ErrorSerializer


class LatchSerializer(serializers.Serializer):
    at = serializers.FloatField(help_text="When the breach was observed (unix seconds).")
    outcome = serializers.CharField(help_text="activated, or why the level was left as it was.")
    seq = serializers.IntegerField(allow_null=True, help_text="The activation's audit event.")
    figure = serializers.CharField()
    limit = serializers.CharField()
    level = serializers.CharField()
    reason = serializers.CharField()
    confirmed = serializers.BooleanField(help_text="The level is in force (false while its audit is pending).")


class TripSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    at = serializers.CharField()
    level = serializers.CharField()
    scope = serializers.CharField()
    reason = serializers.CharField()


class BreakerSerializer(serializers.Serializer):
    name = serializers.CharField()
    kind = serializers.CharField()
    scope = serializers.CharField()
    level = serializers.CharField(help_text="The level a trip raises the scope to.")
    state = serializers.ChoiceField(choices=state.STATES)
    figure = serializers.CharField(allow_blank=True, help_text="The figure now, with its window, for people.")
    value = serializers.FloatField(allow_null=True, help_text="The figure in the limit's unit.")
    display = serializers.FloatField(allow_null=True, help_text="The figure as people read it (a P&L keeps its sign).")
    limit = serializers.CharField(allow_blank=True)
    limit_value = serializers.FloatField()
    warn_at = serializers.FloatField(allow_null=True)
    on_unknown = serializers.ChoiceField(choices=["trip", "warn"])
    unknown = serializers.CharField(allow_blank=True, help_text="Why the figure is unknown, if it is.")
    evaluated_at = serializers.CharField(allow_null=True)
    latch = LatchSerializer(allow_null=True, help_text="The trip in force until a person resumes the scope.")
    last_trip = TripSerializer(allow_null=True, help_text="The breaker's latest activation in the audit log.")


class BreakersPageSerializer(serializers.Serializer):
    evaluated_at = serializers.CharField(allow_null=True, help_text="The breaker process's last round.")
    fresh = serializers.BooleanField(help_text="False: no breaker process is evaluating; states read unknown.")
    leader = serializers.CharField(allow_blank=True, help_text="The breaker process that evaluates (host:pid).")
    note = serializers.CharField(allow_blank=True)
    breakers = BreakerSerializer(many=True)


class RenewedSerializer(serializers.Serializer):
    name = serializers.CharField()
    renewed_at = serializers.CharField()
    expires_at = serializers.CharField(help_text="It trips if not renewed before this.")
    timeout_seconds = serializers.FloatField()
    renewed_by = serializers.CharField()
    scope = serializers.CharField()
    level = serializers.CharField()


class BreakersApi(KillSwitchView):
    """Every automatic breaker with its figure now, its limit, its state and last trip."""

    permission_classes = [CanViewKillSwitch]

    def audit_subject(self, request) -> dict[str, Any]:
        return {"attempted": "read breakers", "scope": "global"}

    @extend_schema(operation_id="breakers", summary="The automatic breakers: figure now, limit, state, last trip",
                   responses={200: BreakersPageSerializer, **READ_ERRORS})
    def get(self, request) -> Response:
        snap = state.snapshot()
        at = zulu(datetime.fromtimestamp(snap.evaluated_at, UTC)) if snap.evaluated_at else None
        rows = [{**row, "latch": row.get("latch"), "last_trip": row.get("last_trip")} for row in snap.rows]
        return Response(BreakersPageSerializer({"evaluated_at": at, "fresh": snap.fresh, "leader": snap.leader,
                                                "note": snap.note, "breakers": rows}).data)


class DeadManApi(KillSwitchView):
    """Renew a dead-man's switch (a `dead_man` breaker): it trips when not renewed in time."""

    permission_classes = [IsAuthenticated]

    def needed_permission(self, request) -> str:
        return ACTIVATE

    def audit_subject(self, request) -> dict[str, Any]:
        name = str(self.kwargs.get("name", ""))[:64]
        breaker = next((b for b in _dead_men() if b.name == name), None)
        return {"attempted": f"renew dead-man's switch {name}", "scope": breaker.scope_label if breaker else "global"}

    @extend_schema(
        operation_id="deadman_renew", request=None,
        summary="Renew a dead-man's switch (like BitMEX cancelAllAfter, for any broker)",
        description="Arms the `dead_man` breaker `name` on its first call; it trips (its level on its scope) when "
                    "no renewal, from here or from a trading process's `switch.heartbeat(name)`, came within "
                    "its `timeout_seconds`. Trader role.",
        responses={200: RenewedSerializer, **WRITE_ERRORS,
                   404: OpenApiResponse(ErrorSerializer, description="No dead_man breaker of that name.")})
    def post(self, request, name: str) -> Response:
        if not kill_switch_policy().http_enabled:
            raise services.ControlDisabled(
                "Changes over HTTP are disabled: kill_switch.http_enabled is false in "
                f"{get_policy().path or 'config/risk_limits.yaml'}; trading processes renew with "
                "switch.heartbeat(name).")
        renewed = deadman.renew_dead_man(name=name, actor=request.user, source=Source.API,
                                         client_address=client_address(request))
        return Response(RenewedSerializer({
            "name": renewed.name, "renewed_at": zulu(renewed.renewed_at), "expires_at": zulu(renewed.expires_at),
            "timeout_seconds": renewed.timeout_seconds, "renewed_by": renewed.by, "scope": renewed.scope,
            "level": renewed.level}).data)


def _dead_men() -> list:
    from killswitch.breakers import config

    return [b for b in config.configured() if b.kind == config.DEAD_MAN]
