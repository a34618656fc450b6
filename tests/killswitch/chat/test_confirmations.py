"""/kill and /resume: what will happen first, the act only on the same person's typed
word or button within the timeout; a wrong word, the timeout and another person
confirming are refused and audited."""

from __future__ import annotations

import pytest

from brokers.demo import seed_demo_data
from killswitch import services
from killswitch.models import Scope
from killswitch.runtime import clock
from tests.killswitch.chat.conftest import DESK, RISK, TRADER, db, events, say, wait_events

pytestmark = pytest.mark.django_db(transaction=True)


def buttons(message: dict) -> list[str]:
    rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
    return [button["callback_data"] for row in rows for button in row]


async def edited(api, chat_id: int, message_id: int, contains: str) -> dict:
    """The bot's message once its text contains `contains` (edits follow the replies)."""
    def current():
        message = api.message(chat_id, message_id)
        return message if contains in message.get("text", "") else None
    return await api.wait_until_async(current)


async def level_of(label: str) -> str:
    kind, _, key = label.partition(":")
    row = await db(lambda: Scope.objects.filter(kind=kind, key=key).first())
    return row.level if row else "running"


async def test_kill_first_says_what_will_happen_then_acts_on_the_typed_kill(bot, api):
    await db(seed_demo_data)
    prompt = await say(api, TRADER, "/kill account:DU111111 runaway algo")
    text = prompt["text"]
    assert text.startswith("KILL account:DU111111? Nothing has happened yet.\nLevel: running → kill.")
    assert "• DU111111 AAPL: long 100, closed at market" in text
    assert "• DU111111 TSLA: short 50, closed at market" in text
    assert "DU222222" not in text  # another account is out of scope
    assert "Cooldown: a kill starts one of 60 min" in text
    assert "tom_trader: reply KILL (uppercase) to this message within 1 min" in text
    assert len(buttons(prompt)) == 2
    assert await events(source="telegram") == []  # nothing happened yet
    assert await level_of("account:DU111111") == "running"

    done = await say(api, TRADER, "KILL", contains="#")
    [event] = await events(source="telegram")
    assert (event.action, event.outcome, event.actor, event.new_level, event.reason) == (
        "activate", "applied", "tom_trader", "kill", "runaway algo")
    assert done["text"].startswith(f"#{event.seq} account:DU111111 is now kill (was running).")
    assert await level_of("account:DU111111") == "kill"
    changed = await edited(api, TRADER, prompt["message_id"], "confirmed")
    assert changed["text"].startswith(f"KILL account:DU111111, asked by tom_trader: confirmed. #{event.seq}")
    assert buttons(changed) == []


async def test_the_confirm_button_acts_once_however_often_it_is_pressed(bot, api):
    prompt = await say(api, TRADER, "/kill global flash crash")
    confirm = buttons(prompt)[0]
    mark = api.checkpoint()
    api.press_button(TRADER, TRADER, prompt["message_id"], confirm)
    done = await api.wait_for_message_async(TRADER, contains="is now kill", since=mark)
    # A second tap that raced the first (the keyboard is gone, Telegram still delivers it).
    again = api.checkpoint()
    api.press_button(TRADER, TRADER, prompt["message_id"], confirm, check_keyboard=False)
    late = await api.wait_for_message_async(TRADER, since=again)
    [event] = await events(source="telegram")
    assert done["text"].startswith(f"#{event.seq} global is now kill")
    assert late["text"] == "Nothing more was done: this kill was already confirmed."
    first, second = await api.wait_until_async(lambda: len(api.answered_callbacks()) == 2 and api.answered_callbacks())
    assert first["text"].startswith(f"#{event.seq} global is now kill")
    assert second["text"] == late["text"]


async def test_a_wrong_word_is_refused_audited_and_ends_the_request(bot, api):
    prompt = await say(api, TRADER, "/kill global flash crash")
    reply = await say(api, TRADER, "kill")
    [refused] = await events(source="telegram")
    assert (refused.action, refused.outcome, refused.requested_level, refused.actor) == (
        "refused", "refused", "kill", "tom_trader")
    assert reply["text"] == (f"Refused #{refused.seq}: Not confirmed: you typed “kill”; the kill needs KILL "
                             "(uppercase, exactly). Nothing was done; send /kill again.")
    changed = await edited(api, TRADER, prompt["message_id"], "wrong word")
    assert changed["text"] == (f"KILL global, asked by tom_trader: not confirmed, wrong word (#{refused.seq}). "
                               "Nothing was done.")
    # The right word afterwards does not revive it.
    late = await say(api, TRADER, "KILL")
    assert "already refused" in late["text"]
    assert await level_of("global") == "running"
    assert [e.action for e in await events(source="telegram")] == ["refused", "refused"]


async def test_no_confirmation_within_the_timeout_is_refused_and_audited(make_bot, api):
    await make_bot(confirm_timeout_seconds=1).start()
    prompt = await say(api, TRADER, "/kill account:DU111111 runaway")
    [expired] = await wait_events(source="telegram", timeout=15)
    assert (expired.action, expired.outcome, expired.requested_level, expired.scope_label) == (
        "refused", "refused", "kill", "account:DU111111")
    assert "Not confirmed: KILL was not typed by tom_trader within 1 s of the request. Nothing was done." in expired.detail
    changed = await edited(api, TRADER, prompt["message_id"], "expired")
    assert changed["text"].startswith(f"KILL account:DU111111, asked by tom_trader: expired (#{expired.seq}).")
    assert buttons(changed) == []
    late = await say(api, TRADER, "KILL")
    assert late["text"].startswith("Refused #") and "already expired" in late["text"]
    assert await level_of("account:DU111111") == "running"


async def test_another_person_cannot_confirm_a_kill_by_word_or_button(make_bot, api):
    await make_bot(allowed_chat_ids=frozenset({DESK})).start()
    prompt = await say(api, TRADER, "/kill account:DU111111 runaway", chat_id=DESK)
    # In a group (privacy mode) a confirmation is a reply to the prompt.
    by_word = await say(api, RISK, "KILL", chat_id=DESK, reply_to_message_id=prompt["message_id"])
    api.press_button(RISK, DESK, prompt["message_id"], buttons(prompt)[0])
    await api.wait_until_async(lambda: api.answered_callbacks())
    word_refusal, button_refusal = await wait_events(source="telegram", actor="rita_risk")
    assert by_word["text"] == (f"Refused #{word_refusal.seq}: Only tom_trader, who asked for this kill, can "
                               "confirm it; rita_risk cannot. Send your own /kill to ask for one.")
    [answer] = api.answered_callbacks()
    assert answer["show_alert"] and answer["text"].startswith(f"Refused #{button_refusal.seq}: Only tom_trader")
    assert await level_of("account:DU111111") == "running"
    # The requester still can.
    done = await say(api, TRADER, "KILL", chat_id=DESK, reply_to_message_id=prompt["message_id"], contains="#")
    [applied] = await events(source="telegram", action="activate")
    assert applied.actor == "tom_trader" and done["text"].startswith(f"#{applied.seq} account:DU111111 is now kill")


async def test_resume_in_the_cooldown_shows_the_time_left_and_is_refused_in_the_seeds_words(bot, api, trader):
    await db(seed_demo_data)
    await db(services.activate, scope="account:DU222222", level="halt", reason="crash", actor=trader, source="api")
    prompt = await say(api, RISK, "/resume account:DU222222 checked the fills")
    text = prompt["text"]
    assert text.startswith("RESUME trading on account:DU222222? Nothing has happened yet.\nLevel: halt → running.")
    assert "Cooldown: 1 h left (until" in text or "Cooldown: 59 min left (until" in text
    assert "a resume before then is refused." in text
    assert "• DU222222 MSFT: position long 30" in text and "• DU222222 SPY: position short 20" in text
    reply = await say(api, RISK, "RESUME", contains="Refused")
    [violation] = await events(source="telegram")
    assert (violation.action, violation.actor) == ("cooldown_violation", "rita_risk")
    assert reply["text"] == (f"Refused #{violation.seq}: Kill switch cooldown active. 60 minutes remaining "
                             "(cooldown: 60 minutes).")
    assert await level_of("account:DU222222") == "halt"


async def test_a_risk_officer_resumes_after_the_cooldown_with_a_typed_resume(bot, api, trader):
    halted = await say(api, TRADER, "/halt crash")
    clock.advance(minutes=61)
    prompt = await say(api, RISK, "/resume all clear")
    assert "Level: halt → running.\nCooldown: over." in prompt["text"]
    done = await say(api, RISK, "RESUME", reply_to_message_id=prompt["message_id"], contains="#")
    halt, resume = await events(source="telegram")
    assert halted["text"].startswith(f"#{halt.seq}")
    assert (resume.action, resume.outcome, resume.actor, resume.previous_level, resume.new_level) == (
        "deactivate", "applied", "rita_risk", "halt", "running")
    assert done["text"] == f"#{resume.seq} global is now running (was halt)."
    assert await level_of("global") == "running"


async def test_a_trader_is_refused_resume_before_any_prompt(bot, api):
    reply = await say(api, TRADER, "/resume please")
    [event] = await events(source="telegram")
    assert event.outcome == "refused" and event.requested_level == "running"
    assert reply["text"] == (f"Refused #{event.seq}: tom_trader may not deactivate the kill switch; the "
                             "risk_officer role is required.")
    assert buttons(reply) == []


async def test_a_kill_without_a_reason_is_refused_before_any_prompt(bot, api):
    reply = await say(api, TRADER, "/kill account:DU111111")
    [event] = await events(source="telegram")
    assert reply["text"] == f"Refused #{event.seq}: A reason is required to activate the kill switch."
    assert buttons(reply) == []


async def test_cancel_ends_the_request_and_nothing_happens(bot, api):
    prompt = await say(api, TRADER, "/kill global crash")
    api.press_button(TRADER, TRADER, prompt["message_id"], buttons(prompt)[1])
    await edited(api, TRADER, prompt["message_id"], "cancelled by tom_trader")
    assert [a["text"] for a in api.answered_callbacks()] == ["Cancelled: nothing was done."]
    late = await say(api, TRADER, "KILL")
    assert "already cancelled" in late["text"]
    assert await level_of("global") == "running"


async def test_a_newer_request_replaces_the_earlier_one(bot, api):
    first = await say(api, TRADER, "/kill account:DU111111 one")
    await say(api, TRADER, "/kill account:DU222222 two")
    await edited(api, TRADER, first["message_id"], "replaced by a newer request")
    await say(api, TRADER, "KILL", contains="#")
    [event] = await events(source="telegram", action="activate")
    assert event.scope_label == "account:DU222222"
    assert await level_of("account:DU111111") == "running"


async def test_a_strategy_kill_says_its_positions_stay_for_manual_management(bot, api):
    prompt = await say(api, TRADER, "/kill strategy:momentum bad fills")
    assert "• nothing is closed for a strategy scope" in prompt["text"]
