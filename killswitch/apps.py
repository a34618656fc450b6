from __future__ import annotations

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class RiskAdminConfig(admin_apps.AdminConfig):
    """The admin with the Risk page (killswitch.web.site.RiskAdminSite) as its default site."""

    default = False  # not the killswitch app's own config; named in INSTALLED_APPS
    default_site = "killswitch.web.site.RiskAdminSite"


class KillswitchConfig(AppConfig):
    default = True

    name = "killswitch"
    verbose_name = "Kill switch"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Validate the policy at start-up: a bad file stops the process here,
        # naming the key, the value and what is expected.
        from django.conf import settings
        from django.db.models.signals import post_migrate

        from . import breakers
        from .chat import admin as _chat_admin  # noqa: F401 - the Telegram link on the user's page
        from .chat.config import bot_should_run, check_at_start_up
        from .notifications.services import connect as connect_notifications
        from .policy import get_policy
        from .runtime import processes
        from .services.roles import ensure_baseline_after_migrate
        from .web import admin as _admin  # noqa: F401 - registers the model admins on the Risk site
        from .web.live import connect as connect_live
        from .web.logins import connect as connect_logins

        get_policy()
        check_at_start_up()  # the telegram: section (owned by killswitch.chat), its URL and token
        # Roles, the global scope and the chain head survive `flush` (and test teardown).
        post_migrate.connect(ensure_baseline_after_migrate, sender=self,
                             dispatch_uid="killswitch.ensure_baseline")
        # After-commit receivers, in every process that commits events (web, worker, CLI,
        # reconciler): live pushes to open dashboards, and notifications.
        connect_live()
        connect_notifications()
        connect_logins()
        for process in (
            processes.Process("web", ("daphne", "-b", "127.0.0.1", "-p", "{port}", "riskcontrol.asgi:application"),
                              "HTTP (admin dashboard, REST API) and WebSocket (live Risk page)"),
            # The broker work's own worker is registered by the brokers app.
            processes.Process("notify-worker", ("celery", "-A", "riskcontrol", "worker", "-Q", settings.NOTIFY_QUEUE,
                                                "--loglevel", "INFO", "--concurrency", "2", "-n", "notify@%h"),
                              "Celery worker for the notify queue: notification deliveries"),
            processes.Process("reconciler", (processes.PYTHON, "manage.py", "killswitch", "reconcile"),
                              "keeps Redis equal to the database, audits out-of-band writes, heartbeat"),
            processes.Process("telegram", (processes.PYTHON, "manage.py", "killswitch", "telegram", "run"),
                              "Telegram bot commands (only with telegram_enabled and a bot token)",
                              when=bot_should_run),
        ):
            processes.register(process)
        # The breakers: section (validated here: a typo stops start-up), the Breakers panel,
        # their open items and the breaker process.
        breakers.connect()
