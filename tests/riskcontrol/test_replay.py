"""The status replay (riskcontrol/performance/replay.py) in front of the real Django
handler, with the real Redis the service publishes to: a replayed answer is exactly
Django's, given only to callers Django authorized, and never outlives the state or
its countdowns."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings

from killswitch import domain as L
from killswitch import services
from killswitch.distribution import publish
from killswitch.runtime import clock
from killswitch.services.tokens import issue_token
from riskcontrol.performance.caches import read_auth_cache
from riskcontrol.performance.countdowns import COOLDOWNS_HEADER
from riskcontrol.performance.handler import OneHopASGIHandler
from riskcontrol.performance.replay import (
    FRESH_HEADER,
    VERSION_HEADER,
    StatusReplay,
    _SharedRead,
    connect_signals,
)

pytestmark = pytest.mark.django_db(transaction=True)
PATH = "/api/risk/kill-switch"


class Counting:
    """The Django handler, counting the requests that reached it."""

    def __init__(self) -> None:
        self.django = OneHopASGIHandler()
        self.calls = 0

    async def __call__(self, scope, receive, send) -> None:
        self.calls += 1
        await self.django(scope, receive, send)


async def get(app, path: str = PATH, *, token: str | None = None, query: bytes = b"",
              headers: tuple[tuple[bytes, bytes], ...] = ()) -> tuple[int, dict[bytes, bytes], bytes]:
    sent = [(b"host", b"localhost")]
    if token:
        sent.append((b"authorization", f"Token {token}".encode()))
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query, "root_path": "",
             "headers": [*sent, *headers], "client": ("127.0.0.1", 50000), "server": ("localhost", 80)}
    messages: list[dict] = []
    requested = False

    async def receive():
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)

    async def send(message):
        messages.append(message)

    await asyncio.wait_for(app(scope, receive, send), timeout=30)
    start = next(m for m in messages if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return start["status"], {name.lower(): value for name, value in start["headers"]}, body


@pytest.fixture
def stack(redis_client):
    read_auth_cache.clear()
    connect_signals()
    publish.publish_state(publish.take_snapshot(), force=True)  # as the reconciler keeps Redis
    inner = Counting()
    yield StatusReplay(inner), inner
    read_auth_cache.clear()


@pytest.fixture
def viewer_token(viewer):
    return issue_token(username=viewer.username).key


async def test_a_second_read_is_replayed_exactly_without_django(stack, viewer_token):
    replay, django = stack
    first = await get(replay, token=viewer_token)
    assert first[0] == 200 and django.calls == 1
    assert first[1][VERSION_HEADER.lower().encode()] == b"0"
    assert first[1][FRESH_HEADER.lower().encode()] == b"inf"  # no cooldown anywhere
    second = await get(replay, token=viewer_token)
    assert second == first
    assert django.calls == 1 and replay.replayed == 1
    assert json.loads(second[2])["level"] == L.RUNNING


async def test_a_change_in_this_process_shows_on_the_next_read(stack, viewer_token, trader):
    replay, django = stack
    await get(replay, token=viewer_token)
    await get(replay, token=viewer_token)
    assert replay.replayed == 1
    await sync_to_async(services.activate)(scope="global", level="kill", reason="crash", actor=trader,
                                           source="api")
    status, _, body = await get(replay, token=viewer_token)
    assert status == 200 and json.loads(body)["level"] == L.KILL and django.calls == 2


async def test_a_change_elsewhere_shows_once_redis_has_it_and_never_while_it_differs(
        stack, viewer_token, trader, redis_client):
    replay, django = stack
    await get(replay, token=viewer_token)
    # Another process changed the state: this process saw no signal, Redis has the new version.
    redis_client.hset(L.KEY_STATE, "version", "7")
    await get(replay, token=viewer_token)
    await get(replay, token=viewer_token)
    assert django.calls == 3 and replay.replayed == 0  # Redis' 7 is not the database's 0: ask Django
    redis_client.delete(L.KEY_STATE)  # Redis emptied: unknown, so no replay either
    await get(replay, token=viewer_token)
    assert django.calls == 4 and replay.replayed == 0


async def test_an_answer_read_before_a_change_here_is_never_kept(stack, viewer_token, trader, redis_client):
    replay, django = stack
    changed = False

    async def django_then_a_change(scope, receive, send):
        # Django reads the state (version 0), then this process commits a kill before the
        # answer is kept, and its publish to Redis fails (Redis still says version 0).
        nonlocal changed
        await django(scope, receive, send)
        if not changed:
            changed = True
            await sync_to_async(services.activate)(scope="global", level="kill", reason="crash", actor=trader,
                                                   source="api")
            redis_client.hset(L.KEY_STATE, "version", "0")

    replay.app = django_then_a_change
    assert json.loads((await get(replay, token=viewer_token))[2])["level"] == L.RUNNING
    status, _, body = await get(replay, token=viewer_token)
    assert status == 200 and json.loads(body)["level"] == L.KILL  # the database's, not the old answer
    assert replay.replayed == 0


async def test_many_pollers_share_one_read_of_redis(stack, viewer_token, redis_client):
    replay, django = stack
    await get(replay, token=viewer_token)

    def hgets() -> int:
        return redis_client.info("commandstats").get("cmdstat_hget", {}).get("calls", 0)

    before = hgets()
    answers = await asyncio.gather(*(get(replay, token=viewer_token) for _ in range(100)))
    assert {a[0] for a in answers} == {200} and replay.replayed == 100 and django.calls == 1
    assert hgets() - before < 20  # one read per batch of waiters, not one per request


async def test_after_a_change_the_pollers_wait_for_one_answer_from_django(stack, viewer_token, trader):
    replay, django = stack
    await get(replay, token=viewer_token)
    await sync_to_async(services.activate)(scope="global", level="halt", reason="crash", actor=trader,
                                           source="api")
    answers = await asyncio.gather(*(get(replay, token=viewer_token) for _ in range(50)))
    assert {json.loads(a[2])["level"] for a in answers} == {L.HALT}
    assert django.calls == 2 and replay.replayed == 49  # one went to Django, its answer served the rest


async def test_a_shared_read_is_never_one_that_began_before_the_caller():
    values = iter(range(1, 100))
    reading = asyncio.Event()
    release = asyncio.Event()

    async def read():
        reading.set()
        await release.wait()
        return next(values)

    shared = _SharedRead(read)
    first = asyncio.ensure_future(shared.join())
    await reading.wait()  # read 1 is under way
    second, third = asyncio.ensure_future(shared.join()), asyncio.ensure_future(shared.join())
    await asyncio.sleep(0)
    release.set()
    assert await first == 1
    assert await second == 2 and await third == 2  # the next read, shared by both


async def test_only_callers_django_authorized_get_a_replay(stack, viewer_token, nobody):
    replay, django = stack
    await get(replay, token=viewer_token)
    assert (await get(replay, token="ks_not-a-token"))[0] == 401
    assert (await get(replay))[0] in (401, 403)
    no_role = (await sync_to_async(issue_token)(username=nobody.username)).key
    assert (await get(replay, token=no_role))[0] == 403
    assert (await get(replay, token=no_role))[0] == 403  # Django again: never the kept answer
    assert replay.replayed == 0 and django.calls == 5


async def test_other_forms_of_the_request_go_to_django(stack, viewer_token):
    replay, django = stack
    await get(replay, token=viewer_token)
    await get(replay, token=viewer_token, query=b"format=json")
    await get(replay, token=viewer_token, headers=((b"cookie", b"sessionid=x"),))
    await get(replay, token=viewer_token, headers=((b"x-forwarded-proto", b"https"),))
    status, _, _ = await get(replay, token=viewer_token, headers=((b"accept", b"text/html"),))
    assert status == 406  # Django's content negotiation, not a kept JSON answer
    await get(replay, f"{PATH}/history", token=viewer_token)
    assert replay.replayed == 0 and django.calls == 6


async def test_a_countdown_is_redrawn_exactly_as_django_would_answer(stack, viewer_token, trader, set_policy):
    replay, django = stack
    set_policy(cooldown_minutes=0.05)  # 3 s
    for scope in ("account:DU1", "strategy:momo"):
        await sync_to_async(services.activate)(scope=scope, level="halt", reason="r", actor=trader, source="api")
        clock.advance(seconds=0.4)
    status, headers, body = await get(replay, token=viewer_token)
    fresh = int(headers[FRESH_HEADER.lower().encode()])
    assert status == 200 and 0 <= fresh <= 1000 and django.calls == 1
    assert COOLDOWNS_HEADER.lower().encode() not in headers  # internal: never leaves the server
    for step in (1.0, 0.3, 1.0, 2.0):  # every second ticks; then one countdown ends, then both
        clock.advance(seconds=step)
        replayed = await get(replay, token=viewer_token)
        calls = django.calls
        fresh_from_django = await get(django.django, token=viewer_token)  # Django itself, same moment
        assert replayed[2] == fresh_from_django[2] and django.calls == calls
        assert replayed[1][b"content-length"] == fresh_from_django[1][b"content-length"]
    assert django.calls == 1 and replay.replayed == 4
    ended = [s for s in json.loads(replayed[2])["scopes"] if s["scope"] != "global"]
    assert [(s["cooldown_until"], s["cooldown_remaining_seconds"]) for s in ended] == [(None, 0), (None, 0)]
    before = [s for s in json.loads(body)["scopes"] if s["scope"] != "global"]
    assert all(s["cooldown_remaining_seconds"] > 0 and s["cooldown_until"] for s in before)


async def test_redis_down_means_django_answers_from_the_database(stack, viewer_token, settings):
    replay, django = stack
    await get(replay, token=viewer_token)
    with override_settings(REDIS_URL="redis://127.0.0.1:1/0", REDIS_SENTINELS=()):
        status, _, body = await get(replay, token=viewer_token)
    assert status == 200 and json.loads(body)["level"] == L.RUNNING
    assert replay.replayed == 0 and django.calls == 2


@override_settings(KILLSWITCH_STATUS_REPLAY=False)
async def test_it_can_be_turned_off(stack, viewer_token):
    replay, django = stack
    await get(replay, token=viewer_token)
    await get(replay, token=viewer_token)
    assert replay.replayed == 0 and django.calls == 2
