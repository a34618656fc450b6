"""The transport interface every notification channel implements."""

from __future__ import annotations

from dataclasses import dataclass


class TransportError(Exception):
    """A delivery that did not happen. `permanent` is True when retrying cannot help
    (a URL apprise does not understand, a missing token), False for network errors,
    timeouts and server errors."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


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
