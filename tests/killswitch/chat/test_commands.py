"""The commands that act at once or only read, for each role, an unlinked sender and
the chats the bot answers in: the real bot (python-telegram-bot) against the fake
Bot API, the real services, database and Redis."""

from __future__ import annotations

import json
import time

import pytest
from killswitch_client.contract import registration_entry

from killswitch import services
from killswitch.distribution.connection import get_redis
from killswitch.domain import KEY_CLIENTS
from killswitch.models import Scope
from tests.killswitch.chat.conftest import (
    DESK,
    NOBODY,
    RISK,
    STRANGER,
    TRADER,
    VIEWER,
    db,
    events,
    say,
    wait_events,
)

pytestmark = pytest.mark.django_db(transaction=True)


async def level_of(label: str) -> str:
    kind, _, key = label.partition(":")
    row = await db(lambda: Scope.objects.filter(kind=kind, key=key).first())
    return row.level if row else "running"


async def test_a_linked_trader_halts_from_chat_and_the_audit_log_names_them(bot, api):
    reply = await say(api, TRADER, "/halt account:DU111111 Market crash, VIX 47")
    [event] = await events(source="telegram")
    assert (event.action, event.outcome, event.actor, event.scope_label, event.new_level, event.reason) == (
        "activate", "applied", "tom_trader", "account:DU111111", "halt", "Market crash, VIX 47")
    assert reply["text"].startswith(f"#{event.seq} account:DU111111 is now halt (was running).")
    assert "Cooldown until" in reply["text"]
    assert await level_of("account:DU111111") == "halt"
    # The answer quotes the command it answers.
    assert reply["reply_to_message"]["text"].startswith("/halt")


async def test_pause_without_a_scope_pauses_everything_at_once(bot, api):
    reply = await say(api, RISK, "/pause VIX spike")
    [event] = await events(source="telegram")
    assert (event.scope_label, event.new_level, event.actor, event.reason) == ("global", "pause", "rita_risk", "VIX spike")
    assert reply["text"].startswith(f"#{event.seq} global is now pause")


async def test_repeating_a_halt_answers_already_there_with_its_own_event(bot, api):
    await say(api, TRADER, "/halt symbol:aapl earnings")
    reply = await say(api, TRADER, "/halt symbol:AAPL earnings again")
    first, second = await events(source="telegram")
    assert second.outcome == "noop"
    assert reply["text"] == f"#{second.seq} symbol:AAPL is already at halt."


@pytest.mark.parametrize("user_id, text, message, action", [
    (VIEWER, "/halt crash", "vera_viewer may not activate the kill switch; the trader role is required.", "refused"),
    (NOBODY, "/pause crash", "nina_nobody may not activate the kill switch; the trader role is required.", "refused"),
    (VIEWER, "/kill crash", "vera_viewer may not activate the kill switch; the trader role is required.", "refused"),
    (VIEWER, "/resume", "vera_viewer may not deactivate the kill switch; the risk_officer role is required.",
     "refused"),
    (NOBODY, "/kill crash", "nina_nobody may not activate the kill switch; the trader role is required.", "refused"),
    (TRADER, "/halt", "A reason is required to activate the kill switch.", "refused"),
    (TRADER, "/halt account: crash", "Invalid scope: scope 'account' needs a key", "refused"),
])
async def test_refusals_are_the_services_own_words_with_their_event(bot, api, user_id, text, message, action):
    reply = await say(api, user_id, text)
    [event] = await events(source="telegram")
    assert event.action == action and event.outcome == "refused"
    assert reply["text"].startswith(f"Refused #{event.seq}: {message}")
    assert message in event.detail
    assert await level_of("global") == "running"


async def test_an_unlinked_sender_is_refused_briefly_and_audited_as_telegram_id(bot, api):
    reply = await say(api, STRANGER, "/halt everything")
    [event] = await events(source="telegram")
    assert (event.action, event.outcome, event.actor, event.actor_user_id) == ("refused", "refused",
                                                                                f"telegram:{STRANGER}", None)
    assert event.requested_level == "halt" and event.reason == "everything"
    assert reply["text"] == (
        f"Refused #{event.seq}: Telegram user {STRANGER} is not linked to a kill switch user, so the bot does "
        f"nothing for them. An administrator links you with: manage.py killswitch telegram link <username> "
        f"{STRANGER}")
    assert await level_of("global") == "running"
    # /start, the first thing Telegram sends, gets the same answer: the id to link.
    start = await say(api, STRANGER, "/start")
    assert f"link <username> {STRANGER}" in start["text"]


async def test_status_lists_scopes_not_running_with_cooldowns_and_late_processes(bot, api, trader, set_policy):
    set_policy(ack_timeout_seconds=0.1)
    now = time.time()
    # A trading process that registered (as the client library does in Redis) and then
    # never acknowledged anything: it is late once a change is older than the timeout.
    get_redis().xadd(KEY_CLIENTS, registration_entry("momo-1@desk:4242", json.dumps({
        "client_id": "momo-1@desk:4242", "name": "momo-1", "host": "desk", "pid": 4242, "account": "DU111111",
        "version": 0, "level": "running", "registered_at": now - 60, "last_seen": now})))
    await db(services.activate, scope="account:DU111111", level="halt", reason="runaway", actor=trader, source="api")
    time.sleep(0.2)
    reply = await say(api, VIEWER, "/status")
    text = reply["text"]
    assert "• account:DU111111: HALT since" in text and 'by tom_trader via api: "runaway"' in text
    assert "cooldown 1 h left" in text or "cooldown 59 min left" in text
    assert "global" not in text.split("\n", 1)[1].split("Trading")[0]  # running scopes are not listed
    assert "Trading processes: 1 connected, 1 late." in text
    assert "• momo-1 (desk:4242) has not acknowledged the change of" in text


async def test_status_says_when_everything_runs(bot, api):
    reply = await say(api, TRADER, "/status")
    assert "Every scope is running." in reply["text"]


async def test_history_shows_the_last_n_events_with_their_numbers(bot, api, trader, set_policy):
    set_policy(cooldown_minutes=0)
    for scope in ("account:A1", "account:A2", "account:A3"):
        await db(services.activate, scope=scope, level="pause", reason=f"drift {scope}", actor=trader, source="cli")
    reply = await say(api, VIEWER, "/history 2")
    lines = reply["text"].splitlines()
    assert lines[0] == "Last 2 audit event(s), newest first:"
    assert lines[1].startswith("#3 ") and "activate/applied account:A3 running→pause tom_trader (cli): drift" in lines[1]
    assert lines[2].startswith("#2 ") and len(lines) == 3
    bad = await say(api, VIEWER, "/history lots")
    assert bad["text"].startswith("/history takes how many events to show, 1 to 50 (got 'lots')")


async def test_runs_shows_the_broker_runs_a_halt_started(bot, api):
    halted = await say(api, TRADER, "/halt account:DU111111 crash")
    [event] = await events(source="telegram", action="activate")
    assert halted["text"].startswith(f"#{event.seq}")
    reply = await say(api, VIEWER, "/runs")
    assert reply["text"].startswith("Latest broker runs, newest first:")
    assert f"(#{event.seq}) switch halt account:DU111111 DU111111 [paper]" in reply["text"]


async def test_clients_lists_connected_processes(bot, api):
    now = time.time()
    get_redis().xadd(KEY_CLIENTS, registration_entry("mr-2@box:7", json.dumps({
        "client_id": "mr-2@box:7", "name": "mr-2", "host": "box", "pid": 7, "strategy": "meanrev", "version": 0,
        "level": "running", "registered_at": now, "last_seen": now})))
    reply = await say(api, VIEWER, "/clients")
    assert reply["text"].startswith("Trading processes: 1 connected, 0 late")
    assert "• mr-2 (box:7) strategy meanrev: sees running, applied v0" in reply["text"]


@pytest.mark.parametrize("user_id, command", [(NOBODY, "/status"), (NOBODY, "/history"), (NOBODY, "/runs"),
                                              (NOBODY, "/clients")])
async def test_reads_need_the_viewer_role(bot, api, user_id, command):
    reply = await say(api, user_id, command)
    [event] = await events(source="telegram")
    assert event.actor == "nina_nobody" and event.outcome == "refused"
    assert reply["text"] == f"Refused #{event.seq}: nina_nobody may not read the kill switch; the viewer role is required."


@pytest.mark.parametrize("user_id, says", [
    (VIEWER, "You are vera_viewer (viewer): you may read."),
    (TRADER, "You are tom_trader (trader): you may read and stop trading; a risk officer resumes."),
    (RISK, "You are rita_risk (risk officer): you may read, stop and resume trading."),
    (NOBODY, "You are nina_nobody (no role)"),
])
async def test_help_tells_each_person_their_role_and_the_commands(bot, api, user_id, says):
    reply = await say(api, user_id, "/help")
    assert reply["text"].startswith(says)
    for command in ("/status", "/pause", "/halt", "/kill", "/resume", "/history", "/runs", "/clients"):
        assert command in reply["text"]


async def test_group_chats_are_answered_only_when_listed(make_bot, api):
    await make_bot().start()  # allowed_chat_ids unset: private chats only
    mark = api.checkpoint()
    api.send_user_message(TRADER, DESK, "/halt crash", chat_type="supergroup")
    await api.wait_until_async(lambda: not api.pending_updates(), timeout=10)
    refused = await wait_events(source="telegram")
    assert refused[0].outcome == "refused" and refused[0].actor == "tom_trader"
    assert "does not answer in chat -1001234567890" in refused[0].detail
    assert api.sent_messages(DESK, since=mark) == []  # silent in a chat it does not serve
    assert await level_of("global") == "running"


async def test_a_listed_group_is_answered_and_acts_as_the_sender(make_bot, api):
    await make_bot(allowed_chat_ids=frozenset({DESK})).start()
    reply = await say(api, TRADER, "/halt@killswitch_test_bot account:DU222222 desk says stop", chat_id=DESK)
    [event] = await events(source="telegram")
    assert event.actor == "tom_trader" and event.new_level == "halt"
    assert reply["text"].startswith(f"#{event.seq} account:DU222222 is now halt")
    # With a list, private chats not on it are not answered either.
    mark = api.checkpoint()
    api.send_user_message(RISK, RISK, "/status")
    await api.wait_until_async(lambda: not api.pending_updates(), timeout=10)
    await wait_events(source="telegram", actor="rita_risk")
    assert api.sent_messages(RISK, since=mark) == []
