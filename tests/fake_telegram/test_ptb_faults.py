"""What the real python-telegram-bot 22 does when Telegram misbehaves, observed against
the fake: flood limits (429), a second poller (409), server errors, an outage, a revoked
token, a failing start and a slow answer. The bot's author builds on these facts."""

from __future__ import annotations

import asyncio
import time

import pytest
from telegram.error import Conflict, InvalidToken, NetworkError, RetryAfter, TimedOut

from tests.fake_telegram import CONFLICT_OTHER_POLLER, FakeBotApi
from tests.fake_telegram.conftest import TRADER
from tests.fake_telegram.harness import application, polling
from tests.fake_telegram.sample_bot import SampleBot


def started(api: FakeBotApi, bot: SampleBot, errors: list | None = None, **options):
    callback = errors.append if errors is not None else None
    return polling(api, app=bot.install(application(api, options.pop("configure", None))), error_callback=callback, **options)


async def assert_answers_status(api: FakeBotApi, timeout: float = 15) -> None:
    """The bot is (again) polling and handling: a new /status gets its reply."""
    mark = api.checkpoint()
    api.send_user_message(TRADER, TRADER, "/status")
    await api.wait_for_message_async(TRADER, contains="running", since=mark, timeout=timeout)


async def test_429_on_getupdates_pauses_polling_for_retry_after_and_skips_the_error_callback(api):
    api.fail_next("getUpdates", 429, retry_after=1)
    errors: list = []
    async with started(api, SampleBot(), errors):
        await assert_answers_status(api)
    limited, retried = api.requests("getUpdates")[:2]
    assert limited.status == 429 and retried.status == 200
    # PTB sleeps retry_after + 0.5 s before polling again, and tells nobody.
    assert retried.started_at - limited.finished_at >= 1.0
    assert errors == []


async def test_429_on_a_reply_goes_to_the_error_handler_and_is_not_retried(api):
    api.fail_next("sendMessage", 429, retry_after=3)
    bot = SampleBot()
    async with started(api, bot):
        api.send_user_message(TRADER, TRADER, "/status")
        await api.wait_until_async(lambda: bot.errors)
        await assert_answers_status(api)  # the next reply goes through
    [error] = bot.errors
    assert isinstance(error, RetryAfter)
    assert error.retry_after == 3  # (int with a PTBDeprecationWarning unless PTB_TIMEDELTA=true)
    assert [r.status for r in api.requests("sendMessage")] == [429, 200]  # one reply lost, none repeated


async def test_409_conflict_goes_to_the_error_callback_and_polling_goes_on(api):
    api.fail_next("getUpdates", 409)
    errors: list = []
    async with started(api, SampleBot(), errors):
        await assert_answers_status(api)
    [conflict] = errors
    assert isinstance(conflict, Conflict) and conflict.message == CONFLICT_OTHER_POLLER
    first, second = api.requests("getUpdates")[:2]
    assert second.started_at - first.finished_at >= 1.0  # PTB backs off 1 s, then 1.5 s, ... up to 30 s


async def test_two_instances_on_one_token_displace_each_other_until_one_stops(api):
    errors_a: list = []
    errors_b: list = []
    async with started(api, SampleBot(), errors_a):
        async with started(api, SampleBot(), errors_b):
            await api.wait_until_async(lambda: errors_a and errors_b, timeout=15)
        b_stopped_at = time.time()
        await assert_answers_status(api)  # the survivor carries on by itself
    assert all(isinstance(e, Conflict) and e.message == CONFLICT_OTHER_POLLER for e in errors_a + errors_b)
    alone = [r for r in api.requests("getUpdates") if r.started_at > b_stopped_at]
    assert alone and all(r.status != 409 for r in alone)  # no conflict once alone


async def test_server_errors_on_getupdates_are_retried_with_backoff_until_telegram_recovers(api):
    api.fail_next("getUpdates", 500)
    api.fail_next("getUpdates", 502)  # nginx's HTML page, not JSON
    errors: list = []
    async with started(api, SampleBot(), errors):
        await assert_answers_status(api)
    assert [type(e) for e in errors] == [NetworkError, NetworkError]
    assert errors[0].message == "Internal Server Error"
    assert errors[1].message.startswith("Bad Gateway (502). Parsing the server response")
    statuses = [r.status for r in api.requests("getUpdates")]
    assert statuses[:3] == [500, 502, 200]


async def test_polling_resumes_by_itself_after_telegram_was_unreachable(api):
    errors: list = []
    async with started(api, SampleBot(), errors):
        await api.wait_for_request_async("getUpdates")
        api.go_down()
        await api.wait_until_async(lambda: len(errors) >= 2)
        mark = api.checkpoint()
        written_meanwhile = api.send_user_message(TRADER, TRADER, "/status")
        api.come_back()
        await api.wait_for_message_async(TRADER, contains="running", since=mark, timeout=20)
    assert all(isinstance(e, NetworkError) for e in errors)
    messages = " ".join(e.message for e in errors)
    assert "RemoteProtocolError" in messages  # the waiting long poll was cut
    assert "ConnectError" in messages  # then connections were refused
    assert api.requests("getUpdates")[0].outcome == "server down"
    assert written_meanwhile["update_id"] not in [u["update_id"] for u in api.pending_updates()]


async def test_a_401_while_polling_ends_polling_for_good(api):
    bot = SampleBot()
    errors: list = []
    seen: dict = {}
    with pytest.raises(InvalidToken):  # raised by Updater.stop(), at the end
        async with started(api, bot, errors) as app:
            api.fail_next("getUpdates", 401)
            await api.wait_for_request_async("getUpdates", lambda r: r.status == 401, timeout=10)
            api.send_user_message(TRADER, TRADER, "/status")
            await asyncio.sleep(2)  # long enough for several polls, were PTB still polling
            seen = {
                "updater running": app.updater.running,
                "replies": api.sent_messages(),
                "last poll": api.requests("getUpdates")[-1].status,
                "unread updates": len(api.pending_updates()),
            }
    # PTB still said it was running, but nobody read the updates any more, and nobody was
    # told: neither the error callback nor the error handlers heard of the 401.
    assert seen == {"updater running": True, "replies": [], "last poll": 401, "unread updates": 1}
    assert errors == [] and bot.errors == []


async def test_a_failing_deletewebhook_at_start_fails_start_polling_unless_bootstrap_retries(api):
    api.fail_next("deleteWebhook", 500)
    with pytest.raises(NetworkError, match="Internal Server Error"):
        async with started(api, SampleBot()):
            pass  # start_polling's bootstrap raised before we got here
    assert api.requests("getUpdates") == []
    api.fail_next("deleteWebhook", 500, times=2)
    async with started(api, SampleBot(), bootstrap_retries=-1):
        await assert_answers_status(api)
    assert [r.status for r in api.requests("deleteWebhook")] == [500, 500, 500, 200]


async def test_a_reply_that_times_out_may_have_been_delivered(api):
    api.slow_next("sendMessage", 2)
    bot = SampleBot()
    async with started(api, bot, configure=lambda b: b.read_timeout(0.5)):
        api.send_user_message(TRADER, TRADER, "/status")
        await api.wait_until_async(lambda: bot.errors)
        assert isinstance(bot.errors[0], TimedOut)
        # The user has the reply although the bot saw a timeout: retrying sends it twice.
        assert [m["text"] for m in api.sent_messages(TRADER)] == ["Trading is running"]
