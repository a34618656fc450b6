"""How a client finds Redis when no URL is given, the running stack's record, and Redis
ACL users -- the environment is the test's own, the servers are real."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import redis
from killswitch_client import KillSwitch
from killswitch_client.config import (
    ConfigError,
    StackRecordError,
    read_stack_record,
    remove_stack_record,
    resolve_target,
    stack_file_path,
    write_stack_record,
)

from riskcontrol.embedded_redis import EmbeddedRedis, free_port
from tests.clients.python.conftest import build
from tests.conftest import wait_for

ALL = ("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "REDIS_URL", "REDIS_HOST", "REDIS_PORT",
       "REDIS_PASSWORD", "REDIS_USERNAME", "KILLSWITCH_STACK_FILE", "KILLSWITCH_MAX_STALE_AFTER")


@pytest.fixture
def env(monkeypatch, tmp_path):
    """A clean environment and a working directory without a stack record."""
    for name in ALL:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def stack(path, url: str, *, pid: int | None = None, client_url: str | None = None) -> None:
    write_stack_record(path, pid=pid or os.getpid(), redis_url=url, client_redis_url=client_url,
                       port=8000, database="sqlite:///db.sqlite3")


def test_resolution_order(env, tmp_path):
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    assert resolve_target().url == "redis://localhost:6379/0"
    stack(tmp_path / "var" / "stack.json", "redis://:svc@127.0.0.1:7001/0",
          client_url="redis://trader:pw@127.0.0.1:7001/0")
    env.chdir(tmp_path / "sub" / "deeper")  # found in a parent directory
    target = resolve_target()
    assert (target.url, target.source) == ("redis://trader:pw@127.0.0.1:7001/0", "stack")
    assert "pw" not in target.describe()
    env.setenv("REDIS_PORT", "7002")
    assert resolve_target().url == "redis://localhost:7002/0"
    env.setenv("REDIS_USERNAME", "trader")
    env.setenv("REDIS_PASSWORD", "p@ss word")
    assert resolve_target().url == "redis://trader:p%40ss%20word@localhost:7002/0"
    env.setenv("REDIS_URL", "redis://127.0.0.1:7003/0")
    assert resolve_target().url == "redis://127.0.0.1:7003/0"
    env.setenv("REDIS_SENTINELS", "10.0.0.5:26379, [::1]:26380")
    env.setenv("REDIS_SENTINEL_MASTER", "killswitch")
    target = resolve_target()
    assert target.sentinels == (("10.0.0.5", 26379), ("::1", 26380)) and target.master == "killswitch"
    assert (target.username, target.password) == ("trader", "p@ss word")
    assert resolve_target("redis://given:1/0").url == "redis://given:1/0"  # an argument wins


@pytest.mark.parametrize(("settings", "message"), [
    ({"REDIS_SENTINELS": "10.0.0.5", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS='10.0.0.5' is invalid"),
    ({"REDIS_SENTINELS": "a:1"}, "REDIS_SENTINEL_MASTER is not"),
    ({"REDIS_PORT": "sixty"}, "REDIS_PORT='sixty' is invalid"),
])
def test_bad_settings_say_what_is_wrong(env, settings, message):
    for name, value in settings.items():
        env.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        resolve_target()


def test_bad_arguments_say_what_is_wrong(env):
    with pytest.raises(ConfigError, match="not both"):
        resolve_target("redis://x:1/0", sentinels=[("a", 1)], sentinel_master="m")
    with pytest.raises(ConfigError, match="go together"):
        resolve_target(sentinels=[("a", 1)])
    with pytest.raises(ConfigError, match=r"expected \(host: str, port: int\)"):
        resolve_target(sentinels=[("a", "26379")], sentinel_master="m")
    with pytest.raises(ConfigError, match="above max_stale_after=5"):
        KillSwitch("redis://127.0.0.1:1/0", stale_after=30, start=False)
    env.setenv("KILLSWITCH_MAX_STALE_AFTER", "forever")
    with pytest.raises(ConfigError, match="KILLSWITCH_MAX_STALE_AFTER='forever' is invalid"):
        KillSwitch("redis://127.0.0.1:1/0", start=False)
    env.setenv("KILLSWITCH_MAX_STALE_AFTER", "30")
    assert KillSwitch("redis://127.0.0.1:1/0", stale_after=30, start=False).max_stale_after == 30


def test_a_dead_stacks_record_is_ignored_with_one_warning(env, tmp_path, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = tmp_path / "elsewhere.json"
    stack(path, "redis://127.0.0.1:7001/0", pid=dead.pid)
    env.setenv("KILLSWITCH_STACK_FILE", str(path))
    with caplog.at_level(logging.WARNING, logger="killswitch_client"):
        assert resolve_target().source == "default"
        assert resolve_target().source == "default"
    warnings = [r.getMessage() for r in caplog.records if "is not running" in r.getMessage()]
    assert len(warnings) == 1 and f"pid {dead.pid}" in warnings[0]


def test_the_stack_record_helpers(tmp_path):
    path = tmp_path / "var" / "stack.json"
    written = write_stack_record(path, pid=os.getpid(), redis_url="redis://127.0.0.1:1/0",
                                 port=8000, database="sqlite:///x")
    assert read_stack_record(path) == written and written.url_for_clients == "redis://127.0.0.1:1/0"
    assert oct(path.stat().st_mode & 0o777) == "0o600"  # URLs may carry passwords
    assert stack_file_path(env={}, cwd=tmp_path) == path
    assert not remove_stack_record(path, pid=os.getpid() + 1)  # not ours: kept
    assert remove_stack_record(path, pid=os.getpid()) and read_stack_record(path) is None
    path.write_text(json.dumps({"pid": "12", "redis_url": "redis://x"}))
    with pytest.raises(StackRecordError, match="field 'pid' is '12'; expected int"):
        read_stack_record(path)


def test_a_client_follows_the_stack_to_its_new_redis(env, tmp_path, flavour):
    """`make run` restarted with its embedded Redis on another port: a client whose URL
    came from the record finds it again by itself."""
    first, second = EmbeddedRedis().start(), EmbeddedRedis(port=free_port())
    path = tmp_path / "var" / "stack.json"
    try:
        from tests.clients.python.conftest import Service

        stack(path, first.url)
        Service(first.url).running()
        client = build(flavour, exit_on_kill=False, backstop_interval=0.1)
        try:
            wait_for(lambda: client.check() == "running")
            first.stop()
            wait_for(lambda: client.cause in ("subscription_lost", "redis_unreachable"))
            second.start()
            stack(path, second.url)
            Service(second.url).running({"global": "pause"})
            wait_for(lambda: client.check() == "pause" and client.cause is None, timeout=10)
        finally:
            client.close()
    finally:
        first.cleanup()
        second.cleanup()


def test_the_trader_acl_user_is_all_a_trading_client_needs(flavour, tmp_path):
    """The Redis user trading hosts get (manage.py killswitch redis-acl): read the contract
    keys, append to killswitch:clients and killswitch:acks, subscribe to the two channels
    -- and the client works with it."""
    from killswitch.distribution import acl

    server = EmbeddedRedis().start()
    try:
        admin = redis.Redis.from_url(server.url, decode_responses=True)
        from tests.clients.python.conftest import Service

        service = Service(server.url)
        service.running()
        acl.apply(admin, {acl.SERVICE: "svc", acl.TRADER: "s3cret", acl.OPERATOR: "op"})
        admin = redis.Redis(host="127.0.0.1", port=server.port, username=acl.SERVICE, password="svc",
                            decode_responses=True)
        service.r = admin
        url = f"redis://trader:s3cret@127.0.0.1:{server.port}/0"
        with pytest.raises(redis.exceptions.NoPermissionError):
            redis.Redis.from_url(url).set("trading_switch", "running")  # cannot lift a halt
        client = build(flavour, url, exit_on_kill=False, backstop_interval=0.1)
        try:
            wait_for(lambda: client.check() == "running" and client.cause is None)
            version = service.publish({"global": "halt"})
            wait_for(lambda: client.check() == "halt" and client.version == version)
            wait_for(lambda: any(f["version"] == str(version) for _, f in admin.xrange("killswitch:acks")))
            assert service.registration(client.identity.client_id)["level"] == "halt"
        finally:
            client.close()
        admin.close()
    finally:
        server.cleanup()
