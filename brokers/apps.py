from __future__ import annotations

from django.apps import AppConfig


class BrokersConfig(AppConfig):
    name = "brokers"
    verbose_name = "Brokers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Validate the brokers: section at start-up (a bad file names key, value, expected)
        # and connect the kill switch's event_committed signal to the broker runs.
        from django.db.models.signals import post_migrate

        from . import receivers  # noqa: F401
        from .config import brokers_config
        from .roles import ensure_grants_after_migrate

        brokers_config()
        post_migrate.connect(ensure_grants_after_migrate, sender=self, dispatch_uid="brokers.ensure_grants")
