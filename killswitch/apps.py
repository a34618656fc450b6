from __future__ import annotations

from django.apps import AppConfig


class KillswitchConfig(AppConfig):
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
