"""`manage.py killswitch <subcommand>`: the subcommands live in killswitch/cli and brokers/cli."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand

from killswitch.cli import discover


class Command(BaseCommand):
    help = "Operate the kill switch: " + ", ".join(discover())

    def add_arguments(self, parser) -> None:
        parser.add_argument("--verbose", action="store_true",
                            help="also write the structured JSON log lines to stderr (they always go to "
                                 "var/log/killswitch.log)")
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
        for name, module in discover().items():
            module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))

    def handle(self, *args, **options) -> None:
        if options.get("verbose"):
            _log_to_stderr()
        module = discover()[options["subcommand"]]
        code = module.run(options, self.stdout, self.stderr)
        self.stdout.flush()
        if code:
            # Refusals exit non-zero with the message already written, like the API's error.
            sys.exit(code)


def _log_to_stderr() -> None:
    import logging

    from killswitch.runtime.logging import StructuredFormatter

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(StructuredFormatter())
    for name in ("killswitch", "brokers", "riskcontrol"):
        logging.getLogger(name).addHandler(handler)
