"""The `telegram:` section of config/risk_limits.yaml, validated at start-up
(killswitch.apps), and whether the bot should run.

    telegram:
      allowed_chat_ids: [-1001234567890]  # omitted: private chats only
      max_command_age_seconds: 60         # older commands are refused, not executed
      confirm_timeout_seconds: 60         # KILL / RESUME must come within this
      poll_timeout_seconds: 30            # long-poll length (Telegram allows up to 50)
      lease_seconds: 15                   # one poller per token; a dead one's lease runs out

The section is kept raw by killswitch.policy (Policy.extra) and owned here. A bad
value raises ImproperlyConfigured naming the file, the key, the value and what is
expected, like the rest of the policy.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from killswitch.notifications.telegram import BotApi, bot_api
from killswitch.policy import get_policy
from riskcontrol.env import envstr

SECTION = "telegram"
PRIVATE = "private"


@dataclass(frozen=True)
class TelegramConfig:
    # None: the bot answers in private chats only; a set: only in those chats (a
    # private chat's id is its person's user id; groups have negative ids).
    allowed_chat_ids: frozenset[int] | None = None
    max_command_age_seconds: float = 60
    confirm_timeout_seconds: float = 60
    poll_timeout_seconds: int = 30
    lease_seconds: float = 15

    def chat_allowed(self, chat_id: int, chat_type: str) -> bool:
        """Whether the bot answers in this chat: a listed chat, or (when nothing is
        listed) any private chat. A group is answered only when listed."""
        if self.allowed_chat_ids is None:
            return chat_type == PRIVATE
        return chat_id in self.allowed_chat_ids


# key -> (low, high, whole numbers only)
_NUMBERS: dict[str, tuple[float, float, bool]] = {
    "max_command_age_seconds": (1, 3600, False),
    "confirm_timeout_seconds": (1, 600, False),
    "poll_timeout_seconds": (1, 50, True),
    "lease_seconds": (2, 300, False),
}


def _bad(path: str, key: str, value: Any, expected: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(f"{path}: {SECTION}.{key}={value!r} is invalid; expected {expected}")


def parse_telegram_section(raw: Any, path: str = "risk_limits.yaml") -> TelegramConfig:
    """The validated section (defaults when absent).

    Raises ImproperlyConfigured naming file, key, value and what is expected.
    """
    if raw is None:
        return TelegramConfig()
    if not isinstance(raw, dict):
        raise ImproperlyConfigured(f"{path}: {SECTION}={raw!r} is invalid; expected a mapping of settings")
    known = {f.name for f in fields(TelegramConfig)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in known:
            raise _bad(path, key, value, f"one of the known keys: {', '.join(sorted(known))}")
        if key == "allowed_chat_ids":
            ids = [] if value is None else value
            if not isinstance(ids, list) or not all(
                    isinstance(i, int) and not isinstance(i, bool) and i != 0 for i in ids):
                raise _bad(path, key, value, "a list of Telegram chat ids: whole numbers, a person's own id "
                                             "for a private chat, negative for a group (e.g. -1001234567890)")
            values[key] = frozenset(ids)
            continue
        low, high, whole = _NUMBERS[key]
        kind = "a whole number" if whole else "a number"
        if isinstance(value, bool) or not isinstance(value, int if whole else int | float):
            raise _bad(path, key, value, f"{kind} between {low:g} and {high:g}")
        if not low <= value <= high:
            raise _bad(path, key, value, f"{kind} between {low:g} and {high:g}")
        values[key] = value
    return TelegramConfig(**values)


def telegram_config() -> TelegramConfig:
    """The section in force (the policy is read once per process; restart after a change)."""
    policy = get_policy()
    return parse_telegram_section(policy.extra.get(SECTION), policy.path or "risk_limits.yaml")


def endpoint() -> BotApi | None:
    """The Bot API endpoint and token the bot uses, or None when no token is set.

    Raises ImproperlyConfigured when TELEGRAM_API_URL or the token is malformed.
    """
    return bot_api(get_policy().notifications.telegram_bot_token_env)


def check_at_start_up() -> TelegramConfig:
    """The section, and with `telegram_enabled` the Bot API URL and the token's shape:
    a process does not start on a setting it would fail on later.

    Raises ImproperlyConfigured naming the key or the variable.
    """
    config = telegram_config()
    if get_policy().kill_switch.telegram_enabled:
        endpoint()
    return config


def bot_should_run() -> bool:
    """`make run` starts the bot when `kill_switch.telegram_enabled` is true and a
    token is set (evaluated when the process list is read)."""
    policy = get_policy()
    token_env = policy.notifications.telegram_bot_token_env
    return policy.kill_switch.telegram_enabled and bool((envstr(token_env) or "").strip())
