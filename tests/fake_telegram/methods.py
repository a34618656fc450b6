"""The Bot API methods the fake answers, with Telegram's parameter rules.

Telegram's server reads every parameter as a string, whatever the encoding (query
string, form, multipart, JSON body), and converts it per method: integers by their
leading digits (``"0.5"`` is 0), booleans from ``"true"``/``"1"``, objects
(``reply_markup``, ``reply_parameters``, ``allowed_updates``) as JSON text. The
:class:`Args` reader does the same, so a bot gets the answer Telegram would give, and
records what it read, typed, for the tests.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from typing import Any

from tests.fake_telegram.errors import ApiError, bad_request
from tests.fake_telegram.formatting import render_text
from tests.fake_telegram.world import World

_MAX_CALLBACK_DATA_BYTES = 64
_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")
_BUTTON_KINDS = (
    "url", "callback_data", "web_app", "login_url", "switch_inline_query",
    "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text",
    "callback_game", "pay",
)  # fmt: skip


class Args:
    """One request's parameters, read the way Telegram reads them; every value read is
    kept, typed, in ``params`` (the request record)."""

    def __init__(self, raw: dict[str, str], params: dict[str, Any]) -> None:
        self.raw = raw
        self.params = params

    def text(self, name: str) -> str | None:
        value = self.raw.get(name)
        if value is not None:
            self.params[name] = value
        return value

    def integer(self, name: str, default: int | None = None, *, low: int | None = None, high: int | None = None) -> int | None:
        """The leading integer of the value, clamped to [low, high], as tdlib reads it."""
        value = self.raw.get(name, "")
        if value == "":
            return default
        match = re.match(r"\s*[-+]?\d+", value)
        if match is None:
            raise bad_request(f'parameter "{name}" must be an integer, got {value!r}')
        number = int(match.group(0))
        number = number if low is None else max(low, number)
        number = number if high is None else min(high, number)
        self.params[name] = number
        return number

    def boolean(self, name: str) -> bool:
        value = self.raw.get(name)
        result = value is not None and value.strip().lower() in ("true", "1")
        if value is not None:
            self.params[name] = result
        return result

    def json(self, name: str, what: str) -> Any:
        """The JSON value of a parameter, or None when absent.

        Raises:
            ApiError: 400 ``can't parse <what> JSON object``.
        """
        value = self.raw.get(name, "")
        if value == "":
            return None
        try:
            parsed = json.loads(value)
        except ValueError:
            raise bad_request(f"can't parse {what} JSON object") from None
        self.params[name] = parsed
        return parsed

    def chat_id(self) -> int:
        """Raises ApiError: 400 ``chat_id is empty`` / ``chat not found`` (a ``@name`` or junk)."""
        value = self.raw.get("chat_id", "")
        if value == "":
            raise bad_request("chat_id is empty")
        if not re.fullmatch(r"-?\d+", value.strip()):
            raise bad_request("chat not found")
        self.params["chat_id"] = int(value)
        return int(value)

    def message_id(self) -> int:
        message_id = self.integer("message_id")
        if not message_id:
            raise bad_request("message identifier is not specified")
        return message_id


@dataclasses.dataclass
class Call:
    """What a method gets: its parameters and a way to tell the client hung up."""

    args: Args
    client_gone: Callable[[], bool]


@dataclasses.dataclass
class Described:
    """A result with the ``description`` Telegram adds to some ``ok`` answers."""

    result: Any
    description: str


# ----------------------------------------------------------------------------- shared readers


def _button(button: Any) -> dict[str, Any]:
    prefix = "can't parse inline keyboard button: "
    if not isinstance(button, dict):
        raise bad_request(prefix + "InlineKeyboardButton must be an Object")
    if not isinstance(button.get("text"), str):
        raise bad_request(prefix + 'Can\'t find field "text"')
    kind = next((k for k in _BUTTON_KINDS if button.get(k) not in (None, "")), None)
    if kind is None:
        raise bad_request(prefix + "Text buttons are unallowed in the inline keyboard")
    if kind == "callback_data":
        size = len(str(button["callback_data"]).encode("utf-8"))
        if size > _MAX_CALLBACK_DATA_BYTES:
            raise bad_request("BUTTON_DATA_INVALID")
    return {"text": button["text"], kind: button[kind]}


def reply_markup(args: Args) -> dict[str, Any] | None:
    """The inline keyboard to store on the message, or None (no markup, or a reply
    keyboard / remove / force-reply, which Telegram accepts but never echoes in a Message).

    Raises:
        ApiError: 400 for markup Telegram would refuse (not an object, rows not arrays,
            a button without an action, callback_data over 64 bytes).
    """
    markup = args.json("reply_markup", "reply keyboard markup")
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad_request("object expected as reply markup")
    for field in ("keyboard", "inline_keyboard"):
        rows = markup.get(field)
        if rows is not None and not (isinstance(rows, list) and all(isinstance(r, list) for r in rows)):
            name = "InlineKeyboardMarkup" if field == "inline_keyboard" else "ReplyKeyboardMarkup"
            raise bad_request(f'field "{field}" of the {name} must be an Array of Arrays')
    rows = [[_button(b) for b in row] for row in markup.get("inline_keyboard") or []]
    return {"inline_keyboard": rows} if any(rows) else None


def _reply_target(args: Args) -> tuple[int | None, bool]:
    parameters = args.json("reply_parameters", "reply parameters")
    if parameters is not None:
        if not isinstance(parameters, dict) or not isinstance(parameters.get("message_id"), int):
            raise bad_request("object expected as reply parameters, with an integer message_id")
        return parameters["message_id"], bool(parameters.get("allow_sending_without_reply"))
    return args.integer("reply_to_message_id"), args.boolean("allow_sending_without_reply")


def _text(args: Args) -> tuple[str, list[dict[str, Any]]]:
    text, entities = render_text(args.text("text"), args.text("parse_mode"))
    given = args.json("entities", "entities")
    if given is not None and not args.raw.get("parse_mode"):
        if not isinstance(given, list) or not all(isinstance(e, dict) and "type" in e for e in given):
            raise bad_request("can't parse entities: an Array of MessageEntity expected")
        entities = given
    return text, entities


def _commands_key(args: Args) -> tuple[str, str]:
    scope = args.json("scope", "BotCommandScope") or {"type": "default"}
    if not isinstance(scope, dict) or not isinstance(scope.get("type"), str):
        raise bad_request("object expected as BotCommandScope, with a type")
    return json.dumps(scope, sort_keys=True), args.text("language_code") or ""


# ----------------------------------------------------------------------------- methods


def get_me(world: World, call: Call) -> Any:
    return dict(world.bot_user)


def get_updates(world: World, call: Call) -> Any:
    a = call.args
    allowed = a.json("allowed_updates", "allowed_updates")
    if allowed is not None and not (isinstance(allowed, list) and all(isinstance(t, str) for t in allowed)):
        raise bad_request("allowed_updates must be an Array of String")
    return world.updates.get_updates(
        offset=a.integer("offset", 0) or 0,
        limit=a.integer("limit", 100, low=1, high=100) or 100,
        timeout=a.integer("timeout", 0, low=0, high=50) or 0,
        allowed_updates=allowed,
        client_gone=call.client_gone,
    )


def delete_webhook(world: World, call: Call) -> Any:
    description = world.updates.delete_webhook(drop_pending_updates=call.args.boolean("drop_pending_updates"))
    return Described(True, description)


def get_webhook_info(world: World, call: Call) -> Any:
    return world.updates.webhook_info()


def set_my_commands(world: World, call: Call) -> Any:
    commands = call.args.json("commands", "commands")
    if not isinstance(commands, list):
        raise bad_request("field \"commands\" must be an Array of BotCommand")
    cleaned = []
    for command in commands:
        if not isinstance(command, dict) or not _COMMAND_NAME.fullmatch(str(command.get("command", ""))):
            raise bad_request("BOT_COMMAND_INVALID")
        description = command.get("description")
        if not isinstance(description, str) or not 1 <= len(description) <= 256:
            raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        cleaned.append({"command": command["command"], "description": description})
    world.set_commands(_commands_key(call.args), cleaned)
    return True


def get_my_commands(world: World, call: Call) -> Any:
    return world.get_commands(_commands_key(call.args))


def delete_my_commands(world: World, call: Call) -> Any:
    world.set_commands(_commands_key(call.args), None)
    return True


def send_message(world: World, call: Call) -> Any:
    a = call.args
    chat_id = a.chat_id()
    text, entities = _text(a)
    markup = reply_markup(a)
    reply_to, allow_without_reply = _reply_target(a)
    for flag in ("disable_notification", "protect_content"):
        a.boolean(flag)
    a.integer("message_thread_id")
    a.json("link_preview_options", "link preview options")
    return world.send_message(
        chat_id=chat_id, text=text, entities=entities, reply_markup=markup,
        reply_to=reply_to, allow_without_reply=allow_without_reply,
    )  # fmt: skip


def _edited_message_ref(args: Args) -> tuple[int, int]:
    if args.text("inline_message_id"):
        raise ApiError(400, "Bad Request: inline messages are not supported by the fake Bot API")
    return args.chat_id(), args.message_id()


def edit_message_text(world: World, call: Call) -> Any:
    chat_id, message_id = _edited_message_ref(call.args)
    text, entities = _text(call.args)
    return world.edit_message(
        chat_id=chat_id, message_id=message_id, text=text, entities=entities,
        reply_markup=reply_markup(call.args),
    )  # fmt: skip


def edit_message_reply_markup(world: World, call: Call) -> Any:
    chat_id, message_id = _edited_message_ref(call.args)
    return world.edit_message(
        chat_id=chat_id, message_id=message_id, text=None, entities=[], reply_markup=reply_markup(call.args)
    )


def delete_message(world: World, call: Call) -> Any:
    world.delete_message(chat_id=call.args.chat_id(), message_id=call.args.message_id())
    return True


def answer_callback_query(world: World, call: Call) -> Any:
    a = call.args
    world.answer_callback(
        callback_query_id=a.text("callback_query_id") or "",
        text=a.text("text"),
        show_alert=a.boolean("show_alert"),
        url=a.text("url"),
        cache_time=a.integer("cache_time", 0) or 0,
    )
    return True


def send_chat_action(world: World, call: Call) -> Any:
    """The "typing..." indicator: nothing to keep, but the chat must exist."""
    chat_id = call.args.chat_id()
    if not call.args.text("action"):
        raise bad_request("action is empty")
    if not world.has_chat(chat_id):
        raise bad_request("chat not found")
    return True


#: lower-case method name -> (name as documented, implementation)
METHODS: dict[str, tuple[str, Callable[[World, Call], Any]]] = {
    name.lower(): (name, function)
    for name, function in {
        "getMe": get_me,
        "getUpdates": get_updates,
        "deleteWebhook": delete_webhook,
        "getWebhookInfo": get_webhook_info,
        "setMyCommands": set_my_commands,
        "getMyCommands": get_my_commands,
        "deleteMyCommands": delete_my_commands,
        "sendMessage": send_message,
        "editMessageText": edit_message_text,
        "editMessageReplyMarkup": edit_message_reply_markup,
        "deleteMessage": delete_message,
        "answerCallbackQuery": answer_callback_query,
        "sendChatAction": send_chat_action,
    }.items()
}

#: Real Bot API methods a bot is likely to call that the fake does not implement: they get
#: a 404 that says so (Telegram itself answers 404 "Not Found" only for unknown methods).
NOT_IMPLEMENTED = frozenset(
    name.lower()
    for name in (
        "setWebhook", "logOut", "close", "forwardMessage", "copyMessage", "sendPhoto",
        "sendDocument", "sendPoll", "getChat", "getChatMember", "getChatAdministrators", "getFile",
        "pinChatMessage", "unpinChatMessage", "setMyDescription", "setChatMenuButton",
        "setMessageReaction", "editMessageCaption", "deleteMessages", "leaveChat",
    )  # fmt: skip
)
