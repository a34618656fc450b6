"""Read-only admin pages for broker runs, their actions and the paper broker's books.

Nothing here writes: runs are created by the kill switch, the paper broker is driven
through `manage.py paper`.
"""

from __future__ import annotations

from django.contrib import admin

from .models import (
    BrokerAction,
    BrokerRun,
    PaperAccount,
    PaperFill,
    PaperOrder,
    PaperPosition,
    PaperPrice,
)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ActionInline(admin.TabularInline):
    model = BrokerAction
    extra = 0
    can_delete = False
    fields = ["action", "broker_order_id", "client_ref", "symbol", "instrument", "position_key", "strategy", "side",
              "quantity",
              "filled_quantity", "outcome", "attempts", "detail", "finished_at"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(BrokerRun)
class BrokerRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "kind", "level", "scope_label", "account", "broker", "state", "attempts", "created_at",
                    "finished_at"]
    list_filter = ["state", "kind", "level", "broker"]
    search_fields = ["account", "scope_key"]
    inlines = [ActionInline]


@admin.register(BrokerAction)
class BrokerActionAdmin(ReadOnlyAdmin):
    list_display = ["id", "run", "action", "account", "broker_order_id", "symbol", "quantity", "outcome", "attempts"]
    list_filter = ["action", "outcome"]
    search_fields = ["broker_order_id", "client_ref", "symbol", "account"]


@admin.register(PaperOrder)
class PaperOrderAdmin(ReadOnlyAdmin):
    list_display = ["id", "account", "side", "quantity", "symbol", "asset_class", "order_type", "limit_price",
                    "filled_quantity",
                    "status", "strategy"]
    list_filter = ["status", "account", "strategy"]


@admin.register(PaperPosition)
class PaperPositionAdmin(ReadOnlyAdmin):
    list_display = ["account", "symbol", "asset_class", "quantity", "avg_cost", "updated_at"]


admin.site.register(PaperAccount, ReadOnlyAdmin)
admin.site.register(PaperPrice, ReadOnlyAdmin)
admin.site.register(PaperFill, ReadOnlyAdmin)
