"""Redis users: the trading hosts' user cannot steer the switch; the service and a
real trading client still work with theirs (on the embedded Redis 6.2 and, where one
is installed, a Redis 7 that has read-only key selectors)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import redis

from killswitch import domain as L
from killswitch.distribution import acl
from killswitch.distribution import publish as P
from riskcontrol.embedded_redis import EmbeddedRedis, server_binary

SECRETS = {acl.SERVICE: "service-secret", acl.TRADER: "trader-secret", acl.OPERATOR: "operator-secret"}


def _binaries() -> list:
    found = [pytest.param(server_binary(), id="redis-6.2-embedded")]
    system = shutil.which("redis-server")
    if system:
        version = subprocess.run([system, "--version"], capture_output=True, text=True).stdout
        if "v=7" in version or "v=8" in version:
            found.append(pytest.param(system, id="redis-7"))
    return found


@pytest.fixture(params=_binaries())
def users(request):
    """A Redis with the state published by the service, then the users applied."""
    server = EmbeddedRedis(binary=request.param).start()
    admin = redis.Redis.from_url(server.url, decode_responses=True)
    P.publish_state(P.Snapshot(3, {"global": "halt"}, {"global": {"level": "halt", "reason": "crash"}}),
                    client=admin, force=True)
    P.publish_heartbeat(3, stale_after=5, client=admin)
    admin.lpush(L.KEY_LOG, "{}")
    rules = acl.apply(admin, SECRETS)
    yield server, rules
    server.cleanup()


def _as(server, user) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, username=user, password=SECRETS[user],
                       decode_responses=True, socket_timeout=2)


WRITES_ON_STATE = [
    ("SET", L.KEY_GLOBAL, "running"), ("SET", L.KEY_HEARTBEAT, "{}"), ("DEL", L.KEY_STATE),
    ("HSET", L.KEY_STATE, "global", "running"), ("HSET", L.KEY_STATE, "version", "99999999999"),
    ("HSET", L.KEY_SCOPES, "global", "{}"), ("LPUSH", L.KEY_LOG, "{}"), ("RPUSH", L.KEY_PENDING, "{}"),
    ("PUBLISH", L.CHANNEL, '{"type": "state", "levels": {"global": "running"}}'), ("FLUSHALL",),
    ("XADD", L.KEY_STATE, "*", "a", "b"), ("XADD", L.KEY_GLOBAL, "*", "a", "b"),
    ("XADD", L.KEY_PENDING, "*", "a", "b"), ("EVAL", "return redis.call('SET', KEYS[1], 'running')", "1",
                                              L.KEY_GLOBAL),
]


def test_the_trader_user_cannot_write_the_state_the_heartbeat_the_channel_or_the_outage_queue(users):
    server, rules = users
    trader = _as(server, acl.TRADER)
    admin = _as(server, acl.SERVICE)
    before = (admin.get(L.KEY_GLOBAL), admin.hgetall(L.KEY_STATE), admin.get(L.KEY_HEARTBEAT))
    for command in WRITES_ON_STATE:
        with pytest.raises(redis.ResponseError) as refused:
            trader.execute_command(*command)
        wrongtype_allowed = not rules.exact and command[0] == "XADD" and command[1] != L.KEY_PENDING
        assert isinstance(refused.value, redis.exceptions.NoPermissionError) or (
            wrongtype_allowed and "WRONGTYPE" in str(refused.value)), (command, refused.value)
    assert (admin.get(L.KEY_GLOBAL), admin.hgetall(L.KEY_STATE), admin.get(L.KEY_HEARTBEAT)) == before
    assert not admin.exists(L.KEY_PENDING)
    # What it may do: read the state and append to its two streams.
    assert trader.get(L.KEY_GLOBAL) == "halt" and trader.hget(L.KEY_STATE, "global") == "halt"
    trader.xadd(L.KEY_ACKS, {"client_id": "h:1:a", "version": "3"})
    trader.xadd(L.KEY_CLIENTS, {"client_id": "h:1:a", "registration": json.dumps({"client_id": "h:1:a"})})


def test_the_trader_user_subscribes_only_to_the_updates_and_keyspace_channels(users):
    server, _ = users
    pubsub = _as(server, acl.TRADER).pubsub()
    pubsub.subscribe(L.CHANNEL, acl.KEYSPACE_CHANNEL)
    pubsub.subscribe("some-other-channel")
    with pytest.raises(redis.exceptions.NoPermissionError):
        for _ in range(5):
            pubsub.get_message(timeout=0.2)
    pubsub.close()


def test_the_operator_may_set_trading_switch_as_in_the_seed_and_nothing_else(users):
    server, _ = users
    operator = _as(server, acl.OPERATOR)
    assert operator.get(L.KEY_GLOBAL) == "halt" and operator.lrange(L.KEY_LOG, 0, 0) == ["{}"]
    operator.set(L.KEY_GLOBAL, "kill")
    for command in (("SET", L.KEY_HEARTBEAT, "{}"), ("HSET", L.KEY_STATE, "global", "running"),
                    ("RPUSH", L.KEY_PENDING, "{}"), ("PUBLISH", L.CHANNEL, "x")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            operator.execute_command(*command)


def test_nobody_connects_without_a_user(users):
    server, _ = users
    with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
        redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=2).ping()


def test_the_service_user_can_do_what_the_service_does(users):
    server, _ = users
    service = _as(server, acl.SERVICE)
    assert P.publish_state(P.Snapshot(4, {"global": "kill"}), client=service)
    P.publish_heartbeat(4, stale_after=5, client=service)
    service.rpush(L.KEY_PENDING, "{}")
    assert service.hget(L.KEY_STATE, "version") == "4"
