from __future__ import annotations

from django.apps import AppConfig


class KillswitchConfig(AppConfig):
    name = "killswitch"
    verbose_name = "Kill switch"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Validate the policy at start-up: a bad file stops the process here,
        # naming the key, the value and what is expected.
        from .policy import get_policy

        get_policy()
