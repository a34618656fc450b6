"""The Risk page WebSocket through the production ASGI stack (origin check, session
auth, consumer) with the real channels_redis layer."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from killswitch import services
from killswitch.web import live
from riskcontrol.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost:8000")


@database_sync_to_async  # closes its thread's connection afterwards (PostgreSQL test teardown)
def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def open_socket(cookie: bytes | None = None, origin: tuple[bytes, bytes] = ORIGIN):
    headers = [origin, (b"host", b"localhost:8000")]
    if cookie:
        headers.append((b"cookie", cookie))
    communicator = WebsocketCommunicator(application, "/ws/risk/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    return communicator, connected


async def test_unauthenticated_connection_is_refused():
    communicator, connected = await open_socket()
    assert not connected
    await communicator.disconnect()


async def test_user_without_view_permission_is_refused(nobody):
    communicator, connected = await open_socket(await session_cookie(nobody))
    assert not connected
    await communicator.disconnect()


async def test_foreign_origin_is_refused_even_with_a_valid_session(viewer):
    cookie = await session_cookie(viewer)
    communicator, connected = await open_socket(cookie, origin=(b"origin", b"http://evil.example"))
    assert not connected
    await communicator.disconnect()


async def test_viewer_connects_and_gets_events_in_commit_order(viewer, trader, risk_officer, set_policy):
    set_policy(cooldown_minutes=0)
    communicator, connected = await open_socket(await session_cookie(viewer))
    assert connected
    hello = await communicator.receive_json_from(timeout=5)
    assert hello["kind"] == "hello" and hello["payload"]["user"] == "vera_viewer"

    @database_sync_to_async
    def act():
        services.activate(scope="global", level="pause", reason="one", actor=trader, source="api")
        services.activate(scope="global", level="halt", reason="two", actor=trader, source="cli")
        try:
            services.deactivate(scope="global", actor=trader, source="api")  # refused: not a risk officer
        except services.PermissionRefused:
            pass
        services.activate(scope="account:DU9", level="kill", reason="three", actor=trader, source="api")
        services.deactivate(scope="global", actor=risk_officer, source="api", reason="all clear")

    await act()
    received = [await communicator.receive_json_from(timeout=5) for _ in range(5)]
    assert [m["kind"] for m in received] == ["event"] * 5
    events = [m["payload"]["event"] for m in received]
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert [(e["action"], e["outcome"], e["new_level"]) for e in events] == [
        ("activate", "applied", "pause"), ("activate", "applied", "halt"), ("refused", "refused", "halt"),
        ("activate", "applied", "kill"), ("deactivate", "applied", "running"),
    ]
    # A change carries every scope's new state, so the page redraws without a round trip.
    last = received[-1]["payload"]
    assert last["changed"] is True
    assert {s["scope"]: s["level"] for s in last["scopes"]} == {"global": "running", "account:DU9": "kill"}
    assert "scopes" not in received[2]["payload"]  # a refusal changes no level
    await communicator.disconnect()


async def test_run_and_ack_pushes_reach_the_page_and_page_messages_change_nothing(viewer):
    communicator, connected = await open_socket(await session_cookie(viewer))
    assert connected
    await communicator.receive_json_from(timeout=5)  # hello
    await sync_to_async(live.push)("run", {"run_id": 7, "state": "cancelling"})
    await sync_to_async(live.push)("ack", {"client": "loop-1", "version": 3})
    assert (await communicator.receive_json_from(timeout=5))["payload"] == {"run_id": 7, "state": "cancelling"}
    assert (await communicator.receive_json_from(timeout=5))["kind"] == "ack"
    await communicator.send_to(text_data='{"type": "activate", "scope": "global"}')
    assert (await communicator.receive_json_from(timeout=5))["kind"] == "error"
    await communicator.send_to(text_data="not json")
    assert (await communicator.receive_json_from(timeout=5))["payload"]["error"] == "not JSON"
    await communicator.send_to(text_data='{"type": "ping"}')
    assert (await communicator.receive_json_from(timeout=5))["kind"] == "pong"
    await communicator.disconnect()


@pytest.mark.parametrize("how", ["logout", "deactivated", "role removed"])
async def test_a_page_whose_person_lost_access_is_closed_within_seconds(viewer, how):
    """The reconciler's liveness pings make the consumer re-read the session and roles."""
    from django.contrib.auth.models import Group
    from django.contrib.sessions.models import Session

    from killswitch.web.consumers import CLOSED_NO_LONGER_PERMITTED, RECHECK_SECONDS

    cookie = await session_cookie(viewer)
    communicator, connected = await open_socket(cookie)
    assert connected
    await communicator.receive_json_from(timeout=5)  # hello

    @database_sync_to_async
    def take_access_away() -> None:
        if how == "logout":
            Session.objects.all().delete()
        elif how == "deactivated":
            type(viewer).objects.filter(pk=viewer.pk).update(is_active=False)
        else:
            viewer.groups.remove(Group.objects.get(name="viewer"))

    await take_access_away()
    closed = None
    for _ in range(int(RECHECK_SECONDS / 0.25) + 20):
        await sync_to_async(live.push)("ping", {"version": 0})
        output = await communicator.receive_output(timeout=5)
        if output["type"] == "websocket.close":
            closed = output
            break
        await sync_to_async(__import__("time").sleep)(0.25)
    assert closed is not None and closed["code"] == CLOSED_NO_LONGER_PERMITTED
    await communicator.disconnect()


async def test_a_page_that_keeps_its_access_stays_open(viewer):
    from killswitch.web.consumers import RECHECK_SECONDS

    communicator, connected = await open_socket(await session_cookie(viewer))
    assert connected
    await communicator.receive_json_from(timeout=5)
    for _ in range(int(RECHECK_SECONDS / 0.25) + 4):
        await sync_to_async(live.push)("ping", {"version": 0})
        message = await communicator.receive_json_from(timeout=5)
        assert message["kind"] == "ping"
        await sync_to_async(__import__("time").sleep)(0.25)
    await communicator.disconnect()
