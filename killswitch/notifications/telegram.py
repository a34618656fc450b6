"""Telegram, the seed's `telegram_enabled` channel, sent through apprise's tgram:// plugin.

The bot token and chat id come from the environment only (names configurable in
config/risk_limits.yaml: notifications.telegram_bot_token_env / telegram_chat_id_env).
"""

from __future__ import annotations

import os

from .apprise_transport import AppriseTransport
from .base import Message, TransportError


class TelegramTransport(AppriseTransport):
    kind = "telegram"

    def __init__(self, *, token_env: str = "TELEGRAM_BOT_TOKEN", chat_env: str = "TELEGRAM_CHAT_ID") -> None:
        self.token_env = token_env
        self.chat_env = chat_env
        token = os.environ.get(token_env, "").strip()
        chat = os.environ.get(chat_env, "").strip()
        self.missing = [name for name, value in ((token_env, token), (chat_env, chat)) if not value]
        if self.missing:
            self.url, self._plugin = "", None  # nothing to parse; notify() says what is missing
        else:
            super().__init__(f"tgram://{token}/{chat}")

    @property
    def target(self) -> str:
        if self.missing:
            return f"telegram (missing {', '.join(self.missing)})"
        return super().target

    def notify(self, message: Message) -> None:
        if self.missing:
            raise TransportError(
                f"telegram_enabled is true but {' and '.join(self.missing)} "
                f"{'is' if len(self.missing) == 1 else 'are'} not set in the environment",
                permanent=True,
            )
        super().notify(message)
