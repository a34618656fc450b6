"""The one error type of the fake Bot API: what the real API answers with ``"ok": false``."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

#: The description Telegram gives a getUpdates poller that another poller displaced.
CONFLICT_OTHER_POLLER = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
)
#: The description of getUpdates while a webhook is set.
CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)

_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: CONFLICT_OTHER_POLLER,
    500: "Internal Server Error",
}


def default_description(status: int, retry_after: int | None = None) -> str:
    """The description Telegram puts on an error of this status when nothing more specific applies."""
    if status == 429:
        return f"Too Many Requests: retry after {retry_after}"
    if status in _DEFAULT_DESCRIPTIONS:
        return _DEFAULT_DESCRIPTIONS[status]
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"Error {status}"


class ApiError(Exception):
    """A Bot API error answer: HTTP status ``code`` with the JSON error envelope.

    ``description`` is the full text Telegram sends (``"Bad Request: chat not found"``);
    ``retry_after`` and ``migrate_to_chat_id`` become the envelope's ``parameters``.
    """

    def __init__(
        self,
        code: int,
        description: str | None = None,
        *,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
    ) -> None:
        self.code = code
        self.description = description or default_description(code, retry_after)
        self.retry_after = retry_after
        self.migrate_to_chat_id = migrate_to_chat_id
        super().__init__(f"{code} {self.description}")

    def envelope(self) -> dict[str, Any]:
        """The JSON body Telegram answers: ``{"ok": false, "error_code", "description"[, "parameters"]}``."""
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        parameters: dict[str, int] = {}
        if self.retry_after is not None:
            parameters["retry_after"] = self.retry_after
        if self.migrate_to_chat_id is not None:
            parameters["migrate_to_chat_id"] = self.migrate_to_chat_id
        if parameters:
            body["parameters"] = parameters
        return body


def bad_request(what: str) -> ApiError:
    """A 400 with Telegram's ``Bad Request: `` prefix."""
    return ApiError(400, f"Bad Request: {what}")


class ConnectionDropped(Exception):
    """The HTTP exchange ends without an answer: the server went down or the client left."""
