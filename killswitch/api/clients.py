"""GET /api/risk/clients: the trading processes running the client library.

For each process: who it is (name, host, pid, account, strategy), whether it is
connected, the level it sees (and why, when it fails closed), the state version it
has applied, its recent acknowledgements and whether it is late (a change it has
not acknowledged is older than kill_switch.ack_timeout_seconds). `changes` lists
recent changes with the time from the change to the last acknowledgement.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from killswitch import selectors
from killswitch.policy import kill_switch_policy

from .base import CanViewKillSwitch, KillSwitchView
from .errors import READ_ERRORS


class ClientsApi(KillSwitchView):
    """Connected trading processes, the level each sees, and their acknowledgements."""

    permission_classes = [CanViewKillSwitch]

    class FilterSerializer(serializers.Serializer):
        all = serializers.BooleanField(required=False, default=False,
                                       help_text="Include disconnected processes.")

    class AckSerializer(serializers.Serializer):
        version = serializers.IntegerField()
        level = serializers.CharField()
        acked_at = serializers.DateTimeField()
        seconds = serializers.FloatField(allow_null=True,
                                         help_text="From the change to this acknowledgement.")

    class ClientSerializer(serializers.Serializer):
        client_id = serializers.CharField()
        name = serializers.CharField()
        host = serializers.CharField()
        pid = serializers.IntegerField()
        account = serializers.CharField(allow_blank=True)
        strategy = serializers.CharField(allow_blank=True)
        connected = serializers.BooleanField()
        registered_at = serializers.DateTimeField()
        last_seen_at = serializers.DateTimeField()
        disconnected_at = serializers.DateTimeField(allow_null=True)
        applied_version = serializers.IntegerField(allow_null=True)
        acked_at = serializers.DateTimeField(allow_null=True)
        level = serializers.CharField(allow_blank=True, help_text="The level the process sees.")
        scope = serializers.CharField(allow_blank=True, help_text="The scope that set it.")
        cause = serializers.CharField(allow_blank=True,
                                      help_text="Why the process fails closed (reads halt), if it does.")
        pending_since = serializers.DateTimeField(allow_null=True)
        late = serializers.BooleanField()
        acks = serializers.ListField(child=serializers.DictField())

    class ChangeSerializer(serializers.Serializer):
        seq = serializers.IntegerField()
        version = serializers.IntegerField()
        scope = serializers.CharField()
        previous_level = serializers.CharField()
        new_level = serializers.CharField()
        actor = serializers.CharField()
        created_at = serializers.DateTimeField()
        expected_clients = serializers.IntegerField()
        acked_clients = serializers.IntegerField()
        last_ack_at = serializers.DateTimeField(allow_null=True)
        seconds_to_last_ack = serializers.FloatField(allow_null=True)
        complete = serializers.BooleanField()
        late_clients = serializers.ListField(child=serializers.CharField())

    class ClientsPageSerializer(serializers.Serializer):
        version = serializers.IntegerField(help_text="The current state version.")
        ack_timeout_seconds = serializers.FloatField()
        clients = serializers.ListField(child=serializers.DictField())
        changes = serializers.ListField(child=serializers.DictField())

    def audit_subject(self, request) -> dict[str, Any]:
        return {"attempted": "read clients", "scope": "global"}

    @extend_schema(
        operation_id="kill_switch_clients",
        summary="Trading processes, the level each sees, and how fast each acknowledged each change",
        parameters=[OpenApiParameter("all", bool, description="Include disconnected processes.")],
        responses={200: ClientsPageSerializer, **READ_ERRORS},
    )
    def get(self, request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        return Response(clients_page(include_disconnected=filters.validated_data["all"]))


def clients_page(*, include_disconnected: bool = False) -> dict[str, Any]:
    """The answer of GET /api/risk/clients (also `manage.py killswitch clients --json`):
    every trading process with its acknowledgements, and the recent changes' propagation.
    Times are ISO 8601 UTC ending in Z."""
    clients = []
    for status in selectors.client_statuses(include_disconnected=include_disconnected):
        data = ClientsApi.ClientSerializer(asdict(status)).data
        data["acks"] = ClientsApi.AckSerializer(status.acks, many=True).data
        clients.append(data)
    return {
        "version": selectors.state_version(),
        "ack_timeout_seconds": kill_switch_policy().ack_timeout_seconds,
        "clients": clients,
        "changes": ClientsApi.ChangeSerializer(selectors.recent_propagation(), many=True).data,
    }
