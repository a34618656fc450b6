"""How every component connects to Redis (riskcontrol/redis_config.py): through the
sentinels when they are configured, as the service's ACL user when its password is
set, and with a clear error for a setting that cannot work."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured

from riskcontrol import redis_config
from riskcontrol.embedded_redis import EmbeddedRedis
from tests.sentinels import MASTER_NAME, SentinelGroup
from tests.stack import ROOT

# Runs in a fresh process with the deployment's environment: every component as the
# settings wire it (the service's client, Celery's broker, the Channels layer, the
# cache) writes one thing and says who it was connected as.
COMPONENTS = r"""
import asyncio, json, os
import django
django.setup()
from django.core.cache import cache
from channels.layers import get_channel_layer
from killswitch.distribution.connection import get_redis
from riskcontrol.celery import app

out = {}
client = get_redis()
client.set("probe:service", "1")
out["service_user"] = client.acl_whoami()
cache.set("probe", 41)
out["cache"] = cache.incr("probe")
with app.connection_for_write() as conn:
    queue = conn.SimpleQueue("probe-queue")
    queue.put({"hello": "worker"})
    out["celery"] = queue.get(timeout=5).payload
    queue.close()
    conn.default_channel.client.lpush("probe:celery-db", "1")

async def layer():
    channel_layer = get_channel_layer()
    name = await channel_layer.new_channel()
    await channel_layer.send(name, {"type": "probe", "n": 7})
    return (await channel_layer.receive(name))["n"]

out["channels"] = asyncio.run(layer())
print(json.dumps(out))
"""


def _run_components(env: dict[str, str]) -> dict:
    full = {**os.environ, "DJANGO_SETTINGS_MODULE": "riskcontrol.settings", **env}
    for name in ("REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "REDIS_SERVICE_PASSWORD", "REDIS_SENTINEL_PASSWORD",
                 "CELERY_BROKER_URL"):
        if name not in env:
            full.pop(name, None)
    done = subprocess.run([sys.executable, "-c", COMPONENTS], cwd=ROOT, env=full, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def group():
    made = SentinelGroup(password="master-pw", sentinel_password="sentinel-pw",
                         acl={"killswitch": "service-pw"})
    yield made
    made.cleanup()


def test_every_component_goes_through_the_sentinel_as_the_service_user(group):
    found = _run_components({
        # REDIS_URL names a port nothing listens on: the sentinels must win over it.
        "REDIS_URL": "redis://:master-pw@127.0.0.1:1/0",
        "REDIS_SENTINELS": group.sentinels, "REDIS_SENTINEL_MASTER": MASTER_NAME,
        "REDIS_SERVICE_PASSWORD": "service-pw", "REDIS_SENTINEL_PASSWORD": "sentinel-pw",
    })
    assert found == {"service_user": "killswitch", "cache": 42, "celery": {"hello": "worker"}, "channels": 7}
    assert group.master_client().get("probe:service") == "1"  # database 0: the kill switch's keys
    assert group.master_client(db=1).llen("probe:celery-db") == 1  # Celery's broker
    assert group.master_client(db=3).get("killswitch:1:probe") == "42"  # the shared cache


def test_without_the_service_password_the_url_credentials_are_used(group):
    found = _run_components({"REDIS_URL": "redis://:master-pw@127.0.0.1:1/0",
                             "REDIS_SENTINELS": group.sentinels, "REDIS_SENTINEL_MASTER": MASTER_NAME,
                             "REDIS_SENTINEL_PASSWORD": "sentinel-pw"})
    assert found["service_user"] == "default"


def test_a_direct_url_with_the_service_password_connects_as_killswitch():
    server = EmbeddedRedis(password="default-pw").start()
    try:
        with redis.Redis.from_url(server.url) as admin:
            admin.acl_setuser("killswitch", enabled=True, passwords=["+service-pw"], keys=["*"],
                              channels=["*"], commands=["+@all"])
        found = _run_components({"REDIS_URL": server.url, "REDIS_SERVICE_PASSWORD": "service-pw"})
        assert found["service_user"] == "killswitch"
        assert found["cache"] == 42 and found["channels"] == 7
        assert _run_components({"REDIS_URL": server.url})["service_user"] == "default"
    finally:
        server.cleanup()


@pytest.mark.parametrize(("setting", "says"), [
    ({"sentinels": "10.0.0.1"}, "REDIS_SENTINELS='10.0.0.1': '10.0.0.1' is not host:port"),
    ({"sentinels": "10.0.0.1:26379"}, "REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not"),
    ({"master": "killswitch"}, "REDIS_SENTINEL_MASTER='killswitch' is set but REDIS_SENTINELS is not"),
    ({"sentinels": "10.0.0.1:26379", "master": "KillSwitch"}, "expected lower-case letters"),
    ({"url": "unix:///run/redis.sock", "service_password": "x"}, "cannot be combined with a unix://"),
])
def test_a_setting_that_cannot_work_is_named(setting, says):
    with pytest.raises(ImproperlyConfigured, match=says.replace("(", r"\(")):
        redis_config.resolve(url=setting.get("url", "redis://localhost:6379/0"),
                             sentinels=redis_config.parse_sentinels(setting.get("sentinels")),
                             master=setting.get("master"), service_password=setting.get("service_password"))


def test_ipv6_sentinels_and_descriptions_without_passwords():
    target = redis_config.resolve(url="redis://:secret@h:6379/0", sentinels=redis_config.parse_sentinels(
        "[::1]:26379,10.0.0.2:26380"), master="ks", service_password="also-secret")
    assert target.sentinels == (("::1", 26379), ("10.0.0.2", 26380))
    assert "secret" not in target.describe() and "killswitch" in target.describe()
    url, options = target.celery_broker()
    assert url == ("sentinel://killswitch:also-secret@[::1]:26379/1;"
                   "sentinel://killswitch:also-secret@10.0.0.2:26380/1")
    assert options["master_name"] == "ks"


async def test_a_channel_layer_consumer_survives_waiting_longer_than_five_seconds():
    """channels_redis waits for a message in 5 s blocking reads; with redis-py 8's default
    5 s socket timeout the read itself would time out and the consumer would crash. A
    Risk page open on a quiet day waits far longer than that between events."""
    import asyncio

    from channels_redis.core import RedisChannelLayer
    from django.conf import settings

    # A layer of its own with the configured hosts (the process-wide one may hold
    # connections of another event loop from earlier tests).
    layer = RedisChannelLayer(**settings.CHANNEL_LAYERS["default"]["CONFIG"])
    name = await layer.new_channel()

    async def later() -> None:
        await asyncio.sleep(6.5)  # longer than one blocking read plus the socket timeout
        await layer.send(name, {"type": "event", "n": 1})

    sender = asyncio.create_task(later())
    message = await asyncio.wait_for(layer.receive(name), timeout=30)
    await sender
    assert message["n"] == 1
    await layer.close_pools()
