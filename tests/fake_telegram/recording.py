"""What the fake Bot API remembers about the HTTP traffic: every request, and the faults
a test asked for."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from tests.fake_telegram.errors import ApiError, default_description

#: Statuses that Telegram's front end (nginx) answers with an HTML page, not JSON.
HTML_STATUSES = frozenset({502, 503, 504})


@dataclasses.dataclass
class RecordedRequest:
    """One HTTP request to the fake, as the bot made it.

    ``method`` is the Bot API method as the client spelled it (``getUpdates``);
    ``params`` holds the parameters the method read, typed as the method understood them
    (``offset`` an int, ``reply_markup`` a dict); ``raw`` every parameter as received
    (strings, JSON values re-encoded). ``status`` is the HTTP status answered, ``None``
    while the request is pending or when it ended without an answer (see ``outcome``:
    ``"pending"``, ``"answered"``, ``"client disconnected"``, ``"server down"``).
    Times are ``time.time()`` seconds.
    """

    method: str
    raw: dict[str, str]
    http_method: str
    content_type: str
    started_at: float
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    finished_at: float | None = None
    status: int | None = None
    response: Any = None
    outcome: str = "pending"

    @property
    def ok(self) -> bool:
        """True when the fake answered ``{"ok": true, ...}``."""
        return isinstance(self.response, dict) and self.response.get("ok") is True


@dataclasses.dataclass
class Fault:
    """An error the next matching request(s) get instead of being processed."""

    method: str  # lower-case Bot API method, or "*" for any
    status: int
    description: str
    retry_after: int | None
    html: bool
    remaining: int

    def error(self) -> ApiError:
        return ApiError(self.status, self.description, retry_after=self.retry_after)

    def html_page(self) -> bytes:
        """The page nginx answers in front of the Bot API for 502/503/504."""
        title = f"{self.status} {self.description}"
        return (
            f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
            f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n"
            "</body>\r\n</html>\r\n"
        ).encode()


@dataclasses.dataclass
class Delay:
    """The next matching request(s) are processed, then answered after ``seconds``."""

    method: str
    seconds: float
    remaining: int


#: How often a bounded wait re-checks its predicate besides on every change.
_RECHECK_INTERVAL = 0.02


class Recorder:
    """Thread-safe request log and fault queue; ``changed`` is notified on every change."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._faults: list[Fault] = []
        self._delays: list[Delay] = []

    # ------------------------------------------------------------------ requests

    def begin(self, method: str, raw: dict[str, str], http_method: str, content_type: str) -> RecordedRequest:
        request = RecordedRequest(method, raw, http_method, content_type, time.time())
        with self.changed:
            self._requests.append(request)
            self.changed.notify_all()
        return request

    def finish(self, request: RecordedRequest, *, status: int | None, response: Any, outcome: str) -> None:
        with self.changed:
            request.status, request.response, request.outcome = status, response, outcome
            request.finished_at = time.time()
            self.changed.notify_all()

    def requests(self, method: str | None = None) -> list[RecordedRequest]:
        with self.changed:
            return [r for r in self._requests if method is None or r.method.lower() == method.lower()]

    def wait_for(self, predicate: Callable[[], Any], timeout: float) -> Any:
        """Wait until ``predicate()`` (called under the lock) is truthy; return its value.

        Raises:
            TimeoutError: when it is still falsy after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self.changed:
            while not (value := predicate()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"not seen within {timeout} s")
                self.changed.wait(min(remaining, _RECHECK_INTERVAL))  # the predicate may read state of ours or the test's
            return value

    # ------------------------------------------------------------------ faults

    def add_fault(
        self,
        method: str,
        status: int,
        description: str | None,
        *,
        retry_after: int | None,
        times: int,
        html: bool | None,
    ) -> None:
        """Queue ``times`` failures of ``method`` (``"*"``: any method).

        Raises:
            ValueError: for a status that is no error, a 429 without ``retry_after``
                (Telegram always sends one) or ``times`` < 1.
        """
        if not 400 <= status <= 599:
            raise ValueError(f"status must be an HTTP error status (400..599), got {status}")
        if status == 429 and (retry_after is None or retry_after < 1):
            raise ValueError("a 429 needs retry_after >= 1 (seconds): Telegram always sends it")
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times}")
        page = status in HTML_STATUSES if html is None else html
        text = description or (
            _phrase(status) if page else default_description(status, retry_after)
        )
        with self.changed:
            self._faults.append(Fault(method.lower(), status, text, retry_after, page, times))

    def add_delay(self, method: str, seconds: float, times: int) -> None:
        """Delay the answers to the next ``times`` calls of ``method``.

        Raises:
            ValueError: for a negative delay or ``times`` < 1.
        """
        if seconds < 0 or times < 1:
            raise ValueError(f"need seconds >= 0 and times >= 1, got {seconds} and {times}")
        with self.changed:
            self._delays.append(Delay(method.lower(), seconds, times))

    def take_fault(self, method: str) -> Fault | None:
        return self._take(self._faults, method)

    def take_delay(self, method: str) -> float:
        delay = self._take(self._delays, method)
        return delay.seconds if delay else 0.0

    def _take(self, queue: list, method: str) -> Any:
        with self.changed:
            for item in queue:
                if item.method in (method.lower(), "*"):
                    item.remaining -= 1
                    if item.remaining == 0:
                        queue.remove(item)
                    return item
        return None

    def clear_faults(self) -> None:
        with self.changed:
            self._faults.clear()
            self._delays.clear()


def _phrase(status: int) -> str:
    return {502: "Bad Gateway", 503: "Service Temporarily Unavailable", 504: "Gateway Time-out"}.get(
        status, default_description(status)
    )
