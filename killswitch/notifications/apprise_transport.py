"""Any channel apprise understands (Slack, e-mail, JSON/webhook, ntfy, ...), one URL each."""

from __future__ import annotations

import logging

import apprise

from .base import Message, Transport, TransportError

# Per-attempt network timeout: a slow channel must not hold a worker for long;
# Celery retries it later.
TIMEOUT_SECONDS = 10


class AppriseTransport(Transport):
    kind = "apprise"

    def __init__(self, url: str) -> None:
        self.url = url
        self._plugin = apprise.Apprise.instantiate(url)

    @property
    def target(self) -> str:
        if self._plugin is None:
            scheme = self.url.split("://", 1)[0] if "://" in self.url else "?"
            return f"{scheme}:// (not understood by apprise)"
        return self._plugin.url(privacy=True)[:300]

    def notify(self, message: Message) -> None:
        if self._plugin is None:
            raise TransportError(
                f"apprise does not understand the URL {self.target!r}; check notifications.urls / NOTIFY_URLS",
                permanent=True,
            )
        notifier = apprise.Apprise()
        notifier.add(self._plugin)
        # apprise reports failures through logging, not exceptions: capture them so the
        # stored error says what went wrong.
        with apprise.LogCapture(level=logging.WARNING) as log:
            try:
                ok = notifier.notify(body=message.body, title=message.title, timeout=TIMEOUT_SECONDS)
            except Exception as exc:  # a plugin bug must become a recorded failure
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
            captured = log.getvalue().strip()
        if not ok:
            lines = [line.split(" - ", 2)[-1] for line in captured.splitlines() if line.strip()]
            raise TransportError("; ".join(lines)[-1000:] or "apprise reported a failed delivery")
