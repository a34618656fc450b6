"""The real python-telegram-bot against the fake: commands, replies, offsets across
restarts, stale queued commands, inline keyboards and callback queries."""

from __future__ import annotations

import datetime as dt

import pytest
from telegram import Bot, BotCommand
from telegram.error import InvalidToken

from tests.fake_telegram import FakeBotApi
from tests.fake_telegram.conftest import DESK_GROUP, RISK_OFFICER, TRADER
from tests.fake_telegram.harness import application, polling
from tests.fake_telegram.sample_bot import CONFIRM, SampleBot


def started(api: FakeBotApi, bot: SampleBot, **options):
    return polling(api, app=bot.install(application(api)), **options)


async def test_ptb_reads_getme_and_reports_a_rejected_token(api):
    async with Bot(api.token, base_url=api.base_url, base_file_url=api.base_file_url) as bot:
        assert bot.username == "killswitch_test_bot"
        assert (await bot.get_me()).id == 123456789
    with pytest.raises(InvalidToken, match="was rejected by the server"):
        await Bot("123456789:someone-elses-token", base_url=api.base_url).initialize()
    # base_url must be "{TELEGRAM_API_URL}/bot" exactly: PTB appends the token to it.
    with pytest.raises(InvalidToken):
        await Bot(api.token, base_url=f"{api.base_url}/").initialize()
    assert [r.status for r in api.requests("getMe")] == [200, 200, 401]
    assert api.requests()[-1].method == f"/bot/{api.token}/getMe"  # no route: 404, then InvalidToken


async def test_a_command_is_answered_in_the_chat_it_came_from(api):
    bot = SampleBot()
    async with started(api, bot):
        private = api.send_user_message(TRADER, TRADER, "/status", username="trader1")
        group = api.send_user_message(RISK_OFFICER, DESK_GROUP, "/status@killswitch_test_bot", chat_type="supergroup")
        in_private = await api.wait_for_message_async(TRADER, contains="running")
        in_group = await api.wait_for_message_async(DESK_GROUP, contains="running")
    assert in_private["chat"]["id"] == TRADER and in_group["chat"]["id"] == DESK_GROUP
    assert in_private["from"]["username"] == "killswitch_test_bot"
    assert sorted(u.update_id for u in bot.seen) == [private["update_id"], group["update_id"]]
    assert {u.effective_user.id for u in bot.seen} == {TRADER, RISK_OFFICER}
    polls = api.requests("getUpdates")
    assert {r.params.get("timeout") for r in polls[:-1]} == {1}  # long polls with our small timeout
    assert polls[-1].params["timeout"] == 0  # PTB's last poll at stop only confirms


async def test_a_restarted_bot_gets_what_was_queued_while_it_was_down_and_nothing_it_had_handled(api):
    first = SampleBot()
    async with started(api, first):
        handled = api.send_user_message(TRADER, TRADER, "/status")
        await api.wait_for_message_async(TRADER, contains="running")
    # Stopping sent a last getUpdates whose offset confirms what was fetched.
    assert api.requests("getUpdates")[-1].params == {"offset": handled["update_id"] + 1, "timeout": 0}
    assert api.pending_updates() == []

    ten_minutes_ago = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(minutes=10)
    stale = api.send_user_message(TRADER, TRADER, "/kill", date=ten_minutes_ago)
    while_down = api.send_user_message(RISK_OFFICER, RISK_OFFICER, "/status")
    restarted_at = dt.datetime.now(dt.UTC)
    second = SampleBot()
    mark = api.checkpoint()
    async with started(api, second):
        await api.wait_for_message_async(RISK_OFFICER, contains="running", since=mark)
        await api.wait_for_message_async(TRADER, contains="Kill all trading?", since=mark)
    assert [u.update_id for u in second.seen] == [stale["update_id"], while_down["update_id"]]
    assert handled["update_id"] not in [u.update_id for u in second.seen]
    # Queued commands keep the date they were written: a bot can tell they are stale.
    assert second.seen[0].effective_message.date == ten_minutes_ago
    assert second.seen[1].effective_message.date <= restarted_at


async def test_ptb_confirms_an_update_at_telegram_before_its_handler_has_finished(api):
    bot = SampleBot()
    bot.hold.clear()
    async with started(api, bot):
        update = api.send_user_message(TRADER, TRADER, "/slow")
        await api.wait_for_request_async("getUpdates", lambda r: r.params.get("offset") == update["update_id"] + 1)
        await api.wait_until_async(lambda: bot.seen)
        # The handler is still running, yet Telegram has forgotten the update: a crash
        # now loses the command; it is not delivered again.
        assert api.pending_updates() == []
        assert api.sent_messages(TRADER) == []
        bot.hold.set()
        await api.wait_for_message_async(TRADER, contains="done")


async def test_drop_pending_updates_discards_commands_queued_while_the_bot_was_down(api):
    api.send_user_message(TRADER, TRADER, "/kill")
    bot = SampleBot()
    async with started(api, bot, drop_pending_updates=True):
        assert api.requests("deleteWebhook")[0].params == {"drop_pending_updates": True}
        fresh = api.send_user_message(TRADER, TRADER, "/status")
        await api.wait_for_message_async(TRADER, contains="running")
    assert [u.update_id for u in bot.seen] == [fresh["update_id"]]  # the /kill never arrived
    assert [m["text"] for m in api.sent_messages(TRADER)] == ["Trading is running"]


async def test_inline_keyboard_confirmation_round_trip(api):
    bot = SampleBot()
    async with started(api, bot):
        api.send_user_message(TRADER, TRADER, "/kill", username="trader1")
        prompt = await api.wait_for_message_async(TRADER, contains="Kill all trading?")
        assert prompt["text"] == "Kill all trading? Positions will be closed."  # HTML rendered
        assert prompt["entities"] == [{"type": "bold", "offset": 0, "length": 17}]
        buttons = [b["callback_data"] for b in prompt["reply_markup"]["inline_keyboard"][0]]
        assert buttons == [CONFIRM, "kill:cancel"]
        pressed = api.press_button(TRADER, TRADER, prompt["message_id"], CONFIRM)
        await api.wait_for_message_async(TRADER, contains="KILLED by trader1")
        await api.wait_until_async(api.answered_callbacks)
    [answer] = api.answered_callbacks()
    assert answer["callback_query_id"] == pressed["callback_query"]["id"]
    assert (answer["text"], answer["data"], answer["user_id"]) == ("Kill switch engaged", CONFIRM, TRADER)
    edited = api.message(TRADER, prompt["message_id"])
    assert edited["text"] == "KILLED by trader1" and "reply_markup" not in edited  # buttons gone
    with pytest.raises(ValueError, match="no button"):
        api.press_button(TRADER, TRADER, prompt["message_id"], CONFIRM)  # cannot be pressed twice


async def test_the_command_menu_set_by_the_bot_is_kept(api):
    async with polling(api) as app:
        await app.bot.set_my_commands([BotCommand("status", "Show the switch"), BotCommand("kill", "Kill all trading")])
        assert [c.command for c in await app.bot.get_my_commands()] == ["status", "kill"]
    assert api.commands() == [
        {"command": "status", "description": "Show the switch"},
        {"command": "kill", "description": "Kill all trading"},
    ]
