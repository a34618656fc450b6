"""The kill switch REST API, with the seed's request and response shapes.

    POST /api/risk/kill-switch           {"action": "activate", "reason": "Market crash"}
                                         {"action": "deactivate"}
    GET  /api/risk/kill-switch           every scope's level, reason, since, cooldown, version

Views translate HTTP into one service call and present the result; every rule is in
`killswitch.services`. Refusals decided by the services are audited there; the others
(unauthenticated, forbidden reads, disabled, malformed input) by api.errors.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import RequestDataTooBig
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from killswitch import domain as L
from killswitch import selectors, services
from killswitch.models import Source
from killswitch.policy import get_policy, kill_switch_policy
from killswitch.runtime.addresses import client_address
from killswitch.services.authorization import permission_for_action
from riskcontrol.performance import countdowns, replay

from . import shapes
from .base import CanViewKillSwitch, KillSwitchView
from .errors import READ_ERRORS, WRITE_ERRORS, zulu
from .serializers import (
    SCOPE_FORMS,
    ChangeResultSerializer,
    StatusSerializer,
    StrictCharField,
    StrictChoiceField,
    audit_scope,
    validated_scope,
)


class KillSwitchApi(KillSwitchView):
    """POST activates or deactivates; GET shows every scope."""

    class InputSerializer(serializers.Serializer):
        action = StrictChoiceField(
            choices=["activate", "deactivate", "approve"],
            error_messages={"invalid_choice": '"{input}" is not a valid action; expected "activate", "deactivate" '
                                              'or "approve".'},
        )
        request = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1,
                                           help_text="approve only: the resume request to approve "
                                                     "(kill_switch.resume_approvals: 2).")
        reason = StrictCharField(required=False, allow_blank=True, trim_whitespace=False,
                                 help_text="Why. Required to activate; at most kill_switch.max_reason_length "
                                           "characters (500 by default).")
        level = StrictChoiceField(
            choices=list(L.ACTIVE_LEVELS), required=False,
            error_messages={"invalid_choice": '"{input}" is not a valid level; expected one of pause, halt, kill.'},
            help_text="activate only: pause, halt (default) or kill.",
        )
        scope = StrictCharField(required=False, default="global", max_length=200,
                                help_text=f"{SCOPE_FORMS}; global by default.")

        def to_internal_value(self, data: Any) -> dict[str, Any]:
            if isinstance(data, dict):
                unknown = sorted(set(data) - set(self.fields))
                if unknown:
                    raise serializers.ValidationError({unknown[0]: [
                        f"Unknown field {unknown[0]!r}; allowed fields are action, reason, level, scope, request."]})
            return super().to_internal_value(data)

        def validate_scope(self, value: str) -> str:
            return validated_scope(value)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if attrs.get("action") != "activate" and "level" in attrs:
                raise serializers.ValidationError(
                    {"level": ["level applies only to action activate; deactivate resumes (running)."]})
            if attrs.get("action") == "approve" and "request" not in attrs:
                raise serializers.ValidationError({"request": ["approve needs the resume request's number."]})
            if attrs.get("action") != "approve" and "request" in attrs:
                raise serializers.ValidationError({"request": ["request applies only to action approve."]})
            return attrs

    def get_permissions(self) -> list[Any]:
        return [CanViewKillSwitch()] if self.request.method in ("GET", "HEAD") else [IsAuthenticated()]

    def needed_permission(self, request) -> str:
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return super().needed_permission(request)
        try:
            data = request.data
        except (exceptions.APIException, RequestDataTooBig) as exc:
            # DRF answers an unparseable body with empty data from now on; keep the
            # error so that post() reports it instead of "action is required".
            request.body_error = exc
            data = None
        return permission_for_action(data.get("action") if isinstance(data, dict) else None)

    def audit_subject(self, request) -> dict[str, Any]:
        if request.method != "POST":
            return {"attempted": "read status", "scope": "global"}
        try:
            data = request.data
        except Exception:  # unparseable, too large, too deep: recorded with what is known
            data = None
        data = data if isinstance(data, dict) else {}

        def text(key: str) -> str:
            value = data.get(key)
            return value if isinstance(value, str) else ""

        action = text("action")
        return {
            "attempted": action if action in ("activate", "deactivate", "approve") else "change",
            "scope": audit_scope(text("scope") or "global"),
            "reason": text("reason"),
            "requested_level": (text("level") or kill_switch_policy().default_level) if action == "activate"
            else (L.RUNNING if action in ("deactivate", "approve") else ""),
        }

    @extend_schema(
        operation_id="kill_switch_status",
        summary="Every scope's level, reason, since, cooldown and version",
        responses={200: StatusSerializer, **READ_ERRORS},
    )
    def get(self, request) -> Response:
        body, fresh, cooldowns = shapes.status_freshness_and_cooldowns()
        response = Response(body)
        if cooldowns:  # read and removed by the replay (it redraws the countdowns itself)
            response[countdowns.COOLDOWNS_HEADER] = countdowns.cooldowns_header_value(cooldowns)
        # For the replay of this read on the server's event loop (riskcontrol/performance/replay.py).
        response[replay.VERSION_HEADER] = str(body["version"])
        response[replay.FRESH_HEADER] = replay.fresh_header_value(fresh)
        return response

    @extend_schema(
        operation_id="kill_switch_change",
        summary="Activate (pause, halt, kill) or deactivate the kill switch",
        description="The seed's requests: `{\"action\": \"activate\", \"reason\": \"Market crash\"}` "
                    "(level halt, scope global by default) and `{\"action\": \"deactivate\"}`. "
                    "Activating a scope already at that level answers 200 with `changed: false`. "
                    "Lowering a level or deactivating needs the risk_officer role and an expired cooldown.",
        request=InputSerializer,
        responses={200: ChangeResultSerializer, **WRITE_ERRORS},
        examples=[
            OpenApiExample("activate", value={"action": "activate", "reason": "Market crash"}, request_only=True),
            OpenApiExample("activate kill on one account",
                           value={"action": "activate", "reason": "Runaway orders", "level": "kill",
                                  "scope": "account:DU123"}, request_only=True),
            OpenApiExample("deactivate", value={"action": "deactivate"}, request_only=True),
        ],
    )
    def post(self, request) -> Response:
        policy = kill_switch_policy()
        if not policy.http_enabled:
            raise services.ControlDisabled(
                "Changes over HTTP are disabled: kill_switch.http_enabled is false in "
                f"{get_policy().path or 'config/risk_limits.yaml'}. Reads stay available; "
                "use the dashboard or `manage.py killswitch activate|deactivate`."
            )
        if getattr(request, "body_error", None) is not None:
            raise request.body_error
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        address = client_address(request)
        if data["action"] == "activate":
            result = services.activate(scope=data["scope"], level=data.get("level"),
                                       reason=data.get("reason", ""), actor=request.user,
                                       source=Source.API, client_address=address)
            # 202: applied in Redis (every process obeys), the audit event follows when the
            # database answers again.
            return Response(shapes.activated(result), status=202 if result.pending_audit else 200)
        result = services.deactivate(scope=data["scope"], actor=request.user, source=Source.API,
                                     reason=data.get("reason", ""), client_address=address,
                                     request=data.get("request"))
        # 202 for a resume request: a second risk officer must approve (resume_approvals: 2).
        return Response(shapes.resumed(result),
                        status=202 if isinstance(result, services.ResumeRequested) else 200)


class ResumeRequestsApi(KillSwitchView):
    """GET /api/risk/resume-requests: resume requests waiting for a second risk officer."""

    permission_classes = [CanViewKillSwitch]

    class RequestSerializer(serializers.Serializer):
        request = serializers.IntegerField(help_text="Approve with {\"action\": \"approve\", \"request\": N}.")
        scope = serializers.CharField()
        level = serializers.CharField(help_text="The level the scope was at when the resume was asked.")
        requested_by = serializers.CharField()
        requested_at = serializers.CharField(help_text="UTC, e.g. 2026-03-12T15:34:22Z.")
        expires_at = serializers.CharField(help_text="UTC; after it the request cannot be approved.")
        reason = serializers.CharField(allow_blank=True)
        seq = serializers.IntegerField(help_text="The request's audit event.")
        open = serializers.DictField(help_text="What is still open in the scope.")

    class PageSerializer(serializers.Serializer):
        resume_approvals = serializers.IntegerField(help_text="kill_switch.resume_approvals: 1 or 2.")
        requests = serializers.ListField(child=serializers.DictField())

    def audit_subject(self, request) -> dict[str, Any]:
        return {"attempted": "read resume requests", "scope": "global"}

    @extend_schema(operation_id="kill_switch_resume_requests",
                   summary="Resume requests waiting for a second risk officer (resume_approvals: 2)",
                   responses={200: PageSerializer, **READ_ERRORS})
    def get(self, request) -> Response:
        rows = services.open_requests()
        for row in rows:
            row["requested_at"], row["expires_at"] = zulu(row["requested_at"]), zulu(row["expires_at"])
            row["open"] = selectors.open_in_scope(L.ScopeRef.parse(row["scope"]))
        return Response({"resume_approvals": kill_switch_policy().resume_approvals, "requests": rows})
