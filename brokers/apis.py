"""Broker runs over HTTP (read-only).

    GET /api/risk/runs          runs newest first, each with its per-order actions
                                (?account=, ?state=, ?before=<id>, ?limit=)
    GET /api/risk/runs/<id>     one run with its actions

Needs the viewer role (CanViewKillSwitch and brokers.view_brokerrun). Errors leave
the project's single exception handler in its one shape.
"""

from __future__ import annotations

from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from killswitch.api.base import CanViewKillSwitch, KillSwitchView
from killswitch.api.errors import READ_ERRORS
from killswitch.api.serializers import ErrorSerializer

from . import selectors
from .models import ActionKind, ActionOutcome, RunKind, RunState


class CanViewBrokerRuns(BasePermission):
    message = "The viewer role (brokers.view_brokerrun) is required to read broker runs."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm("brokers.view_brokerrun"))


class ActionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    action = serializers.ChoiceField(choices=ActionKind.choices)
    account = serializers.CharField()
    broker_order_id = serializers.CharField()
    client_ref = serializers.CharField()
    symbol = serializers.CharField()
    instrument = serializers.DictField(child=serializers.CharField(), help_text=(
        "The whole instrument: kind (IB secType / paper asset class), symbol, broker_key (IB conId), "
        "exchange, primary_exchange, currency, multiplier, expiry, strike, right, local_symbol, "
        "trading_class (set fields only; empty on rows older than instruments)"))
    instrument_label = serializers.CharField()
    position_key = serializers.CharField(help_text="What a close acts on: the instrument key (and ticket)")
    strategy = serializers.CharField()
    side = serializers.CharField()
    quantity = serializers.CharField(help_text="Decimal as a string")
    filled_quantity = serializers.CharField(help_text="Decimal as a string")
    outcome = serializers.ChoiceField(choices=ActionOutcome.choices)
    detail = serializers.CharField()
    attempts = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class RunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.ChoiceField(choices=RunKind.choices)
    event_seq = serializers.IntegerField(allow_null=True, help_text="The kill switch event that started it")
    scope = serializers.CharField()
    level = serializers.CharField()
    account = serializers.CharField()
    broker = serializers.CharField()
    state = serializers.ChoiceField(choices=RunState.choices)
    attempts = serializers.IntegerField()
    notes = serializers.CharField()
    error = serializers.CharField()
    alert_event_seq = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    actions = ActionSerializer(many=True)


class RunListApi(KillSwitchView):
    permission_classes = [CanViewKillSwitch, CanViewBrokerRuns]
    renderer_classes = [JSONRenderer]

    def audit_subject(self, request) -> dict:
        return {"attempted": "read broker runs", "scope": "global"}

    class FilterSerializer(serializers.Serializer):
        account = serializers.CharField(required=False, max_length=64)
        state = serializers.ChoiceField(choices=RunState.choices, required=False)
        before = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
        limit = serializers.IntegerField(required=False, min_value=1, max_value=selectors.MAX_PAGE, default=50)

    class RunPageSerializer(serializers.Serializer):
        runs = RunSerializer(many=True)
        next_before = serializers.IntegerField(allow_null=True)

    @extend_schema(operation_id="broker_runs", summary="Broker runs, newest first, with their actions",
                   parameters=[FilterSerializer], responses={200: RunPageSerializer, **READ_ERRORS})
    def get(self, request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        runs = selectors.runs(limit=f["limit"], before_id=f.get("before"), account=f.get("account"),
                              state=f.get("state"))
        next_before = runs[-1].pk if len(runs) == f["limit"] else None
        return Response(self.RunPageSerializer(
            {"runs": [selectors.run_as_dict(r) for r in runs], "next_before": next_before}).data)


class RunDetailApi(KillSwitchView):
    permission_classes = [CanViewKillSwitch, CanViewBrokerRuns]
    renderer_classes = [JSONRenderer]

    def audit_subject(self, request) -> dict:
        return {"attempted": "read a broker run", "scope": "global"}

    @extend_schema(operation_id="broker_run", summary="One broker run with its actions",
                   responses={200: RunSerializer, **READ_ERRORS,
                              404: OpenApiResponse(ErrorSerializer, description="No run with that id.")})
    def get(self, request, run_id: int) -> Response:
        run = selectors.run(run_id)
        if run is None:
            raise Http404
        return Response(RunSerializer(selectors.run_as_dict(run)).data)
