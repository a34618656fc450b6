"""Telegram, the seed's `telegram_enabled` channel, sent over the Bot API the bot uses.

One URL for everything Telegram: `{TELEGRAM_API_URL}/bot{token}/{method}`
(TELEGRAM_API_URL defaults to https://api.telegram.org), for the bot's commands
(killswitch.chat) and for these notifications alike, so a local Bot API server or a
test server stands in for both. The bot token and chat id come from the environment
only, or a `*_FILE` beside them (names configurable in config/risk_limits.yaml:
notifications.telegram_bot_token_env / telegram_chat_id_env).

Sent with httpx rather than apprise's tgram:// plugin: apprise always talks to
api.telegram.org (no base URL) and reports failures as a boolean, so a 429's
`retry_after` and the difference between "retry" (5xx, network) and "give up"
(chat not found, bot blocked, token revoked) would be lost.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from django.core.exceptions import ImproperlyConfigured

from riskcontrol.env import envstr

from .base import Message, Transport, TransportError

DEFAULT_API_URL = "https://api.telegram.org"
API_URL_ENV = "TELEGRAM_API_URL"
TOKEN_FORMAT = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{1,200}")
# Per-attempt timeout: a slow Telegram must not hold a worker; Celery retries later.
TIMEOUT_SECONDS = 10
MAX_TEXT = 4096  # Telegram's limit for one message, in UTF-16 units (our texts are mostly ASCII)


def api_url() -> str:
    """The Bot API base URL from TELEGRAM_API_URL, without a trailing slash.

    Raises ImproperlyConfigured naming the variable when it is not an http(s) URL.
    """
    raw = os.environ.get(API_URL_ENV, "").strip() or DEFAULT_API_URL
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ImproperlyConfigured(
            f"{API_URL_ENV}={raw!r} is invalid; expected the Bot API base URL, http(s)://host[:port][/path], "
            f"e.g. {DEFAULT_API_URL} (methods are called at {{{API_URL_ENV}}}/bot<token>/<method>)")
    return raw.rstrip("/")


@dataclass(frozen=True)
class BotApi:
    """Where the Bot API is and which bot: methods at `{url}/bot{token}/{method}`."""

    url: str
    token: str

    @property
    def bot_id(self) -> int:
        return int(self.token.split(":", 1)[0])

    @property
    def base_url(self) -> str:
        """For python-telegram-bot's `base_url` (it appends the token and the method)."""
        return f"{self.url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.url}/file/bot"

    def method_url(self, method: str) -> str:
        return f"{self.url}/bot{self.token}/{method}"


def bot_token(token_env: str) -> str:
    """The bot token from the environment variable `token_env` (or the file named by
    `{token_env}_FILE`), or "" when unset.

    Raises ImproperlyConfigured naming the variable (never the value) when it is set
    but not of Telegram's `<bot id>:<secret>` shape.
    """
    token = (envstr(token_env) or "").strip()
    if token and not TOKEN_FORMAT.fullmatch(token):
        raise ImproperlyConfigured(
            f"{token_env} is invalid; expected the token BotFather gave, '<bot id>:<secret>' "
            "(digits, a colon, then letters, digits, - and _)")
    return token


def bot_api(token_env: str) -> BotApi | None:
    """The Bot API endpoint for the token in `token_env`, or None when no token is set."""
    token = bot_token(token_env)
    return BotApi(api_url(), token) if token else None


class TelegramTransport(Transport):
    kind = "telegram"

    def __init__(self, *, token_env: str = "TELEGRAM_BOT_TOKEN", chat_env: str = "TELEGRAM_CHAT_ID") -> None:
        self.token_env = token_env
        self.chat_env = chat_env
        self.token = (envstr(token_env) or "").strip()
        self.chat = (envstr(chat_env) or "").strip()
        self.missing = [name for name, value in ((token_env, self.token), (chat_env, self.chat)) if not value]

    @property
    def target(self) -> str:
        if self.missing:
            return f"telegram (missing {', '.join(self.missing)})"
        bot_id = self.token.split(":", 1)[0]
        return f"telegram bot {bot_id} → chat {self.chat}"[:300]

    def notify(self, message: Message) -> None:
        if self.missing:
            raise TransportError(
                f"telegram_enabled is true but {' and '.join(self.missing)} "
                f"{'is' if len(self.missing) == 1 else 'are'} not set in the environment",
                permanent=True,
            )
        try:
            endpoint = BotApi(api_url(), bot_token(self.token_env))
        except ImproperlyConfigured as exc:
            raise TransportError(str(exc), permanent=True) from None
        text = message.body if message.body.startswith(message.title) else f"{message.title}\n{message.body}"
        try:
            response = httpx.post(endpoint.method_url("sendMessage"), timeout=TIMEOUT_SECONDS,
                                  json={"chat_id": self.chat, "text": text[:MAX_TEXT]})
        except httpx.HTTPError as exc:
            # The token is part of the URL: never let it into the stored error.
            raise TransportError(f"Telegram unreachable: {type(exc).__name__}: {exc}".replace(self.token, "<token>")) from None
        if response.status_code == 200:
            return
        try:
            body = response.json()
            description = str(body.get("description") or "")
            retry_after = (body.get("parameters") or {}).get("retry_after")
        except ValueError:  # nginx's HTML page for 502/503/504
            description, retry_after = "", None
        error = f"Telegram answered {response.status_code}: {description or response.reason_phrase}"
        if response.status_code == 429:
            raise TransportError(error, retry_after=float(retry_after) if retry_after else None)
        # 5xx: Telegram's side, worth another try; 400 (chat not found), 401 (token
        # revoked), 403 (bot blocked or removed), 404: trying again cannot help.
        raise TransportError(error, permanent=response.status_code < 500)
