"""Message text as Telegram handles it: parse modes, entities, UTF-16 offsets, limits.

A bot that sends ``parse_mode=HTML`` with an unescaped ``<`` in a reason text, or
MarkdownV2 with an unescaped ``.``, gets ``400 Bad Request: can't parse entities`` from
Telegram and its message is lost; the fake answers the same way so tests catch it.
The parsers are written here from the Bot API's "Formatting options" rules because no
library implements Telegram's dialects of HTML and Markdown (``html.parser`` accepts
anything, Markdown libraries know neither ``||spoiler||`` nor Telegram's reserved
characters). The error texts are Telegram's for the common mistakes (unsupported or
unclosed tag, mismatched end tag, unescaped reserved character, unclosed entity).

Entity offsets and lengths count UTF-16 code units, as Telegram's do.
"""

from __future__ import annotations

from typing import Any

from tests.fake_telegram.errors import bad_request
from tests.fake_telegram.html_mode import parse_html
from tests.fake_telegram.markdown import parse_markdown, parse_markdown_v2
from tests.fake_telegram.text import MAX_TEXT_LENGTH, command_entities, normalize_url, u16len

__all__ = [
    "command_entities", "normalize_url", "parse_html", "parse_markdown", "parse_markdown_v2",
    "render_text", "u16len",
]  # fmt: skip

_PARSERS = {"html": parse_html, "markdownv2": parse_markdown_v2, "markdown": parse_markdown}


def render_text(text: str | None, parse_mode: str | None, *, what: str = "message text") -> tuple[str, list[dict[str, Any]]]:
    """The text and entities Telegram stores for a message sent with ``parse_mode``.

    Leading and trailing whitespace is trimmed, as Telegram does.

    Raises:
        ApiError: 400 ``unsupported parse_mode``, ``can't parse entities: ...``,
            ``message text is empty`` or ``message is too long``.
    """
    if not text:
        raise bad_request(f"{what} is empty")
    mode = (parse_mode or "").lower()
    if mode in ("", "none"):
        plain, entities = text, []
    elif mode in _PARSERS:
        plain, entities = _PARSERS[mode](text)
    else:
        raise bad_request("unsupported parse_mode")
    stripped = plain.strip()
    if not stripped:
        raise bad_request(f"{what} is empty")
    if u16len(stripped) > MAX_TEXT_LENGTH:
        raise bad_request("message is too long")
    lead, size = u16len(plain[: len(plain) - len(plain.lstrip())]), u16len(stripped)
    trimmed = []
    for entity in entities:
        begin = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, size)
        if end > begin:
            trimmed.append({**entity, "offset": begin, "length": end - begin})
    return stripped, trimmed
