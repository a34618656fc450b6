"""Small, loud readers for the environment (in the style of healthchecks' envbool/envint).

Every reader names the variable in the error it raises, so a bad deployment
fails at start-up with a message an operator can act on.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured


def envstr(name: str, default: str | None = None) -> str | None:
    """The variable's value, or the content of the file named by NAME_FILE, or default.

    Secrets may come from a file (Docker/Kubernetes secrets) so they never sit in
    the process environment.
    """
    value = os.environ.get(name)
    if value is not None:
        return value
    file_name = os.environ.get(f"{name}_FILE")
    if file_name:
        try:
            return Path(file_name).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={file_name!r} cannot be read: {exc}") from exc
    return default


def envbool(name: str, default: bool) -> bool:
    value = envstr(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean; expected true or false")


def envint(name: str, default: int) -> int:
    value = envstr(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from None


def envlist(name: str, default: list[str]) -> list[str]:
    value = envstr(name)
    if value is None or value.strip() == "":
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def metrics_networks(values: list[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """METRICS_ALLOWED_IPS entries (`10.0.0.7`, `10.0.0.0/24`, `::1`) as networks."""
    found = []
    for value in values:
        try:
            found.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ImproperlyConfigured(
                f"METRICS_ALLOWED_IPS: {value!r} is not an IP address or network; "
                "expected e.g. 127.0.0.1,10.0.0.0/24,::1") from None
    return tuple(found)


def redis_url_from_env() -> str:
    """REDIS_URL, or one built from the seed's REDIS_HOST/REDIS_PORT/REDIS_PASSWORD.

    REDIS_PASSWORD is honoured in both cases: when REDIS_URL carries no password,
    the password is added to it, so every Redis user of the project authenticates.
    """
    password = envstr("REDIS_PASSWORD") or ""
    url = envstr("REDIS_URL")
    if url:
        parts = urlsplit(url)
        if parts.scheme not in {"redis", "rediss", "unix"}:
            raise ImproperlyConfigured(
                f"REDIS_URL={url!r} has scheme {parts.scheme!r}; expected redis://, rediss:// or unix://"
            )
        if password and parts.password is None and parts.scheme != "unix":
            netloc = f":{quote(password, safe='')}@{parts.hostname}"
            if parts.port:
                netloc += f":{parts.port}"
            url = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        return url
    if not any(os.environ.get(n) or os.environ.get(f"{n}_FILE") for n in ("REDIS_HOST", "REDIS_PORT",
                                                                         "REDIS_PASSWORD")):
        recorded = stack_redis_url()
        if recorded:
            return recorded
    host = envstr("REDIS_HOST", "localhost") or "localhost"
    port = envint("REDIS_PORT", 6379)
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/0"


STACK_FILE = Path(__file__).resolve().parent.parent / "var" / "stack.json"


def stack_redis_url() -> str | None:
    """The Redis of the stack `make run` is running (var/stack.json, with the service's
    credentials), when nothing else names one: so every command of the project, from any
    terminal, reaches the embedded Redis on its random port. A record whose process is
    gone is ignored with a one-line note."""
    import sys

    from killswitch_client.config import StackRecordError, pid_alive, read_stack_record

    path = Path(os.environ.get("KILLSWITCH_STACK_FILE") or STACK_FILE)
    try:
        record = read_stack_record(path)
    except StackRecordError as exc:
        print(f"note: ignoring {path}: {exc}", file=sys.stderr)
        return None
    if record is None:
        return None
    if not pid_alive(record.pid):
        print(f"note: ignoring {path}: the stack that wrote it (pid {record.pid}) is not running",
              file=sys.stderr)
        return None
    return record.redis_url


def current_database_url() -> str:
    """The database this process uses, as a DATABASE_URL for child processes (workers,
    reconcilers, drills and test stacks started from here share it)."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return (f"postgres://{quote(str(db['USER']), safe='')}:{quote(str(db['PASSWORD']), safe='')}@"
            f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}")
