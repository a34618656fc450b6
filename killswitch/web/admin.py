"""The admin is the dashboard: the Risk page (killswitch.web.risk), the scopes with
a two-step activate action, the audit events read-only for everyone, and the
notification deliveries.

Nothing here writes kill switch state except through killswitch.services.
"""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html

from killswitch import domain as L
from killswitch import services
from killswitch.models import Event, Notification, NotificationAttempt, Scope, Source
from killswitch.policy import kill_switch_policy
from killswitch.runtime import clock
from killswitch.runtime.addresses import client_address
from killswitch.selectors.history import within
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
#
# The event list must open in well under a second on a log of millions of events
# (bench/bench_history.py): no full count, no date-hierarchy scan over every event, a
# search that only looks where an index does, sorting only on indexed columns, and
# time filters that become seq ranges (selectors.history.within).


class CappedCountPaginator(Paginator):
    """Counts at most CAP events (the first 50 pages): counting a filtered log of
    millions would cost more than the page itself (a count stops after CAP matches, so
    its cost is CAP over the filter's share of the log). `more` says the count was
    capped; a narrower filter (recorded within, a scope, an actor) reaches anything older."""

    CAP = 5_000

    @cached_property
    def _found(self) -> int:
        return self.object_list[: self.CAP + 1].count()

    @cached_property
    def count(self) -> int:
        return min(self._found, self.CAP)

    @property
    def more(self) -> bool:
        return self._found > self.CAP


class RecordedWithin(admin.SimpleListFilter):
    """When the event was recorded, as a seq range (selectors.history.within)."""

    title = "recorded"
    parameter_name = "within"
    CHOICES = {"1h": ("Past hour", timedelta(hours=1)), "24h": ("Past 24 hours", timedelta(days=1)),
               "7d": ("Past 7 days", timedelta(days=7)), "30d": ("Past 30 days", timedelta(days=30)),
               "365d": ("Past year", timedelta(days=365))}

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _) in self.CHOICES.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Event]) -> QuerySet[Event]:
        chosen = self.CHOICES.get(self.value() or "")
        return within(queryset, since=clock.now() - chosen[1]) if chosen else queryset


class NewLevel(admin.SimpleListFilter):
    """The level a change set. The column has no choices, and Django's default filter
    for such a column lists its values with a SELECT DISTINCT over every event (measured:
    140 ms of a 190 ms page at a million events on PostgreSQL); the levels are known."""

    title = "new level"
    parameter_name = "new_level"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(level, level) for level in L.LEVELS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Event]) -> QuerySet[Event]:
        return queryset.filter(new_level=self.value()) if self.value() in L.LEVELS else queryset


@admin.register(Event)
class EventAdmin(ReadOnlyForEveryone, admin.ModelAdmin):
    list_display = ("seq", "created_at", "action", "outcome", "scope_shown", "previous_level", "new_level",
                    "actor", "source", "short_reason", "client_address")
    list_display_links = ("seq",)
    # Each filter is on a column with an index led by it (ending in -seq: the list's order).
    list_filter = ("action", "outcome", "source", "scope_kind", NewLevel, RecordedWithin)
    search_fields = ("actor",)  # shows the search box; get_search_results says what it finds
    search_help_text = ("An actor (exact, e.g. rita_risk), a scope (global, account:DU123, or just DU123 or "
                        "AAPL) or an event number (#1234).")
    sortable_by = ("seq", "created_at")
    list_per_page = 100
    paginator = CappedCountPaginator
    show_full_result_count = False
    actions = None
    readonly_fields = [f.name for f in Event._meta.fields]

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Event],
                           search_term: str) -> tuple[QuerySet[Event], bool]:
        """Exact matches on indexed columns only: a substring search over reasons would
        read every event of the log (seconds at a million events)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        found = Q(actor=term)
        if term.lstrip("#").isdigit():
            found |= Q(seq=int(term.lstrip("#")))
        if ":" in term or term.lower() == L.GLOBAL:
            try:
                ref = L.ScopeRef.parse(term)
            except L.ScopeError:
                pass
            else:
                found |= Q(scope_kind=ref.kind, scope_key=ref.key)
        else:
            found |= Q(scope_kind__in=(L.ACCOUNT, L.STRATEGY), scope_key=term)
            found |= Q(scope_kind=L.SYMBOL, scope_key=term.upper())
        return queryset.filter(found), False

    @admin.display(description="Scope")
    def scope_shown(self, obj: Event) -> str:
        return obj.scope_label

    @admin.display(description="Reason")
    def short_reason(self, obj: Event) -> str:
        return obj.reason if len(obj.reason) <= 80 else obj.reason[:79] + "…"



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


