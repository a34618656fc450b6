"""`manage.py killswitch <subcommand>`: the subcommands live in killswitch/cli and brokers/cli."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand

from killswitch.cli import discover


class Command(BaseCommand):
    help = "Operate the kill switch: " + ", ".join(discover())

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
        for name, module in discover().items():
            module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))

    def handle(self, *args, **options) -> None:
        module = discover()[options["subcommand"]]
        code = module.run(options, self.stdout, self.stderr)
        self.stdout.flush()
        if code:
            # Refusals exit non-zero with the message already written, like the API's error.
            sys.exit(code)
