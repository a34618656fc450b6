"""The admin is the dashboard: the Risk page (killswitch.web.risk), the scopes with
a two-step activate action, the audit events read-only for everyone, and the
notification deliveries.

Nothing here writes kill switch state except through killswitch.services.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html

from killswitch import domain as L
from killswitch import services
from killswitch.models import Event, Notification, NotificationAttempt, Scope, Source
from killswitch.policy import kill_switch_policy
from killswitch.runtime.addresses import client_address
from killswitch.services.authorization import ACTIVATE, VIEW, user_may

LEVEL_COLOURS = {L.RUNNING: "#2e7d32", L.PAUSE: "#b26a00", L.HALT: "#c62828", L.KILL: "#6a1b1b"}


def level_badge(level: str) -> str:
    colour = LEVEL_COLOURS.get(level, "#555")
    return format_html('<span class="ks-level ks-level-{}" style="color:#fff;background:{};padding:1px 6px;'
                       'border-radius:3px;font-weight:bold">{}</span>', level, colour, level.upper())


# --- Scopes ---------------------------------------------------------------------------------


class ReadOnlyForEveryone:
    """Nobody adds, changes or deletes through the admin (superusers included): scopes
    change only through the services, events and deliveries are a record. Viewing needs
    the kill switch view permission (the roles), not only the model's."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return user_may(request.user, VIEW) or super().has_view_permission(request, obj)


@admin.register(Scope)
class ScopeAdmin(ReadOnlyForEveryone, admin.ModelAdmin):
    list_display = ("label", "level_shown", "reason", "actor", "source", "since", "cooldown_until", "version")
    list_filter = ("kind", "level")
    search_fields = ("key", "reason", "actor")
    actions = ["activate_selected"]

    @admin.display(description="Scope", ordering="kind")
    def label(self, obj: Scope) -> str:
        return obj.label

    @admin.display(description="Level", ordering="level")
    def level_shown(self, obj: Scope) -> str:
        return level_badge(obj.level)

    def has_activate_permission(self, request: HttpRequest) -> bool:
        return user_may(request.user, ACTIVATE)

    @admin.action(description="Activate the kill switch on the selected scopes", permissions=["activate"])
    def activate_selected(self, request: HttpRequest, queryset: QuerySet[Scope]) -> HttpResponse | None:
        """Two steps, like delete_selected: a confirmation page that re-posts with post=yes."""
        level = request.POST.get("level") or kill_switch_policy().default_level
        reason = request.POST.get("reason", "")
        if request.POST.get("post") == "yes":
            done, refused = [], []
            for scope in queryset:
                try:
                    result = services.activate(
                        scope=scope.label, level=level, reason=reason, actor=request.user, source=Source.ADMIN,
                        client_address=client_address(request),
                    )
                except services.KillSwitchError as error:
                    refused.append(f"{scope.label}: {error.message}")
                else:
                    done.append(result.message)
            if done:
                self.message_user(request, "; ".join(done), messages.SUCCESS)
            if refused:
                self.message_user(request, "Refused — " + "; ".join(refused), messages.ERROR)
            return None  # back to the change list
        context = {
            **self.admin_site.each_context(request),
            "title": "Activate the kill switch: are you sure?",
            "opts": self.model._meta,
            "queryset": queryset,
            "levels": L.ACTIVE_LEVELS,
            "default_level": kill_switch_policy().default_level,
            "cooldown_minutes": kill_switch_policy().cooldown_minutes,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/killswitch/scope/activate_selected_confirmation.html", context)


# --- Audit events: read-only for everyone, superusers included ----------------------------


@admin.register(Event)
class EventAdmin(ReadOnlyForEveryone, admin.ModelAdmin):
    # Fits 1366 px beside the filters: one column for the level change, the reason wraps.
    # The client address is on each event's page and searchable.
    list_display = ("seq", "created_at", "action", "outcome", "scope_shown", "level_change", "actor", "source",
                    "short_reason")
    list_display_links = ("seq",)
    list_filter = ("action", "outcome", "source", "scope_kind", "new_level", "created_at")
    search_fields = ("actor", "reason", "detail", "scope_key", "client_address")
    date_hierarchy = "created_at"
    list_per_page = 100
    # A COUNT over millions of rows on every page would make the history slow to open.
    show_full_result_count = False
    actions = None
    readonly_fields = [f.name for f in Event._meta.fields]

    @admin.display(description="Scope")
    def scope_shown(self, obj: Event) -> str:
        return obj.scope_label

    class Media:
        css = {"all": ("killswitch/admin.css",)}

    @admin.display(description="Level", ordering="new_level")
    def level_change(self, obj: Event) -> str:
        if obj.previous_level == obj.new_level:
            return obj.new_level or "—"
        return f"{obj.previous_level or '—'} → {obj.new_level or '—'}"

    @admin.display(description="Reason / detail")
    def short_reason(self, obj: Event) -> str:
        text = obj.reason if obj.outcome == "applied" and obj.reason else " — ".join(
            filter(None, [obj.reason, obj.detail]))
        return text if len(text) <= 120 else text[:119] + "…"


# --- Notification deliveries: read-only --------------------------------------------------------


class NotificationAttemptInline(ReadOnlyForEveryone, admin.TabularInline):
    model = NotificationAttempt
    fields = ("number", "at", "ok", "permanent", "error", "duration_ms")
    readonly_fields = fields
    extra = 0
    can_delete = False



@admin.register(Notification)
class NotificationAdmin(ReadOnlyForEveryone, admin.ModelAdmin):
    list_display = ("id", "created_at", "event_seq", "channel", "target", "status", "attempts", "sent_at",
                    "last_error")
    list_filter = ("status", "kind", "channel")
    search_fields = ("title", "body", "last_error")
    readonly_fields = ("event", "channel", "kind", "target", "title", "body", "status", "attempts",
                       "last_error", "created_at", "sent_at", "updated_at")
    inlines = [NotificationAttemptInline]
    actions = None
    list_select_related = ("event",)

    @admin.display(description="Event", ordering="event__seq")
    def event_seq(self, obj: Notification) -> str:
        return f"#{obj.event.seq} {obj.event.action}"


