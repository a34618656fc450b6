"""Shapes of the kill switch API: strict input fields and the documented responses.

The response serializers describe what the views return (drf-spectacular builds the
OpenAPI schema from them); the Schemathesis tests check the views against them.
Timestamps are the seed's form, UTC with a Z: 2026-03-12T15:34:22Z.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import PolymorphicProxySerializer
from rest_framework import serializers

from killswitch import domain as L
from killswitch.domain import SCOPE_FORMS

ERROR_CODES = (
    "invalid, malformed_json, not_authenticated, authentication_failed, forbidden, csrf_failed, "
    "disabled, cooldown_active, rate_limited, method_not_allowed, not_acceptable, "
    "unsupported_media_type, payload_too_large, not_found, server_error"
)


class StrictCharField(serializers.CharField):
    """A CharField that refuses numbers, booleans and lists (DRF would turn 1 into "1")."""

    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictChoiceField(serializers.ChoiceField):
    """A ChoiceField that refuses non-strings (DRF compares str(value), so True could pass)."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid_choice", input=type(data).__name__)
        return super().to_internal_value(data)


def validated_scope(value: str) -> str:
    """The canonical scope text, or a ValidationError naming the accepted forms."""
    try:
        return str(L.ScopeRef.parse(value))
    except L.ScopeError as exc:
        hint = "" if "expected" in str(exc) else f"; expected {SCOPE_FORMS}"
        raise serializers.ValidationError(f"Invalid scope {value[:80]!r}: {exc}{hint}.") from None


def audit_scope(raw: str) -> str:
    """The scope to record a refused request under: its canonical form when it parses,
    otherwise the text as typed (at most a scope key's length)."""
    try:
        return str(L.ScopeRef.parse(raw))
    except L.ScopeError:
        return raw[: L.MAX_SCOPE_KEY]


def plain_text(value: str, what: str) -> str:
    if any(not c.isprintable() for c in value):
        raise serializers.ValidationError(f"{what} must not contain control characters.")
    return value


# --- Errors -------------------------------------------------------------------------------


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="What went wrong, for people.")
    code = serializers.CharField(help_text=f"Stable code for programs: {ERROR_CODES}.")
    field = serializers.CharField(allow_null=True, help_text="The request field at fault, or null.")
    errors = serializers.JSONField(required=False, help_text="Every field error (code invalid).")
    retry_after = serializers.IntegerField(required=False, help_text="Seconds to wait (code rate_limited).")


class CooldownErrorSerializer(ErrorSerializer):
    """The seed's {"error": "Kill switch cooldown active. 37 minutes remaining."} and more
    (code cooldown_active); or a resume the resume rules refuse (code resume_refused:
    one's own request, an expired one, runs not clean), in the common shape."""

    message = serializers.CharField(required=False, help_text="cooldown_active: the long form, with its length.")
    scope = serializers.CharField(required=False)
    remaining_seconds = serializers.IntegerField(required=False)
    cooldown_until = serializers.CharField(required=False, help_text="UTC, e.g. 2026-03-12T16:34:22Z.")


# --- Change results -----------------------------------------------------------------------


class ActivatedSerializer(serializers.Serializer):
    """The seed's {"status": "kill_switch_activated", "reason", "activated_at"} and more."""

    status = serializers.ChoiceField(choices=["kill_switch_activated"])
    reason = serializers.CharField(help_text="The reason in force for this scope.")
    activated_at = serializers.CharField(help_text="When the scope reached this level (UTC, Z).")
    level = serializers.ChoiceField(choices=list(L.ACTIVE_LEVELS))
    previous_level = serializers.ChoiceField(choices=list(L.LEVELS))
    scope = serializers.CharField()
    changed = serializers.BooleanField(help_text="false when the scope was already at this level.")
    message = serializers.CharField()
    version = serializers.IntegerField(help_text="The state version of this scope's last change.")
    cooldown_until = serializers.CharField(allow_null=True, help_text="End of the scope's cooldown (UTC, Z).")


class DeactivatedSerializer(serializers.Serializer):
    """The seed's {"status": "kill_switch_deactivated", "deactivated_at"} and more."""

    status = serializers.ChoiceField(choices=["kill_switch_deactivated"])
    deactivated_at = serializers.CharField(help_text="When trading resumed on this scope (UTC, Z).")
    level = serializers.ChoiceField(choices=[L.RUNNING])
    previous_level = serializers.ChoiceField(choices=list(L.LEVELS))
    scope = serializers.CharField()
    changed = serializers.BooleanField(help_text="false when the scope was already running.")
    message = serializers.CharField()
    version = serializers.IntegerField()


ChangeResultSerializer = PolymorphicProxySerializer(
    component_name="KillSwitchResult",
    serializers=[ActivatedSerializer, DeactivatedSerializer],
    resource_type_field_name=None,
)


# --- Reads --------------------------------------------------------------------------------


class ScopeStateSerializer(serializers.Serializer):
    scope = serializers.CharField()
    kind = serializers.ChoiceField(choices=list(L.SCOPE_KINDS))
    key = serializers.CharField(allow_blank=True)
    level = serializers.ChoiceField(choices=list(L.LEVELS))
    reason = serializers.CharField(allow_blank=True)
    actor = serializers.CharField(allow_blank=True)
    source = serializers.CharField(allow_blank=True)
    since = serializers.CharField(help_text="When the scope reached its level (UTC, Z).")
    cooldown_until = serializers.CharField(allow_null=True)
    cooldown_remaining_seconds = serializers.IntegerField()
    version = serializers.IntegerField()


class StatusSerializer(serializers.Serializer):
    level = serializers.ChoiceField(choices=list(L.LEVELS), help_text="The global level.")
    active = serializers.BooleanField(help_text="true when the global level is not running.")
    version = serializers.IntegerField(help_text="The global state version.")
    http_enabled = serializers.BooleanField(help_text="kill_switch.http_enabled: changes over HTTP allowed.")
    cooldown_minutes = serializers.FloatField()
    scopes = ScopeStateSerializer(many=True)


class EventSerializer(serializers.Serializer):
    action = serializers.CharField()
    reason = serializers.CharField(allow_blank=True)
    timestamp = serializers.CharField(help_text="UTC, e.g. 2026-03-12T15:34:22Z.")
    seq = serializers.IntegerField()
    outcome = serializers.CharField()
    scope = serializers.CharField()
    previous_level = serializers.CharField(allow_blank=True)
    new_level = serializers.CharField(allow_blank=True)
    requested_level = serializers.CharField(allow_blank=True)
    actor = serializers.CharField()
    source = serializers.CharField()
    detail = serializers.CharField(allow_blank=True)
    version = serializers.IntegerField()
    client_address = serializers.CharField(allow_null=True)
    hash = serializers.CharField()


class HistoryPageSerializer(serializers.Serializer):
    events = EventSerializer(many=True)
    next = serializers.CharField(allow_null=True, help_text="URL of the next (older) page, or null.")
    next_before = serializers.IntegerField(allow_null=True, help_text="The `before` value of the next page.")
