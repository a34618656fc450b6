"""How every component of the service connects to Redis: the one rule, written here.

**Where.** `REDIS_SENTINELS=host:port[,host:port]` with `REDIS_SENTINEL_MASTER=name`
(Redis Sentinel names the master, and the next one after a failover) is used in
preference to `REDIS_URL` (riskcontrol.env.redis_url_from_env: `REDIS_URL`, else the
seed's `REDIS_HOST` / `REDIS_PORT` / `REDIS_PASSWORD`).

**Who.** With `REDIS_SERVICE_PASSWORD` (or `REDIS_SERVICE_PASSWORD_FILE`) set, the
service is the Redis ACL user `killswitch` with that password; otherwise it uses the
credentials `REDIS_URL` carries (`REDIS_PASSWORD` is added to a URL that has none).
The same pair is used for a direct connection and for the master a Sentinel names.
The sentinels' own password is `REDIS_SENTINEL_PASSWORD`.

**Which database.** 0: the kill switch's keys (the trading processes read them);
1: Celery's broker; 2: the Channels layer; 3: the shared Django cache (django-redis;
`cache.clear()` empties only that database).

Every Redis user of the service takes its connection from here: the service's own
client (killswitch.distribution.connection: web, reconciler, workers, CLI), Celery,
the Channels layer and the cache (riskcontrol/settings.py). Nothing else builds a
Redis connection from the environment. (The trading client, clients/python, reads
the same variables with its own code: it must not depend on this project.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import redis
import redis.sentinel
from django.core.exceptions import ImproperlyConfigured

from .env import envstr, redis_url_from_env

SERVICE_USER = "killswitch"
DB_STATE, DB_CELERY, DB_CHANNELS, DB_CACHE = 0, 1, 2, 3
# Connecting to a sentinel is a local round trip; a sentinel that does not answer in
# this time is skipped for the next one (never a hang).
SENTINEL_TIMEOUT = 1.0


@dataclass(frozen=True)
class RedisTarget:
    """Where and as whom the service connects. Build it with `from_env()` or
    `resolve()`; both validate and raise ImproperlyConfigured naming the variable."""

    url: str  # the direct URL, with the credentials below (unused for connecting with sentinels)
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str | None = None
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None

    @property
    def uses_sentinel(self) -> bool:
        return bool(self.sentinels)

    def describe(self) -> str:
        """Where and as whom, never the password (for logs and start-up messages)."""
        who = f" as {self.username}" if self.username else ""
        if self.uses_sentinel:
            hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"sentinel master {self.master!r} via {hosts}{who}"
        parts = urlsplit(self.url)
        where = f"{parts.hostname}:{parts.port or 6379}" if parts.scheme != "unix" else parts.path
        return f"{parts.scheme}://{where}{who}"

    # --- the service's own clients ----------------------------------------------------

    def url_for(self, db: int) -> str:
        """The direct URL of logical database `db`, carrying this target's credentials."""
        parts = urlsplit(self.url)
        if parts.scheme == "unix":  # credentials stay in the URL (resolve() checks); the db is a parameter
            query = dict(parse_qsl(parts.query))
            query["db"] = str(db)
            return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))
        host = parts.hostname or "localhost"
        if ":" in host:
            host = f"[{host}]"
        auth = ""
        if self.password is not None or self.username:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password or '', safe='')}@"
        netloc = f"{auth}{host}:{parts.port or 6379}"
        return urlunsplit((parts.scheme, netloc, f"/{db}", parts.query, parts.fragment))

    def client(self, *, db: int = DB_STATE, **options: Any) -> redis.Redis:
        """A redis-py client for `db` with `options` (timeouts, decoding). With sentinels
        it follows the master: after a failover the next command goes to the new one."""
        if not self.uses_sentinel:
            return redis.Redis.from_url(self.url_for(db), **options)
        sentinel = redis.sentinel.Sentinel(list(self.sentinels), sentinel_kwargs=self.sentinel_kwargs())
        return sentinel.master_for(self.master, db=db, **self._auth(), **options)

    def sentinel_kwargs(self) -> dict[str, Any]:
        """How to talk to the sentinels themselves (their password, short timeouts)."""
        kwargs: dict[str, Any] = {"socket_connect_timeout": SENTINEL_TIMEOUT, "socket_timeout": SENTINEL_TIMEOUT}
        if self.sentinel_password:
            kwargs["password"] = self.sentinel_password
        return kwargs

    def _auth(self) -> dict[str, str]:
        auth = {}
        if self.username:
            auth["username"] = self.username
        if self.password is not None:
            auth["password"] = self.password
        return auth

    # --- the libraries' settings --------------------------------------------------------

    def celery_broker(self) -> tuple[str, dict[str, Any]]:
        """(CELERY_BROKER_URL, the transport options it needs) on database 1.

        With sentinels: kombu's `sentinel://` transport, one URL per sentinel joined by
        `;`, each carrying the master's credentials; `master_name` and the sentinels'
        own password go in the transport options.
        """
        if not self.uses_sentinel:
            return self.url_for(DB_CELERY), {}
        auth = ""
        if self.password is not None or self.username:
            auth = f"{quote(self.username or '', safe='')}:{quote(self.password or '', safe='')}@"
        urls = ";".join(f"sentinel://{auth}{_host(h)}:{p}/{DB_CELERY}" for h, p in self.sentinels)
        return urls, {"master_name": self.master, "sentinel_kwargs": self.sentinel_kwargs()}

    def channel_layer_host(self) -> dict[str, Any]:
        """One entry of CHANNEL_LAYERS' `hosts`, on database 2.

        `socket_timeout: None`: channels_redis waits for messages with 5 s blocking reads
        (BZPOPMIN), and redis-py 8 gives every connection a 5 s socket timeout by
        default, so an idle consumer would time out in the middle of its own read. A
        dead peer is found by TCP keepalive instead; connecting stays bounded.
        """
        common: dict[str, Any] = {"socket_timeout": None, "socket_connect_timeout": 2, "socket_keepalive": True}
        if not self.uses_sentinel:
            return {"address": self.url_for(DB_CHANNELS), **common}
        return {"sentinels": list(self.sentinels), "master_name": self.master,
                "sentinel_kwargs": self.sentinel_kwargs(), "db": DB_CHANNELS, **self._auth(), **common}

    def cache(self) -> dict[str, Any]:
        """The CACHES entry of the shared cache (django-redis) on database 3.

        Short timeouts: the cache counts failed attempts in the request path, and a
        Redis that does not answer must cost a request at most a second (the limiter
        lets the request through when the cache fails). With sentinels, django-redis's
        own SentinelConnectionFactory follows the master; reads go to the master too
        (a replica's counts would lag behind the writes).
        """
        options: dict[str, Any] = {"SOCKET_CONNECT_TIMEOUT": 1.0, "SOCKET_TIMEOUT": 1.0}
        if not self.uses_sentinel:
            return {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": self.url_for(DB_CACHE),
                    "KEY_PREFIX": "killswitch", "OPTIONS": options}
        options.update({
            "CONNECTION_FACTORY": "django_redis.pool.SentinelConnectionFactory",
            "SENTINELS": list(self.sentinels), "SENTINEL_KWARGS": self.sentinel_kwargs(),
        })
        if self.username:
            options["USERNAME"] = self.username
        if self.password is not None:
            options["PASSWORD"] = self.password
        return {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": f"redis://{self.master}/{DB_CACHE}",
                "KEY_PREFIX": "killswitch", "OPTIONS": options}


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def parse_sentinels(raw: str | None, *, name: str = "REDIS_SENTINELS") -> tuple[tuple[str, int], ...]:
    """`host:port[,host:port]` (IPv6 as `[::1]:26379`) -> ((host, port), ...); empty -> ()."""
    if raw is None or not raw.strip():
        return ()
    found = []
    for item in (part.strip() for part in raw.split(",")):
        host, sep, port = item.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ImproperlyConfigured(
                f"{name}={raw!r}: {item!r} is not host:port; expected e.g. 10.0.0.1:26379,10.0.0.2:26379")
        found.append((host, int(port)))
    return tuple(found)


@lru_cache(maxsize=32)
def resolve(*, url: str, sentinels: tuple[tuple[str, int], ...] = (), master: str | None = None,
            service_password: str | None = None, sentinel_password: str | None = None) -> RedisTarget:
    """The target for these settings (the rule in the module docstring).

    Raises ImproperlyConfigured when sentinels come without a master name or the other
    way round, or when a unix:// URL would need credentials put into it.
    """
    if sentinels and not master:
        raise ImproperlyConfigured("REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not; expected the "
                                   "name the sentinels monitor (sentinel monitor <name> ...)")
    if master and not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", master):
        # django-redis takes the master's name from the host part of a URL, which is
        # read in lower case: a name with capitals would silently name another master.
        raise ImproperlyConfigured(f"REDIS_SENTINEL_MASTER={master!r} is not supported; expected lower-case "
                                   "letters, digits, '.', '_' or '-' (e.g. killswitch)")
    if master and not sentinels:
        raise ImproperlyConfigured(f"REDIS_SENTINEL_MASTER={master!r} is set but REDIS_SENTINELS is not; "
                                   "expected host:port[,host:port]")
    parts = urlsplit(url)
    if service_password:
        username, password = SERVICE_USER, service_password
        if parts.scheme == "unix":
            raise ImproperlyConfigured(
                "REDIS_SERVICE_PASSWORD cannot be combined with a unix:// REDIS_URL; put the user and "
                "password in the URL (unix://killswitch:PASSWORD@/path/redis.sock?db=0)")
    else:
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
    return RedisTarget(url=url, sentinels=tuple(sentinels), master=master or None, username=username,
                       password=password, sentinel_password=sentinel_password or None)


def from_env() -> RedisTarget:
    """The target the environment describes (see the module docstring for the variables)."""
    return resolve(url=redis_url_from_env(), sentinels=parse_sentinels(envstr("REDIS_SENTINELS")),
                   master=envstr("REDIS_SENTINEL_MASTER") or None,
                   service_password=envstr("REDIS_SERVICE_PASSWORD") or None,
                   sentinel_password=envstr("REDIS_SENTINEL_PASSWORD") or None)


def from_settings(settings: Any) -> RedisTarget:
    """The target Django's settings describe now (tests may point REDIS_URL elsewhere)."""
    return resolve(url=settings.REDIS_URL, sentinels=tuple(getattr(settings, "REDIS_SENTINELS", ())),
                   master=getattr(settings, "REDIS_SENTINEL_MASTER", None),
                   service_password=getattr(settings, "REDIS_SERVICE_PASSWORD", None),
                   sentinel_password=getattr(settings, "REDIS_SENTINEL_PASSWORD", None))
