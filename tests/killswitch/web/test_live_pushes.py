"""What the Risk page is pushed besides events (issue 14, item 5), through the production
ASGI stack and the real channels_redis layer: a broker run with each order's outcome as
it progresses, the trading processes when one joins, acknowledges or leaves; and a channel
layer whose reads never time out on a healthy, idle server."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels_redis.core import RedisChannelLayer
from django.conf import settings
from killswitch_client import KillSwitch

from brokers import live as broker_live
from brokers.demo import seed_demo_data
from brokers.models import BrokerRun
from brokers.runs import execute_run
from killswitch import services
from tests.killswitch.web.test_consumer import open_socket, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


async def next_of(communicator, kind: str, timeout: float = 10.0) -> dict:
    """The next message of `kind` (other kinds, e.g. pings, are skipped)."""
    async def wait():
        while True:
            message = await communicator.receive_json_from(timeout=timeout)
            if message["kind"] == kind:
                return message["payload"]
    return await asyncio.wait_for(wait(), timeout)


async def test_a_broker_run_is_pushed_with_each_orders_outcome(viewer, trader):
    await sync_to_async(seed_demo_data)()
    broker_live.watcher.pushed.clear()
    communicator, connected = await open_socket(await session_cookie(viewer))
    assert connected
    await communicator.receive_json_from(timeout=5)  # hello
    result = await sync_to_async(services.activate)(scope="account:DU111111", level="halt", reason="runaway",
                                                     actor=trader, source="api")
    run = await sync_to_async(BrokerRun.objects.get)(event_seq=result.seq)
    assert await sync_to_async(broker_live.push_changed_runs)() == 1  # the new run, pending
    pending = (await next_of(communicator, "run"))["run"]
    assert (pending["id"], pending["state"], pending["actions_total"]) == (run.pk, "pending", 0)
    assert await sync_to_async(broker_live.push_changed_runs)() == 0  # nothing changed since

    await sync_to_async(execute_run)(run_id=run.pk)  # a worker does it (UPDATEs, no model signal)
    assert await sync_to_async(broker_live.push_changed_runs)() == 1
    done = (await next_of(communicator, "run"))["run"]
    assert done["id"] == run.pk and done["state"] == "completed"
    assert done["outcomes"] == {"cancelled": 3} and done["actions_total"] == 3
    assert {a["outcome"] for a in done["actions"]} == {"cancelled"}
    assert {a["instrument"]["symbol"] for a in done["actions"]} == {"AAPL", "TSLA", "NVDA"}
    await communicator.disconnect()


async def test_the_heartbeat_pushes_the_runs_that_changed(viewer, trader):
    """The watcher follows the reconciler's heartbeat (connected by the brokers app)."""
    from killswitch.runtime.hooks import heartbeat_sent

    await sync_to_async(seed_demo_data)()
    broker_live.watcher.pushed.clear()
    communicator, _ = await open_socket(await session_cookie(viewer))
    await communicator.receive_json_from(timeout=5)
    result = await sync_to_async(services.activate)(scope="account:DU222222", level="halt", reason="r",
                                                     actor=trader, source="api")
    await sync_to_async(heartbeat_sent.send_robust)(sender=None, version=1)
    assert (await next_of(communicator, "ping")) == {"version": 1}
    run = (await next_of(communicator, "run"))["run"]
    assert run["event_seq"] == result.seq and run["account"] == "DU222222"
    await communicator.disconnect()


async def test_processes_joining_acknowledging_and_leaving_are_pushed(reconciler, redis_client, viewer, trader):
    communicator, _ = await open_socket(await session_cookie(viewer))
    await communicator.receive_json_from(timeout=5)
    client = await sync_to_async(KillSwitch)(settings.REDIS_URL, account="DU111111", strategy="momo",
                                             name="momo-1", exit_on_kill=False, backstop_interval=0.1)
    try:
        joined = await next_of(communicator, "ack")
        assert joined["joined"] == ["momo-1"]
        assert [c["name"] for c in joined["clients"]] == ["momo-1"]
        result = await sync_to_async(services.activate)(scope="account:DU111111", level="halt", reason="r",
                                                         actor=trader, source="api")
        while True:  # registrations refresh as well; wait for the acknowledgement of this version
            payload = await next_of(communicator, "ack")
            row = payload["clients"][0]
            if row["applied_version"] == result.version:
                break
        assert row["level_seen"] == "halt" and row["acked_at"]
    finally:
        await sync_to_async(client.close)()
    while True:
        payload = await next_of(communicator, "ack")
        if payload["left"]:
            break
    assert payload["left"] == ["momo-1"] and payload["clients"] == []
    await communicator.disconnect()


def test_the_channel_layer_never_times_out_its_own_blocking_read():
    host = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
    assert host["socket_timeout"] is None or host["socket_timeout"] > RedisChannelLayer.brpop_timeout * 2


async def test_an_idle_socket_stays_open_past_the_redis_read_timeout(viewer):
    """Nothing pushed for 12 s (more than two of channels_redis' 5 s blocking reads): the
    socket is still open and still delivers (redis-py's default 5 s socket_timeout closed it)."""
    from killswitch.web import live

    communicator, _ = await open_socket(await session_cookie(viewer))
    await communicator.receive_json_from(timeout=5)
    await asyncio.sleep(12)
    assert await communicator.receive_nothing(timeout=0.1)
    await sync_to_async(live.push)("ping", {"id": "after-idle"})
    assert (await next_of(communicator, "ping")) == {"id": "after-idle"}
    await communicator.disconnect()
