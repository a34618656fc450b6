"""GET /api/risk/kill-switch/history: the audit log, newest first, filtered, with
keyset pagination (every page costs the same however long the log is)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from killswitch import domain as L
from killswitch import selectors
from killswitch.models import Action, Source

from . import shapes
from .base import CanViewKillSwitch, KillSwitchView
from .errors import READ_ERRORS
from .serializers import (
    SCOPE_FORMS,
    HistoryPageSerializer,
    StrictCharField,
    plain_text,
    validated_scope,
)

MAX_SEQ = 2**63 - 1


class KillSwitchHistoryApi(KillSwitchView):
    """Audit events, newest first; pass `before` (the last `seq` seen) for the next page."""

    permission_classes = [CanViewKillSwitch]

    class FilterSerializer(serializers.Serializer):
        scope = StrictCharField(required=False, max_length=200, help_text=SCOPE_FORMS)
        action = serializers.ChoiceField(choices=Action.values, required=False)
        actor = StrictCharField(required=False, max_length=150)
        source = serializers.ChoiceField(choices=Source.values, required=False)
        since = serializers.DateTimeField(required=False, help_text="ISO 8601; events at or after.")
        until = serializers.DateTimeField(required=False, help_text="ISO 8601; events before.")
        before = serializers.IntegerField(required=False, min_value=1, max_value=MAX_SEQ,
                                          help_text="Keyset cursor: events with seq below this.")
        limit = serializers.IntegerField(required=False, min_value=1, max_value=selectors.MAX_PAGE,
                                         default=50)

        def validate_scope(self, value: str) -> str:
            return validated_scope(value)

        def validate_actor(self, value: str) -> str:
            return plain_text(value, "actor")

    def audit_subject(self, request) -> dict[str, Any]:
        return {"attempted": "read history", "scope": "global"}

    @extend_schema(
        operation_id="kill_switch_history",
        summary="The audit log, newest first, with filters and keyset pagination",
        parameters=[FilterSerializer],
        responses={200: HistoryPageSerializer, **READ_ERRORS},
    )
    def get(self, request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        events = selectors.history(
            scope=L.ScopeRef.parse(f["scope"]) if "scope" in f else None, action=f.get("action"),
            actor=f.get("actor"), source=f.get("source"), since=f.get("since"), until=f.get("until"),
            before_seq=f.get("before"), limit=f["limit"],
        )

        def next_url(before: int) -> str:
            params = request.query_params.copy()
            params["before"] = str(before)
            return request.build_absolute_uri(request.path) + "?" + params.urlencode()

        return Response(shapes.history_page(events, limit=f["limit"], next_url=next_url))
