from __future__ import annotations

from django.apps import AppConfig


class BrokersConfig(AppConfig):
    name = "brokers"
    verbose_name = "Brokers"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Validate the brokers: section at start-up (a bad file names key, value,
        expected), connect the kill switch's hooks to the broker runs, and plug the
        brokers' parts into the kill switch's registries: CLI subcommands (runs, sweep),
        the Risk page's broker runs panel and the live pushes of the runs' progress, the
        drill's broker steps, the sweep process, what the Telegram bot shows (runs, what a
        kill would close, what is open), the known accounts and held symbols, the demo
        book's reset and the automatic breakers' feed (P&L, positions, orders, connections).
        The dependency runs one way: brokers imports killswitch, never the reverse."""
        from django.conf import settings
        from django.db.models.signals import post_migrate

        from killswitch import cli
        from killswitch.chat import hooks as chat_hooks
        from killswitch.drill import hooks as drill_hooks
        from killswitch.runtime import processes
        from killswitch.web import panels

        from . import chat, receivers  # noqa: F401 - receivers connects the hooks
        from .config import brokers_config
        from .drill import BrokerDrills
        from .panels import recent_runs
        from .roles import ensure_grants_after_migrate

        brokers_config()
        post_migrate.connect(ensure_grants_after_migrate, sender=self, dispatch_uid="brokers.ensure_grants")
        cli.register_package("brokers.cli")
        panels.register(panels.Panel("runs", "Broker runs", recent_runs))
        drill_hooks.register(BrokerDrills())
        chat_hooks.register(chat_hooks.BrokerViews(chat.recent_runs, chat.kill_would_close, chat.still_open))
        from killswitch.selectors import open_items

        from . import open_items as broker_open_items

        open_items.register("broker", broker_open_items.orders_and_positions)
        open_items.register("runs", broker_open_items.runs)
        from killswitch.services import known_scopes

        from . import known

        # The accounts an activation may name and the symbols the Kill dialog suggests.
        known_scopes.register(known_scopes.KnownScopes(accounts=known.configured_accounts,
                                                       symbols_held=known.symbols_held))
        from . import live

        live.connect()  # the runs' progress on the open Risk pages
        from killswitch.services import demo_reset

        from .demo_book import reset_demo_book

        demo_reset.register_book_reset(reset_demo_book)  # `killswitch demo-reset` restores the demo book
        # The automatic breakers read P&L, positions, orders and connections through this
        # feed; a breaker scoped to an account no broker serves stops start-up here.
        from killswitch.breakers import config as breaker_config
        from killswitch.breakers import feeds as breaker_feeds

        from .feeds import BrokerFeed

        breaker_feeds.register("brokers", BrokerFeed)
        breaker_config.check_accounts(set(brokers_config().accounts))
        processes.register(processes.Process(
            "broker-worker", ("celery", "-A", "riskcontrol", "worker", "-Q", settings.BROKER_QUEUE, "--loglevel",
                              "INFO", "--concurrency", "2", "-n", "broker@%h"),
            "Celery worker for the broker queue: runs (cancel, flatten, verify)"))
        processes.register(processes.Process(
            "sweep", (processes.PYTHON, "manage.py", "killswitch", "sweep"),
            "cancels orders that appear in halted scopes; re-enqueues runs nobody holds"))
        from killswitch.ops import hooks as ops_hooks

        from . import ops as broker_ops

        # /readyz: the connections of the configured accounts; /metrics: runs and actions.
        ops_hooks.register("brokers", check=broker_ops.readiness, metrics=broker_ops.metric_families)
