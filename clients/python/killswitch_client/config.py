"""Where the client finds Redis, and the running stack's record (`var/stack.json`).

With no URL and no sentinels given, `resolve_target()` looks, in this order, at:

1. `REDIS_SENTINELS` (`host:port[,host:port]`) with `REDIS_SENTINEL_MASTER`;
2. `REDIS_URL`;
3. the seed's `REDIS_HOST` / `REDIS_PORT` / `REDIS_PASSWORD` (when any is set);
4. the running stack's record, written by `make run`: `KILLSWITCH_STACK_FILE`, else
   `var/stack.json` in the current directory or one of its parents; its
   `client_redis_url` (the trading-process credentials) when set, else `redis_url`.
   A record whose pid is not alive is ignored, with one warning;
5. `redis://localhost:6379/0`.

`REDIS_USERNAME` pairs with `REDIS_PASSWORD` (Redis ACL users) for 3. and for the
sentinel-managed master; URLs carry their own `username:password@`.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

logger = logging.getLogger("killswitch_client")

DEFAULT_URL = "redis://localhost:6379/0"
STACK_FILE_ENV = "KILLSWITCH_STACK_FILE"
STACK_FILE = Path("var") / "stack.json"
MAX_STALE_ENV = "KILLSWITCH_MAX_STALE_AFTER"


class ConfigError(ValueError):
    """A setting (argument or environment variable) that cannot be used; the message
    names it, the value and what is expected."""


class StackRecordError(ValueError):
    """A stack record file that is not the JSON shape `make run` writes."""


@dataclass(frozen=True)
class RedisTarget:
    """Where to connect: a URL, or sentinels and a master name. `source` says which
    setting named it; a target from the stack record is re-resolved when Redis is lost."""

    url: str | None = None
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str | None = None
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    source: str = "argument"
    stack_file: Path | None = field(default=None, compare=False)

    def describe(self) -> str:
        """Where, without secrets."""
        if self.sentinels:
            hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            return f"sentinel master {self.master!r} via {hosts} (from {self.source})"
        url = self.url or ""
        if "@" in url:
            scheme, _, rest = url.partition("://")
            url = f"{scheme}://***@{rest.rpartition('@')[2]}"
        return f"{url} (from {self.source})"


# --- the stack record ---------------------------------------------------------------------


@dataclass(frozen=True)
class StackRecord:
    """What `make run` records about the running stack, in `var/stack.json`."""

    pid: int
    redis_url: str
    client_redis_url: str | None
    port: int
    database: str
    started_at: str

    @property
    def url_for_clients(self) -> str:
        """The URL a trading process uses: its own credentials when the stack has them."""
        return self.client_redis_url or self.redis_url


def stack_file_path(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path | None:
    """The stack record's path: KILLSWITCH_STACK_FILE, else the first `var/stack.json`
    in `cwd` (default: the current directory) or its parents that exists; None if none."""
    env = os.environ if env is None else env
    if env.get(STACK_FILE_ENV):
        return Path(env[STACK_FILE_ENV])
    here = (cwd or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / STACK_FILE
        if candidate.is_file():
            return candidate
    return None


def read_stack_record(path: Path | str | None = None) -> StackRecord | None:
    """The record at `path` (default: `stack_file_path()`), or None when there is no file.

    Raises StackRecordError naming the file and the field when it is not the shape
    `{"pid": int, "redis_url": str, "client_redis_url": str|null, "port": int,
    "database": str, "started_at": str}`. Does not check that the pid is alive
    (`pid_alive()` does).
    """
    path = Path(path) if path is not None else stack_file_path()
    if path is None:
        return None
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StackRecordError(f"{path}: cannot be read ({exc})") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise StackRecordError(f"{path}: not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise StackRecordError(f"{path}: expected a JSON object, found {type(data).__name__}")
    expected = {"pid": int, "redis_url": str, "client_redis_url": (str, type(None)), "port": int,
                "database": str, "started_at": str}
    for name, kind in expected.items():
        value = data.get(name)
        if name not in data or isinstance(value, bool) or not isinstance(value, kind):
            raise StackRecordError(f"{path}: field {name!r} is {value!r}; expected "
                                   f"{'a string or null' if name == 'client_redis_url' else kind.__name__}")
    if not data["redis_url"]:
        raise StackRecordError(f"{path}: field 'redis_url' is empty; expected a redis:// URL")
    return StackRecord(**{name: data[name] for name in expected})


def write_stack_record(path: Path | str, *, pid: int, redis_url: str, port: int, database: str,
                       client_redis_url: str | None = None, started_at: str | None = None) -> StackRecord:
    """Write the record atomically (a reader never sees half a file), mode 0600 since the
    URLs may carry passwords; creates the folder. Returns what was written."""
    record = StackRecord(pid=pid, redis_url=redis_url, client_redis_url=client_redis_url, port=port,
                         database=database,
                         started_at=started_at or datetime.now(UTC).isoformat().replace("+00:00", "Z"))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".stack-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(record), f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return record


def remove_stack_record(path: Path | str, *, pid: int | None = None) -> bool:
    """Delete the record, only if it is `pid`'s (when given): a second `make run` must
    not remove the first one's record. Returns True when a file was removed."""
    path = Path(path)
    if pid is not None:
        try:
            record = read_stack_record(path)
        except StackRecordError:
            record = None
        if record is None or record.pid != pid:
            return False
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists (on this host)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


_warned: set[tuple[str, int]] = set()


def _from_stack(env: Mapping[str, str], cwd: Path | None) -> RedisTarget | None:
    path = stack_file_path(env, cwd)
    if path is None:
        return None
    try:
        record = read_stack_record(path)
    except StackRecordError as exc:
        if (str(path), -1) not in _warned:
            _warned.add((str(path), -1))
            logger.warning("ignoring the stack record: %s", exc)
        return None
    if record is None:
        return None
    if not pid_alive(record.pid):
        if (str(path), record.pid) not in _warned:
            _warned.add((str(path), record.pid))
            logger.warning("ignoring %s: its stack (pid %d) is not running", path, record.pid)
        return None
    return RedisTarget(url=record.url_for_clients, source="stack", stack_file=path)


# --- resolution ---------------------------------------------------------------------------


def parse_sentinels(text: str, *, name: str = "REDIS_SENTINELS") -> tuple[tuple[str, int], ...]:
    """`host:port[,host:port]` (IPv6 as `[::1]:26379`). Raises ConfigError naming `name`."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        host, sep, port = part.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{name}={text!r} is invalid: {part!r} is not host:port; "
                              "expected host:port[,host:port]")
        out.append((host, int(port)))
    if not out:
        raise ConfigError(f"{name}={text!r} is invalid: no sentinel; expected host:port[,host:port]")
    return tuple(out)


def _check_sentinels(sentinels: Sequence[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    out = []
    for entry in sentinels:
        try:
            host, port = entry
        except (TypeError, ValueError):
            raise ConfigError(f"sentinels entry {entry!r} is invalid; expected (host, port)") from None
        if not isinstance(host, str) or not host or isinstance(port, bool) or not isinstance(port, int) \
                or not 0 < port < 65536:
            raise ConfigError(f"sentinels entry {entry!r} is invalid; expected (host: str, port: int)")
        out.append((host, port))
    if not out:
        raise ConfigError("sentinels is empty; expected at least one (host, port)")
    return tuple(out)


def resolve_target(redis_url: str | None = None, *, sentinels: Sequence[tuple[str, int]] | None = None,
                   sentinel_master: str | None = None, env: Mapping[str, str] | None = None,
                   cwd: Path | None = None) -> RedisTarget:
    """Where to connect, from the arguments or, when none is given, the environment and
    the stack record (the order is in this module's docstring).

    Raises ConfigError on contradictory or malformed settings (naming them).
    """
    env = os.environ if env is None else env
    username, password = env.get("REDIS_USERNAME") or None, env.get("REDIS_PASSWORD") or None
    sentinel_password = env.get("REDIS_SENTINEL_PASSWORD") or None
    if sentinels is not None or sentinel_master is not None:
        if redis_url:
            raise ConfigError("give either redis_url or sentinels with sentinel_master, not both")
        if sentinels is None or not sentinel_master:
            raise ConfigError("sentinels and sentinel_master go together; expected both, e.g. "
                              "sentinels=[('10.0.0.5', 26379)], sentinel_master='killswitch'")
        return RedisTarget(sentinels=_check_sentinels(sentinels), master=sentinel_master,
                           username=username, password=password,
                           sentinel_password=sentinel_password, source="argument")
    if redis_url:
        return RedisTarget(url=redis_url, source="argument")
    if env.get("REDIS_SENTINELS"):
        master = env.get("REDIS_SENTINEL_MASTER")
        if not master:
            raise ConfigError("REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not; expected "
                              "the name the sentinels monitor the master under")
        return RedisTarget(sentinels=parse_sentinels(env["REDIS_SENTINELS"]), master=master,
                           username=username, password=password,
                           sentinel_password=sentinel_password, source="REDIS_SENTINELS")
    if env.get("REDIS_URL"):
        return RedisTarget(url=env["REDIS_URL"], source="REDIS_URL")
    if any(env.get(name) for name in ("REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD")):
        host = env.get("REDIS_HOST") or "localhost"
        port = env.get("REDIS_PORT") or "6379"
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"REDIS_PORT={port!r} is invalid; expected a port number (1-65535)")
        auth = ""
        if username or password:
            auth = quote(username or "", safe="") + (f":{quote(password, safe='')}" if password else "") + "@"
        return RedisTarget(url=f"redis://{auth}{host}:{port}/0", source="REDIS_HOST")
    stacked = _from_stack(env, cwd)
    if stacked is not None:
        return stacked
    return RedisTarget(url=DEFAULT_URL, source="default")


def max_stale_after_from_env(env: Mapping[str, str] | None = None) -> float | None:
    """KILLSWITCH_MAX_STALE_AFTER as seconds, or None when unset. Raises ConfigError."""
    env = os.environ if env is None else env
    raw = env.get(MAX_STALE_ENV)
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{MAX_STALE_ENV}={raw!r} is invalid; expected a number of seconds > 0")
    return value
