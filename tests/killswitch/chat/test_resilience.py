"""Stale commands, the bot restarting (queued updates, a crash mid-command), Telegram
down, a second poller (409), flood limits (429 with retry_after) and server errors."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest

from killswitch.domain import KEY_PENDING
from killswitch.models import Scope, TelegramUpdate, UpdateState
from tests.fake_telegram.harness import polling
from tests.fake_telegram.sample_bot import SampleBot
from tests.killswitch.chat.conftest import STRANGER, TRADER, VIEWER, db, events, say, wait_events

pytestmark = pytest.mark.django_db(transaction=True)


async def level_of(label: str) -> str:
    kind, _, key = label.partition(":")
    row = await db(lambda: Scope.objects.filter(kind=kind, key=key).first())
    return row.level if row else "running"


def ago(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)


async def test_a_stale_command_is_not_executed_the_sender_is_told_and_it_is_audited(bot, api):
    reply = await say(api, TRADER, "/halt account:DU111111 crash", date=ago(150))
    [event] = await events(source="telegram")
    assert (event.action, event.outcome, event.actor, event.requested_level, event.scope_label) == (
        "refused", "refused", "tom_trader", "halt", "account:DU111111")
    assert reply["text"].startswith(f"Refused #{event.seq}: This was sent at ")
    assert "reached the bot 2 min 30 s later" in reply["text"] or "reached the bot 2 min 31 s later" in reply["text"]
    assert "Commands older than 60 s are not executed; send it again if it still holds." in reply["text"]
    assert await level_of("account:DU111111") == "running"


async def test_commands_queued_while_the_bot_was_down_are_each_answered_never_silently(make_bot, api):
    # The bot is down: people keep writing.
    old = api.send_user_message(TRADER, TRADER, "/halt crash at the open", date=ago(600))
    fresh = api.send_user_message(TRADER, TRADER, "/pause account:DU222222 drift")
    stranger = api.send_user_message(STRANGER, STRANGER, "/status")
    mark = 0
    await make_bot().start()
    await api.wait_until_async(lambda: len(api.sent_messages(since=mark)) >= 3, timeout=15)
    by_chat = {(m["chat"]["id"], m["reply_to_message"]["message_id"]): m["text"] for m in api.sent_messages(since=mark)}
    stale, applied = await wait_events(source="telegram", actor="tom_trader")
    assert stale.outcome == "refused" and "Commands older than 60 s are not executed" in stale.detail
    assert applied.outcome == "applied" and applied.scope_label == "account:DU222222"
    def answer(update):
        return by_chat[(update["message"]["chat"]["id"], update["message"]["message_id"])]

    assert answer(old).startswith(f"Refused #{stale.seq}: This was sent at")
    assert answer(fresh).startswith(f"#{applied.seq} account:DU222222 is now pause")
    assert "is not linked" in answer(stranger)
    assert await level_of("global") == "running"
    # Each update is on record as handled and confirmed at Telegram.
    await api.wait_until_async(lambda: not api.pending_updates(), timeout=10)
    states = await db(lambda: sorted(TelegramUpdate.objects.values_list("update_id", "state")))
    assert states == [(u["update_id"], UpdateState.DONE) for u in (old, fresh, stranger)]


async def test_a_crash_after_the_halt_committed_is_told_after_restart_and_never_repeated(bot_process, api):
    bot = bot_process().start()
    api.slow_next("sendMessage", 60)  # the answer hangs: the bot dies before it is confirmed
    api.send_user_message(TRADER, TRADER, "/halt crash")
    await api.wait_for_request_async("sendMessage", timeout=20)
    await api.wait_until_async(lambda: _state_of_last() == UpdateState.ACTED, timeout=20)
    bot.kill()
    [halt] = await events(source="telegram")
    mark = api.checkpoint()
    await asyncio.to_thread(bot_process().start)
    told = await api.wait_for_message_async(TRADER, contains="After a restart", since=mark, timeout=30)
    assert told["text"] == (f"After a restart of the bot, the answer to “/halt crash” (sent "
                            f"{told['text'].split('(sent ')[1].split(')')[0]}):\n#{halt.seq} global is now halt "
                            f"(was running). {halt_cooldown_text(told['text'])}")
    # Telegram gave the update again (it was never confirmed): it is not acted on twice.
    await api.wait_until_async(lambda: not api.pending_updates(), timeout=20)
    assert [e.seq for e in await events(source="telegram")] == [halt.seq]
    assert await level_of("global") == "halt"


def halt_cooldown_text(text: str) -> str:
    return "Cooldown until" + text.split("Cooldown until", 1)[1]


def _state_of_last() -> str | None:
    row = TelegramUpdate.objects.order_by("-id").first()
    return row.state if row else None


async def test_a_command_cut_short_before_its_service_call_is_refused_and_told_on_restart(make_bot, api, trader):
    # What a crash leaves when the process died inside the service call of a /halt that
    # committed nothing: the row in `acting`, no event.
    update = api.send_user_message(TRADER, TRADER, "/halt account:DU111111 crash")
    await db(lambda: TelegramUpdate.objects.create(
        bot_id=int(api.token.split(":")[0]), update_id=update["update_id"], chat_id=TRADER, telegram_user_id=TRADER,
        message_id=update["message"]["message_id"], text="/halt account:DU111111 crash", state=UpdateState.ACTING,
        actor_user_id=trader.pk, seq_before=0))
    await make_bot().start()
    told = await api.wait_for_message_async(TRADER, contains="restarted", timeout=15)
    [refused] = await events(source="telegram")
    assert (refused.outcome, refused.actor, refused.requested_level, refused.scope_label) == (
        "refused", "tom_trader", "halt", "account:DU111111")
    assert told["text"].startswith(f"Refused #{refused.seq}: the bot restarted before it carried out "
                                   "“/halt account:DU111111 crash”")
    await api.wait_until_async(lambda: not api.pending_updates(), timeout=10)
    assert await level_of("account:DU111111") == "running"  # not executed late
    assert len(api.sent_messages(TRADER)) == 1  # the redelivered update was not handled again


async def test_telegram_down_then_back_the_bot_polls_again_and_answers(bot, api, caplog):
    await say(api, VIEWER, "/status")
    api.go_down()
    await api.wait_until_async(lambda: any("getUpdates failed" in r.getMessage() for r in caplog.records), timeout=10)
    mark = api.checkpoint()
    api.send_user_message(TRADER, TRADER, "/halt written while Telegram was unreachable")
    api.come_back()
    reply = await api.wait_for_message_async(TRADER, since=mark, timeout=40)
    [event] = await events(source="telegram", action="activate")
    assert reply["text"].startswith(f"#{event.seq} global is now halt")


async def test_a_409_from_another_poller_is_raised_as_an_alert_and_polling_goes_on(bot, api):
    errors: list = []
    async with polling(api, *SampleBot().handlers(), error_callback=errors.append):  # a stray instance
        await api.wait_until_async(lambda: any(r.status == 409 for r in api.requests("getUpdates")), timeout=20)
        [alert] = await wait_events(action="alert", timeout=20)
    assert alert.actor == "system:telegram-bot" and "409 Conflict, another process is polling" in alert.detail
    reply = await say(api, VIEWER, "/status", timeout=40)  # ours carries on once alone
    assert reply["text"].startswith("Kill switch status")
    assert len(await events(action="alert")) == 1  # one alert per episode, not one per poll


async def test_a_second_instance_waits_for_the_lease_and_takes_over_when_the_first_stops(make_bot, api):
    first = make_bot()
    await first.start()
    second = make_bot()
    await second.start(wait=False)
    await say(api, VIEWER, "/status")
    await asyncio.sleep(1)  # several poll rounds of the first; the second must still be waiting
    assert not second.bot.poller.polling.is_set()
    assert all(r.status != 409 for r in api.requests("getUpdates"))
    await first.stop()
    await second.wait_polling(timeout=20)
    reply = await say(api, TRADER, "/halt handed over", timeout=20)
    [event] = await events(source="telegram", action="activate")
    assert reply["text"].startswith(f"#{event.seq} global is now halt")


async def test_a_429_on_a_reply_waits_retry_after_and_the_reply_arrives(bot, api):
    api.fail_next("sendMessage", 429, retry_after=1)
    reply = await say(api, TRADER, "/halt flood", timeout=15)
    [event] = await events(source="telegram")
    assert reply["text"].startswith(f"#{event.seq} global is now halt")
    limited, sent = api.requests("sendMessage")[:2]
    assert (limited.status, sent.status) == (429, 200)
    assert sent.started_at - limited.finished_at >= 1.0  # it waited as Telegram asked


async def test_a_429_on_getupdates_waits_retry_after(bot, api):
    before = len(api.requests("getUpdates"))
    api.fail_next("getUpdates", 429, retry_after=1)
    await api.wait_for_request_async("getUpdates", lambda r: r.status == 429, timeout=10)
    reply = await say(api, VIEWER, "/status", timeout=15)
    assert reply["text"].startswith("Kill switch status")
    later = api.requests("getUpdates")[before:]
    limited = next(i for i, r in enumerate(later) if r.status == 429)
    assert later[limited + 1].started_at - later[limited].finished_at >= 1.0


async def test_server_errors_are_retried_on_polls_and_on_replies(bot, api):
    api.fail_next("getUpdates", 502)
    api.fail_next("sendMessage", 500)
    await api.wait_for_request_async("getUpdates", lambda r: r.status == 502, timeout=10)
    reply = await say(api, TRADER, "/halt through the errors", timeout=20)
    [event] = await events(source="telegram")
    assert reply["text"].startswith(f"#{event.seq} global is now halt")
    assert [r.status for r in api.requests("sendMessage")] == [500, 200]


async def test_a_revoked_token_while_polling_raises_an_alert_and_the_bot_stays_up(bot, api):
    api.fail_next("getUpdates", 401)
    [alert] = await wait_events(action="alert", timeout=20)
    assert "Telegram refused the token while polling" in alert.detail
    assert not bot.task.done()


async def test_a_token_telegram_refuses_stops_the_bot_at_start_with_a_clear_message(api, people, redis_client, tg_config):
    from killswitch.chat.bot import BotConfigError, KillSwitchBot
    from killswitch.notifications.telegram import BotApi

    wrong = KillSwitchBot(BotApi(api.api_url, "123456789:not-the-token"), tg_config)
    with pytest.raises(BotConfigError, match="Telegram refused the bot token"):
        await wrong.run(asyncio.Event())


async def test_an_update_is_confirmed_at_telegram_only_after_it_was_answered(bot, api):
    api.slow_next("sendMessage", 1.5)  # a slow answer: PTB's own Updater would confirm meanwhile
    update = api.send_user_message(TRADER, TRADER, "/halt slow line")
    answered = await api.wait_for_request_async("sendMessage", timeout=15)
    confirming = await api.wait_for_request_async(
        "getUpdates", lambda r: int(r.params.get("offset") or 0) > update["update_id"], timeout=15)
    assert confirming.started_at >= answered.finished_at
    [event] = await events(source="telegram")
    assert event.new_level == "halt"


async def test_with_the_database_unreachable_a_command_is_refused_and_kept_for_the_audit_log(
        bot_process, api, redis_client, tmp_path):
    # A database file that cannot be opened: every query of the bot fails, as in an outage.
    unreachable = f"sqlite:///{tmp_path}/no/such/dir/db.sqlite3"
    await asyncio.to_thread(bot_process(env={"DATABASE_URL": unreachable}).start)
    reply = await say(api, TRADER, "/halt account:DU111111 crash", timeout=20)
    assert reply["text"].startswith("The kill switch database is unavailable, so your command cannot be checked: "
                                    "nothing was changed. On the server, `manage.py killswitch activate`")
    [kept] = [json.loads(p) for p in redis_client.lrange(KEY_PENDING, 0, -1)]
    assert (kept["kind"], kept["actor"], kept["source"], kept["scope"], kept["level"]) == (
        "refusal", f"telegram:{TRADER}", "telegram", "account:DU111111", "halt")
    assert await level_of("account:DU111111") == "running"
