"""Models for notification deliveries (Telegram, apprise URLs)."""

from __future__ import annotations
