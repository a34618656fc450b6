from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class RiskAdminConfig(admin_apps.AdminConfig):
    """The admin with the Risk page (killswitch.admin_site.RiskAdminSite) as its default site."""

    default = False  # not the killswitch app's own config; named in INSTALLED_APPS
    default_site = "killswitch.admin_site.RiskAdminSite"


class KillswitchConfig(AppConfig):
    default = True

    name = "killswitch"
    verbose_name = "Kill switch"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Validate the policy at start-up: a bad file stops the process here,
        # naming the key, the value and what is expected.
        from django.db.models.signals import post_migrate

        from .policy import get_policy
        from .roles import ensure_baseline_after_migrate

        get_policy()
        # Roles, the global scope and the chain head survive `flush` (and test teardown).
        post_migrate.connect(ensure_baseline_after_migrate, sender=self,
                             dispatch_uid="killswitch.ensure_baseline")
        # After-commit receivers, in every process that commits events (web, worker, CLI,
        # reconciler): live pushes to open dashboards, and notifications.
        from .live import connect as connect_live
        from .notifications.services import connect as connect_notifications

        connect_live()
        connect_notifications()
