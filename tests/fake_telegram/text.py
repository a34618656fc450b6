"""Text primitives shared by the parse modes: UTF-16 lengths, the text being built with
its entities, URLs as Telegram stores them, and the bot_command entities of user text."""

from __future__ import annotations

import re
from typing import Any

from tests.fake_telegram.errors import ApiError, bad_request

#: Longest text of a message, in UTF-16 units, counted after entity parsing.
MAX_TEXT_LENGTH = 4096


def u16len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (the unit of Telegram's entity offsets)."""
    return len(text.encode("utf-16-le")) // 2


def parse_error(what: str) -> ApiError:
    """Telegram's 400 for text its parse mode cannot read."""
    return bad_request(f"can't parse entities: {what}")


class TextOut:
    """Plain text being built, its UTF-16 position, and the entities found so far."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.entities: list[dict[str, Any]] = []

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.pos += u16len(text)

    def entity(self, kind: str, start: int, end: int | None = None, **extra: Any) -> None:
        end = self.pos if end is None else end
        if end > start:
            self.entities.append({"type": kind, "offset": start, "length": end - start, **extra})

    def text(self) -> str:
        return "".join(self.parts)

    def result(self) -> tuple[str, list[dict[str, Any]]]:
        """The text and its entities, outer before inner, in text order."""
        return self.text(), sorted(self.entities, key=lambda e: (e["offset"], -e["length"]))


def byte_offset(src: str, index: int) -> int:
    return len(src[:index].encode("utf-8"))


def normalize_url(url: str) -> str | None:
    """The URL Telegram stores for a link (``telegram.org`` -> ``http://telegram.org/``),
    or None when Telegram would drop the link (no host with a dot, unknown scheme)."""
    url = url.strip()
    if not url or re.search(r"\s", url):
        return None
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", url)
    if scheme and scheme.group(1).lower() not in ("http", "https"):
        return url if scheme.group(1).lower() in ("tg", "ftp", "mailto", "tonsite") else None
    name, _, rest = (url if scheme else f"http://{url}").partition("://")
    host_end = min((rest.find(c) for c in "/?#" if c in rest), default=len(rest))
    host = rest[:host_end]
    if "." not in host.strip(".") and host.lower() != "localhost":
        return None
    if host_end == len(rest) or rest[host_end] != "/":
        rest = f"{host}/{rest[host_end:]}"
    return f"{name.lower()}://{rest}"


_COMMAND_RE = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![A-Za-z0-9_@])")


def command_entities(text: str) -> list[dict[str, Any]]:
    """The ``bot_command`` entities Telegram attaches to a user's text (``/status``,
    ``/halt@some_bot``): PTB's ``CommandHandler`` only matches a message whose first
    entity is a ``bot_command`` at offset 0."""
    return [
        {"type": "bot_command", "offset": u16len(text[: m.start()]), "length": u16len(m.group(0))}
        for m in _COMMAND_RE.finditer(text)
    ]
