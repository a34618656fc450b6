"""The transport interface every notification channel implements."""

from __future__ import annotations

from dataclasses import dataclass


class TransportError(Exception):
    """A delivery that did not happen. `permanent` is True when retrying cannot help
    (a URL apprise does not understand, a missing token), False for network errors,
    timeouts and server errors. `retry_after` is the channel's own "not before" in
    seconds (Telegram's 429), which the next try waits for at least."""

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after


@dataclass(frozen=True)
class Message:
    """What to send: a one-line title and a plain-text body."""

    title: str
    body: str


class Transport:
    """One configured channel. Subclasses implement `notify`.

    `target` is a printable description with secrets masked; it is stored on the
    delivery rows, so it must never contain a token or password.
    """

    kind: str = ""

    @property
    def target(self) -> str:
        return self.kind

    def notify(self, message: Message) -> None:
        """Deliver `message` or raise TransportError. Must not raise anything else."""
        raise NotImplementedError
