"""The configured channels: which transports exist and which are switched on.

Channels come from three places, read at each call (cheap; lets a test or an
operator change the environment without a code change):
- Telegram when `kill_switch.telegram_enabled` is true (config/risk_limits.yaml);
- every apprise URL in `notifications.urls` (config, `${ENV}` expanded at start-up);
- every apprise URL in the environment variable NOTIFY_URLS (comma separated).

Each channel has a stable id (`telegram`, `apprise:<12 hex of the URL's sha256>`), so
a delivery row names its channel without storing the URL's secrets.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

from django.utils.module_loading import import_string

from ..policy import get_policy
from .base import Transport

TRANSPORTS: dict[str, str] = {
    "apprise": "killswitch.notifications.apprise_transport.AppriseTransport",
    "telegram": "killswitch.notifications.telegram.TelegramTransport",
}


@dataclass(frozen=True)
class Channel:
    id: str
    kind: str
    transport: Transport

    @property
    def target(self) -> str:
        return self.transport.target


def transport_class(kind: str) -> type[Transport]:
    return import_string(TRANSPORTS[kind])


def env_urls() -> list[str]:
    return [u.strip() for u in os.environ.get("NOTIFY_URLS", "").split(",") if u.strip()]


def channels() -> list[Channel]:
    """Every configured channel, Telegram first, without duplicates."""
    policy = get_policy()
    found: list[Channel] = []
    if policy.kill_switch.telegram_enabled:
        telegram = transport_class("telegram")(
            token_env=policy.notifications.telegram_bot_token_env,
            chat_env=policy.notifications.telegram_chat_id_env,
        )
        found.append(Channel("telegram", "telegram", telegram))
    seen: set[str] = set()
    for url in [*policy.notifications.urls, *env_urls()]:
        channel_id = "apprise:" + hashlib.sha256(url.encode()).hexdigest()[:12]
        if channel_id in seen:
            continue
        seen.add(channel_id)
        found.append(Channel(channel_id, "apprise", transport_class("apprise")(url)))
    return found


def channel(channel_id: str) -> Channel | None:
    return next((c for c in channels() if c.id == channel_id), None)
