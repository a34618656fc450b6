"""The fake Bot API at the HTTP level: Telegram's paths, envelopes, encodings, update
delivery and long polling, without a bot library in between."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json

import httpx
import pytest

from tests.fake_telegram import CONFLICT_OTHER_POLLER, CONFLICT_WEBHOOK, FakeBotApi
from tests.fake_telegram.conftest import DESK_GROUP, RISK_OFFICER, TRADER


def call(http: httpx.Client, api: FakeBotApi, method: str, **params: object) -> httpx.Response:
    """POST form-encoded, the way PTB sends (objects as JSON text)."""
    data = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
    return http.post(f"/bot{api.token}/{method}", data=data)


def test_getme_answers_the_bot_in_telegrams_envelope_over_get_and_post(api, http):
    for response in (http.get(f"/bot{api.token}/getMe"), http.post(f"/bot{api.token}/getme")):
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert body["ok"] is True
        assert body["result"]["id"] == 123456789
        assert body["result"]["is_bot"] is True
        assert body["result"]["username"] == "killswitch_test_bot"


def test_wrong_token_is_401_malformed_path_and_unknown_method_404(api, http):
    assert http.post("/bot123456789:not-the-token/getMe").json() == {
        "ok": False, "error_code": 401, "description": "Unauthorized",
    }  # fmt: skip
    assert http.post("/botgarbage/getMe").status_code == 404
    assert http.post("/getMe").json()["description"] == "Not Found"
    unknown = http.post(f"/bot{api.token}/launchMissiles")
    assert (unknown.status_code, unknown.json()["description"]) == (404, "Not Found")
    unimplemented = http.post(f"/bot{api.token}/setWebhook").json()
    assert unimplemented["error_code"] == 404
    assert "setWebhook" in unimplemented["description"]


def test_parameters_read_alike_from_form_json_multipart_and_query(api, http):
    api.send_user_message(TRADER, TRADER, "hello")
    keyboard = {"inline_keyboard": [[{"text": "Confirm", "callback_data": "kill:confirm"}]]}
    url = f"/bot{api.token}/sendMessage"
    answers = [
        call(http, api, "sendMessage", chat_id=TRADER, text="form", reply_markup=keyboard),
        http.post(url, json={"chat_id": TRADER, "text": "json", "reply_markup": keyboard}),
        http.post(url, files={"reply_markup": (None, json.dumps(keyboard))}, data={"chat_id": str(TRADER), "text": "multipart"}),
        http.get(url, params={"chat_id": TRADER, "text": "query", "reply_markup": json.dumps(keyboard)}),
    ]
    for answer, text in zip(answers, ("form", "json", "multipart", "query"), strict=True):
        message = answer.json()["result"]
        assert message["text"] == text
        assert message["chat"]["id"] == TRADER
        assert message["from"]["id"] == api.bot_user["id"]
        assert message["reply_markup"] == keyboard
    recorded = api.requests("sendMessage")
    assert [r.params["chat_id"] for r in recorded] == [TRADER] * 4
    assert recorded[1].content_type == "application/json"
    assert recorded[2].content_type.startswith("multipart/form-data")
    ids = [m["message_id"] for m in api.sent_messages(TRADER)]
    assert ids == [2, 3, 4, 5]  # message ids count per chat; the user's "hello" was 1


def test_message_to_an_unknown_chat_or_without_text_is_refused(api, http):
    assert call(http, api, "sendMessage", chat_id=999, text="hi").json()["description"] == "Bad Request: chat not found"
    api.send_user_message(TRADER, TRADER, "hi")
    assert call(http, api, "sendMessage", chat_id=TRADER, text="  ").json()["description"] == (
        "Bad Request: message text is empty"
    )
    assert call(http, api, "sendMessage", text="x").json()["description"] == "Bad Request: chat_id is empty"
    assert call(http, api, "sendMessage", chat_id=TRADER, text="x" * 4097).json()["description"] == (
        "Bad Request: message is too long"
    )
    assert api.sent_messages() == []


def test_long_poll_returns_as_soon_as_an_update_arrives(api, http):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        poll = pool.submit(call, http, api, "getUpdates", timeout=30)
        api.wait_for_request("getUpdates")  # the poll is waiting at the fake
        update = api.send_user_message(TRADER, TRADER, "/status")
        answer = poll.result(timeout=10)  # far below the poll's own 30 s
    assert answer.json() == {"ok": True, "result": [update]}
    assert update["message"]["entities"] == [{"type": "bot_command", "offset": 0, "length": 7}]
    assert api.requests("getUpdates")[0].params["timeout"] == 30


def test_long_poll_with_nothing_queued_answers_an_empty_list_at_its_timeout(api, http):
    answer = call(http, api, "getUpdates", timeout=1)
    assert answer.json() == {"ok": True, "result": []}
    request = api.requests("getUpdates")[0]
    assert request.finished_at - request.started_at >= 1.0  # it waited, as a long poll does


def test_timeout_and_limit_are_read_like_telegram_reads_them(api, http):
    for i in range(3):
        api.send_user_message(TRADER, TRADER, f"m{i}")
    assert len(call(http, api, "getUpdates", limit=0).json()["result"]) == 1  # clamped to 1..100
    call(http, api, "getUpdates", offset=-1)
    short = call(http, api, "getUpdates", offset=api.pending_updates()[0]["update_id"] + 1, timeout="0.5")
    assert short.json()["result"] == []
    # Only the integer part counts: a fractional timeout is a short poll at Telegram.
    assert api.requests("getUpdates")[-1].params["timeout"] == 0
    assert call(http, api, "getUpdates", offset="abc").json()["error_code"] == 400


def test_offset_confirms_earlier_updates_and_a_negative_offset_keeps_the_last(api, http):
    ids = [api.send_user_message(TRADER, TRADER, f"m{i}")["update_id"] for i in range(4)]
    assert ids == [ids[0] + i for i in range(4)]
    assert [u["update_id"] for u in call(http, api, "getUpdates", limit=2).json()["result"]] == ids[:2]
    assert [u["update_id"] for u in call(http, api, "getUpdates", offset=ids[1] + 1).json()["result"]] == ids[2:]
    assert [u["update_id"] for u in api.pending_updates()] == ids[2:]  # confirmed ones are gone
    assert [u["update_id"] for u in call(http, api, "getUpdates", offset=-1).json()["result"]] == ids[3:]
    assert [u["update_id"] for u in call(http, api, "getUpdates").json()["result"]] == ids[3:]


def test_allowed_updates_decides_what_is_queued_from_then_on(api, http):
    queued_before = api.send_user_message(TRADER, TRADER, "before")
    result = call(http, api, "getUpdates", allowed_updates=["callback_query"]).json()["result"]
    assert result == [queued_before]  # already queued: still delivered, as at Telegram
    call(http, api, "getUpdates", offset=queued_before["update_id"] + 1)
    assert api.send_user_message(TRADER, TRADER, "/status") is None
    sent = call(http, api, "sendMessage", chat_id=TRADER, text="Halt?", reply_markup={
        "inline_keyboard": [[{"text": "Yes", "callback_data": "yes"}]]}).json()["result"]  # fmt: skip
    pressed = api.press_button(TRADER, TRADER, sent["message_id"], "yes")
    assert call(http, api, "getUpdates").json()["result"] == [pressed]
    call(http, api, "getUpdates", allowed_updates=[])  # [] means the default set again
    assert api.send_user_message(TRADER, TRADER, "/status") is not None


def test_a_second_long_poll_displaces_the_waiting_one_with_409(api, http):
    with concurrent.futures.ThreadPoolExecutor(2) as pool, httpx.Client(base_url=api.api_url, timeout=10) as other:
        first = pool.submit(call, http, api, "getUpdates", timeout=20)
        api.wait_for_request("getUpdates")
        second = pool.submit(call, other, api, "getUpdates", timeout=20)
        displaced = first.result(timeout=10)
        assert displaced.status_code == 409
        assert displaced.json() == {"ok": False, "error_code": 409, "description": CONFLICT_OTHER_POLLER}
        update = api.send_user_message(TRADER, TRADER, "/status")
        assert second.result(timeout=10).json()["result"] == [update]


def test_a_webhook_left_set_blocks_getupdates_until_deletewebhook(api, http):
    api.set_webhook("https://old-deployment.example/hook")
    api.send_user_message(TRADER, TRADER, "/status")
    blocked = call(http, api, "getUpdates")
    assert (blocked.status_code, blocked.json()["description"]) == (409, CONFLICT_WEBHOOK)
    assert call(http, api, "getWebhookInfo").json()["result"]["url"] == "https://old-deployment.example/hook"
    deleted = call(http, api, "deleteWebhook").json()
    assert deleted == {"ok": True, "result": True, "description": "Webhook was deleted"}
    assert len(call(http, api, "getUpdates").json()["result"]) == 1
    dropped = call(http, api, "deleteWebhook", drop_pending_updates=True).json()
    assert dropped["description"] == "Webhook is already deleted"
    assert api.pending_updates() == []


def test_parse_modes_are_checked_and_rendered_as_telegram_does(api, http):
    api.send_user_message(TRADER, TRADER, "hi")

    def send(text: str, mode: str) -> dict:
        return call(http, api, "sendMessage", chat_id=TRADER, text=text, parse_mode=mode).json()

    assert send("loss < limit", "HTML")["description"] == (
        "Bad Request: can't parse entities: Unsupported start tag \"\" at byte offset 5"
    )
    assert send("line<br>next", "HTML")["description"] == (
        "Bad Request: can't parse entities: Unsupported start tag \"br\" at byte offset 4"
    )
    assert send("<b>HALT", "HTML")["description"] == (
        "Bad Request: can't parse entities: Can't find end tag corresponding to start tag \"b\""
    )
    assert send("loss 1.5%", "MarkdownV2")["description"] == (
        "Bad Request: can't parse entities: Character '.' is reserved and must be escaped with the preceding '\\'"
    )
    assert send("*bold", "Markdown")["description"] == (
        "Bad Request: can't parse entities: Can't find end of the entity starting at byte offset 0"
    )
    assert send("x", "bbcode")["description"] == "Bad Request: unsupported parse_mode"
    ok = send("🛑 <b>HALT</b> &lt;global&gt;", "HTML")["result"]
    assert ok["text"] == "🛑 HALT <global>"
    assert ok["entities"] == [{"type": "bold", "offset": 3, "length": 4}]  # the emoji is 2 UTF-16 units
    v2 = send("*HALT* at 1\\.5% _by_ [desk](https://x.example/a)", "MarkdownV2")["result"]
    assert v2["text"] == "HALT at 1.5% by desk"
    assert [e["type"] for e in v2["entities"]] == ["bold", "italic", "text_link"]
    assert [m["text"] for m in api.sent_messages()] == ["🛑 HALT <global>", "HALT at 1.5% by desk"]


def test_editing_follows_telegrams_rules(api, http):
    user_message = api.send_user_message(TRADER, TRADER, "/kill")["message"]
    keyboard = {"inline_keyboard": [[{"text": "Confirm", "callback_data": "confirm"}]]}
    sent = call(http, api, "sendMessage", chat_id=TRADER, text="Kill?", reply_markup=keyboard).json()["result"]
    ref = {"chat_id": TRADER, "message_id": sent["message_id"]}
    same = call(http, api, "editMessageText", **ref, text="Kill?", reply_markup=keyboard).json()
    assert same["description"].startswith("Bad Request: message is not modified")
    edited = call(http, api, "editMessageText", **ref, text="Killed").json()["result"]
    assert "reply_markup" not in edited  # editing without reply_markup removes the keyboard
    assert edited["edit_date"] >= sent["date"]
    assert api.message(TRADER, sent["message_id"])["text"] == "Killed"
    with pytest.raises(ValueError, match="no button"):
        api.press_button(TRADER, TRADER, sent["message_id"], "confirm")
    restored = call(http, api, "editMessageReplyMarkup", **ref, reply_markup=keyboard).json()["result"]
    assert restored["reply_markup"] == keyboard
    assert call(http, api, "editMessageText", chat_id=TRADER, message_id=user_message["message_id"], text="x").json()[
        "description"
    ] == "Bad Request: message can't be edited"
    assert call(http, api, "deleteMessage", **ref).json() == {"ok": True, "result": True}
    assert call(http, api, "deleteMessage", **ref).json()["description"] == "Bad Request: message to delete not found"
    assert call(http, api, "editMessageText", **ref, text="y").json()["description"] == (
        "Bad Request: message to edit not found"
    )
    assert api.sent_messages() == []
    assert api.sent_messages(include_deleted=True)[0]["text"] == "Killed"


def test_reply_markup_and_replies_are_validated(api, http):
    api.send_user_message(TRADER, TRADER, "hi")
    long_data = {"inline_keyboard": [[{"text": "x", "callback_data": "d" * 65}]]}
    assert call(http, api, "sendMessage", chat_id=TRADER, text="x", reply_markup=long_data).json()["description"] == (
        "Bad Request: BUTTON_DATA_INVALID"
    )
    text_only = {"inline_keyboard": [[{"text": "x"}]]}
    assert "Text buttons are unallowed" in call(
        http, api, "sendMessage", chat_id=TRADER, text="x", reply_markup=text_only
    ).json()["description"]
    missing = call(http, api, "sendMessage", chat_id=TRADER, text="x", reply_parameters={"message_id": 77}).json()
    assert missing["description"] == "Bad Request: message to be replied not found"
    tolerated = call(http, api, "sendMessage", chat_id=TRADER, text="x",
                     reply_parameters={"message_id": 77, "allow_sending_without_reply": True}).json()  # fmt: skip
    assert tolerated["ok"] and "reply_to_message" not in tolerated["result"]
    reply = call(http, api, "sendMessage", chat_id=TRADER, text="x", reply_to_message_id=1).json()["result"]
    assert reply["reply_to_message"]["text"] == "hi"


def test_callback_queries_are_answered_once(api, http):
    api.send_user_message(RISK_OFFICER, RISK_OFFICER, "/resume")
    sent = call(http, api, "sendMessage", chat_id=RISK_OFFICER, text="Resume?", reply_markup={
        "inline_keyboard": [[{"text": "Resume", "callback_data": "resume"}]]}).json()["result"]  # fmt: skip
    with pytest.raises(ValueError, match="only user"):
        api.press_button(TRADER, RISK_OFFICER, sent["message_id"], "resume")
    query = api.press_button(RISK_OFFICER, RISK_OFFICER, sent["message_id"], "resume")["callback_query"]
    assert query["message"]["message_id"] == sent["message_id"]
    assert call(http, api, "answerCallbackQuery", callback_query_id=query["id"], text="Resumed").json()["result"] is True
    again = call(http, api, "answerCallbackQuery", callback_query_id=query["id"]).json()
    assert again["description"] == "Bad Request: query is too old and response timeout expired or query ID is invalid"
    [answer] = api.answered_callbacks()
    assert (answer["text"], answer["data"], answer["user_id"]) == ("Resumed", "resume", RISK_OFFICER)


def test_group_privacy_mode_delivers_only_commands_for_this_bot_and_replies_to_it(api, http):
    command = api.send_user_message(TRADER, DESK_GROUP, "/halt@killswitch_test_bot", chat_type="supergroup")
    assert command["message"]["chat"] == {"id": DESK_GROUP, "type": "supergroup", "title": "Group 1001234567890"}
    assert api.send_user_message(TRADER, DESK_GROUP, "KILL", chat_type="supergroup") is None
    assert api.send_user_message(TRADER, DESK_GROUP, "/halt@other_bot", chat_type="supergroup") is None
    prompt = call(http, api, "sendMessage", chat_id=DESK_GROUP, text="Type KILL").json()["result"]
    reply = api.send_user_message(TRADER, DESK_GROUP, "KILL", chat_type="supergroup", reply_to_message_id=prompt["message_id"])
    assert reply["message"]["reply_to_message"]["text"] == "Type KILL"
    assert [u["update_id"] for u in api.pending_updates()] == [command["update_id"], reply["update_id"]]
    with pytest.raises(ValueError, match="private chat's id"):
        api.send_user_message(TRADER, RISK_OFFICER, "hi")
    with pytest.raises(ValueError, match="negative"):
        api.send_user_message(TRADER, 5, "hi", chat_type="group")
    with pytest.raises(TypeError, match="timezone-aware"):
        api.send_user_message(TRADER, TRADER, "hi", date=dt.datetime(2024, 1, 1))


def test_chat_actions_need_a_known_chat(api, http):
    assert call(http, api, "sendChatAction", chat_id=TRADER, action="typing").json()["description"] == (
        "Bad Request: chat not found"
    )
    api.send_user_message(TRADER, TRADER, "/status")
    assert call(http, api, "sendChatAction", chat_id=TRADER, action="typing").json() == {"ok": True, "result": True}


def test_a_user_who_blocked_the_bot_gets_nothing_403(api, http):
    api.send_user_message(TRADER, TRADER, "/start")
    api.block_bot(TRADER)
    blocked = call(http, api, "sendMessage", chat_id=TRADER, text="HALT")
    assert (blocked.status_code, blocked.json()["description"]) == (403, "Forbidden: bot was blocked by the user")
    api.send_user_message(TRADER, TRADER, "/start")  # writing again means unblocked
    assert call(http, api, "sendMessage", chat_id=TRADER, text="HALT").json()["ok"]


def test_commands_are_kept_per_scope_and_language(api, http):
    commands = [{"command": "status", "description": "Show the switch"}, {"command": "kill", "description": "Kill"}]
    assert call(http, api, "setMyCommands", commands=commands).json()["result"] is True
    group = {"type": "all_group_chats"}
    call(http, api, "setMyCommands", commands=commands[:1], scope=group, language_code="de")
    assert call(http, api, "getMyCommands").json()["result"] == commands
    assert api.commands(group, "de") == commands[:1]
    assert call(http, api, "setMyCommands", commands=[{"command": "/Kill", "description": "x"}]).json()[
        "description"
    ] == "Bad Request: BOT_COMMAND_INVALID"
    call(http, api, "deleteMyCommands")
    assert call(http, api, "getMyCommands").json()["result"] == []


def test_injected_faults_answer_telegrams_errors_then_stop(api, http):
    api.fail_next("getUpdates", 429, retry_after=7)
    api.fail_next("sendMessage", 502, times=2)
    limited = call(http, api, "getUpdates")
    assert limited.status_code == 429
    assert limited.json() == {
        "ok": False, "error_code": 429, "description": "Too Many Requests: retry after 7",
        "parameters": {"retry_after": 7},
    }  # fmt: skip
    assert call(http, api, "getUpdates").json() == {"ok": True, "result": []}
    api.send_user_message(TRADER, TRADER, "hi")
    for _ in range(2):
        gateway = call(http, api, "sendMessage", chat_id=TRADER, text="x")
        assert (gateway.status_code, gateway.headers["content-type"]) == (502, "text/html")
        assert "<title>502 Bad Gateway</title>" in gateway.text
    assert api.sent_messages() == []  # a failed call had no effect
    assert call(http, api, "sendMessage", chat_id=TRADER, text="x").json()["ok"]
    api.fail_next("*", 500)
    assert call(http, api, "getMe").json()["description"] == "Internal Server Error"
    with pytest.raises(ValueError, match="retry_after"):
        api.fail_next("getUpdates", 429)


def test_a_slow_answer_still_takes_effect(api, http):
    api.send_user_message(TRADER, TRADER, "/kill")
    api.slow_next("sendMessage", 2)
    with pytest.raises(httpx.ReadTimeout):
        http.post(f"/bot{api.token}/sendMessage", data={"chat_id": TRADER, "text": "Killed"}, timeout=0.3)
    assert [m["text"] for m in api.sent_messages()] == ["Killed"]  # delivered although the client gave up
    request = api.wait_for_request("sendMessage", lambda r: r.finished_at is not None)
    assert request.outcome == "client disconnected"


def test_going_down_refuses_connections_and_coming_back_keeps_port_and_updates(api, http):
    port = api.port
    idle = httpx.Client(base_url=api.api_url, timeout=5)
    assert idle.post(f"/bot{api.token}/getMe").json()["ok"]  # leaves a kept-alive connection
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(call, http, api, "getUpdates", timeout=20)
        api.wait_for_request("getUpdates")
        api.go_down()
        with pytest.raises(httpx.HTTPError):
            waiting.result(timeout=10)  # the waiting poll lost its connection, no answer
    assert api.requests("getUpdates")[0].outcome == "server down"
    assert api.is_down
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{api.api_url}/bot{api.token}/getMe", timeout=2)
    with pytest.raises(httpx.HTTPError):
        idle.post(f"/bot{api.token}/getMe")  # kept-alive connections were reset too
    idle.close()
    queued = api.send_user_message(TRADER, TRADER, "/status")  # users keep writing meanwhile
    api.come_back()
    assert api.port == port
    assert call(http, api, "getUpdates").json()["result"] == [queued]
