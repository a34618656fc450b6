"""The Telegram link in the admin: on the user's own page (an inline) and as a list of
every link; both write through killswitch.chat.links, like the CLI. The bot's
received updates and pending confirmations are shown read-only.

Registered from killswitch.apps (after the admin has registered the User admin, which
this extends rather than replaces).
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.http import HttpRequest

from killswitch.models import TelegramConfirmation, TelegramLink, TelegramUpdate
from killswitch.web.admin import ReadOnlyForEveryone

from . import links


class TelegramLinkForm(forms.ModelForm):
    telegram_user_id = forms.CharField(
        label="Telegram user id", help_text="The person's numeric Telegram user id; the bot tells it on /start.")

    class Meta:
        model = TelegramLink
        fields = ["telegram_user_id"]

    def clean_telegram_user_id(self) -> int:
        try:
            return links.parse_telegram_user_id(self.cleaned_data["telegram_user_id"])
        except links.LinkError as error:
            raise forms.ValidationError(error.message) from None


class TelegramLinkInline(admin.StackedInline):
    model = TelegramLink
    form = TelegramLinkForm
    fields = ("telegram_user_id", "linked_at", "linked_by")
    readonly_fields = ("linked_at", "linked_by")
    extra = 1
    max_num = 1
    verbose_name = verbose_name_plural = "Telegram (bot commands act as this user, with this user's role)"


def _save_links(request: HttpRequest, user: Any, formset: Any, admin_: admin.ModelAdmin) -> None:
    """The inline's save, through the link service; fills what the admin's change
    message reads (`new_objects`, `changed_objects`, `deleted_objects`), as formset.save() would."""
    by = request.user.get_username()
    formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
    for form in formset.forms:
        try:
            if formset.can_delete and formset._should_delete_form(form):
                if form.instance.pk:
                    links.unlink(username=user.get_username(), by=by)
                    formset.deleted_objects.append(form.instance)
            elif form.has_changed():
                row, previous = links.link(username=user.get_username(),
                                           telegram_user_id=form.cleaned_data["telegram_user_id"], by=by)
                if previous is None:
                    formset.new_objects.append(row)
                else:
                    formset.changed_objects.append((row, ["telegram_user_id"]))
        except links.LinkError as error:
            admin_.message_user(request, error.message, messages.ERROR)


def extend_user_admin(site: admin.AdminSite) -> None:
    """Add the Telegram inline to the registered User admin (keeping its class)."""
    user_model = get_user_model()
    if not site.is_registered(user_model):
        return
    base = type(site.get_model_admin(user_model))
    if getattr(base, "telegram_inline", False):
        return

    class UserAdminWithTelegram(base):  # type: ignore[misc, valid-type]
        telegram_inline = True
        inlines = [*getattr(base, "inlines", []), TelegramLinkInline]

        def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
            if formset.model is TelegramLink:
                _save_links(request, form.instance, formset, self)
            else:
                super().save_formset(request, form, formset, change)

    site.unregister(user_model)
    site.register(user_model, UserAdminWithTelegram)


@admin.register(TelegramLink)
class TelegramLinkAdmin(admin.ModelAdmin):
    list_display = ("user", "telegram_user_id", "linked_at", "linked_by")
    search_fields = ("user__username", "telegram_user_id")
    readonly_fields = ("linked_at", "linked_by")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["user", "telegram_user_id", "linked_at", "linked_by"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Moving a link to another user is an unlink and a link, each on record.
        return ("user", "linked_at", "linked_by") if obj is not None else ("linked_at", "linked_by")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        kwargs["form"] = forms.modelform_factory(
            TelegramLink, form=TelegramLinkForm,
            fields=["telegram_user_id"] if obj is not None else ["user", "telegram_user_id"])
        return super().get_form(request, obj, change, **kwargs)

    def save_model(self, request: HttpRequest, obj: TelegramLink, form: Any, change: bool) -> None:
        row, _ = links.link(username=obj.user.get_username(), telegram_user_id=obj.telegram_user_id,
                            by=request.user.get_username())
        obj.pk, obj.linked_at, obj.linked_by = row.pk, row.linked_at, row.linked_by

    def delete_model(self, request: HttpRequest, obj: TelegramLink) -> None:
        links.unlink(username=obj.user.get_username(), by=request.user.get_username())

    def delete_queryset(self, request: HttpRequest, queryset: Any) -> None:
        for obj in queryset.select_related("user"):
            self.delete_model(request, obj)


@admin.register(TelegramConfirmation)
class TelegramConfirmationAdmin(ReadOnlyForEveryone, admin.ModelAdmin):
    list_display = ("created_at", "action", "level", "scope", "user", "chat_id", "state", "event_seq", "detail")
    list_filter = ("state", "action")
    search_fields = ("user__username", "scope", "reason", "detail")
    actions = None


@admin.register(TelegramUpdate)
class TelegramUpdateAdmin(ReadOnlyForEveryone, admin.ModelAdmin):
    list_display = ("received_at", "update_id", "telegram_user_id", "chat_id", "text", "state", "event_seq")
    list_filter = ("state",)
    search_fields = ("text", "telegram_user_id")
    actions = None


extend_user_admin(admin.site)
