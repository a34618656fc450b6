"""`manage.py killswitch redis-acl [--apply] [--keep-default]`: the Redis users of the trust model."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ..distribution import acl
from ..distribution.connection import get_redis

NAME = "redis-acl"
HELP = ("Print the Redis users (killswitch, trader, operator) for the server in REDIS_URL; --apply "
        "creates them (admin rights needed once) and switches the default user off.")


def add_arguments(parser) -> None:
    parser.add_argument("--apply", action="store_true", help="create the users on the Redis in REDIS_URL")
    parser.add_argument("--keep-default", action="store_true",
                        help="leave the default user on (everybody keeps full access: not a trust boundary)")


def run(options, out, err) -> int:
    client = get_redis()
    try:
        version = acl.server_version(client)
    except Exception as exc:  # redis raises several error types
        err.write(f"Redis at {settings.REDIS_URL} does not answer: {exc}\n")
        return 1
    if not options.get("apply"):
        rules = acl.rules(version)
        out.write(f"# Redis {version[0]}.{version[1]}: ACL SETUSER commands "
                  f"(passwords from {', '.join(acl.PASSWORD_VARIABLES.values())})\n")
        for user, rule in rules.users.items():
            out.write(f"ACL SETUSER {user} reset on >${{{acl.PASSWORD_VARIABLES[user]}}} {' '.join(rule)}\n")
        out.write("ACL SETUSER default off\n")
        for note in rules.notes:
            out.write(f"# note: {note}\n")
        return 0
    try:
        secrets = acl.passwords(required=True)
    except ImproperlyConfigured as exc:
        err.write(f"{exc}\n")
        return 2
    try:
        rules = acl.apply(client, secrets, disable_default=not options.get("keep_default"))
    except Exception as exc:  # NOPERM without admin rights, a refused rule, ...
        err.write(f"could not create the Redis users: {exc}\n")
        return 1
    out.write(f"created users {', '.join(rules.users)} on Redis {version[0]}.{version[1]}"
              f"{'' if options.get('keep_default') else '; the default user is off'}\n")
    out.write("service:           REDIS_URL=" + acl.url_for(settings.REDIS_URL, acl.SERVICE, "<REDIS_SERVICE_PASSWORD>") + "\n")
    out.write("trading processes: " + acl.url_for(settings.REDIS_URL, acl.TRADER, "<REDIS_TRADER_PASSWORD>") + "\n")
    out.write("redis-cli (people): " + acl.url_for(settings.REDIS_URL, acl.OPERATOR, "<REDIS_OPERATOR_PASSWORD>") + "\n")
    for note in rules.notes:
        out.write(f"note: {note}\n")
    return 0
