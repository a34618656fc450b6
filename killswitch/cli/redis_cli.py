"""`manage.py killswitch redis-cli [ARGS]`: the bundled redis-cli against the stack's Redis.

As the operator user when `make run`'s embedded Redis has the Redis users (var/
redis_users.json; people may GET and SET trading_switch, as in the seed), otherwise with
the service's REDIS_URL.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

from django.conf import settings

from riskcontrol.embedded_redis import cli_binary

from ..distribution import acl

NAME = "redis-cli"
HELP = "Run the bundled redis-cli against the stack's Redis (e.g. `redis-cli GET trading_switch`)."


def add_arguments(parser) -> None:
    parser.add_argument("redis_args", nargs=argparse.REMAINDER, metavar="ARGS",
                        help="redis-cli arguments, e.g. GET trading_switch")


def _url() -> str:
    users = Path(settings.BASE_DIR) / "var" / "redis_users.json"
    if users.exists() and not os.environ.get("REDIS_URL"):
        try:
            password = json.loads(users.read_text())[acl.OPERATOR]
        except (ValueError, KeyError):
            return settings.REDIS_URL
        return acl.url_for(settings.REDIS_URL, acl.OPERATOR, password)
    return settings.REDIS_URL


def run(options, out, err) -> int:
    out.flush()
    return subprocess.call([cli_binary(), "-u", _url(), "--no-auth-warning", *options.get("redis_args", [])])
