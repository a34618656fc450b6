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

import re
from typing import Any

from tests.fake_telegram.errors import ApiError, bad_request

#: Longest text of a message, counted after entity parsing.
MAX_TEXT_LENGTH = 4096


def u16len(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (the unit of Telegram's entity offsets)."""
    return len(text.encode("utf-16-le")) // 2


def _parse_error(what: str) -> ApiError:
    return bad_request(f"can't parse entities: {what}")


class _Out:
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


def _byte_offset(src: str, index: int) -> int:
    return len(src[:index].encode("utf-8"))


# ----------------------------------------------------------------------------- HTML

_HTML_TAGS = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline",
    "ins": "underline", "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough",
    "tg-spoiler": "spoiler", "span": "spoiler", "a": "text_link", "code": "code", "pre": "pre",
    "blockquote": "blockquote", "tg-emoji": "custom_emoji",
}  # fmt: skip
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
# Telegram decodes these four names and numeric references, the ";" being optional;
# anything else after "&" stays as written ("&laquo;" is sent as "&laquo;").
_ENTITY_RE = re.compile(r"&(?:(lt|gt|amp|quot)|#([0-9]{1,8})|#[xX]([0-9a-fA-F]{1,8}));?")


def _html_entity(src: str, i: int) -> tuple[str, int] | None:
    match = _ENTITY_RE.match(src, i)
    if match is None:
        return None
    if match.group(1):
        return _NAMED_ENTITIES[match.group(1)], match.end()
    code = int(match.group(2)) if match.group(2) else int(match.group(3), 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code), match.end()


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        decoded = _html_entity(value, i) if value[i] == "&" else None
        out.append(decoded[0] if decoded else value[i])
        i = decoded[1] if decoded else i + 1
    return "".join(out)


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


def _is_space(char: str) -> bool:
    return char in " \t\r\n\f\v"


def _start_tag(src: str, i: int, offset: int) -> tuple[str, dict[str, str], int]:
    """Parse the start tag at ``src[i] == "<"``; returns its name, attributes and the
    index after its ``>``. The rules and messages are Telegram's."""
    n, j = len(src), i + 1
    while j < n and not _is_space(src[j]) and src[j] != ">":
        j += 1
    if j >= n:
        raise _parse_error(f"Unclosed start tag at byte offset {offset}")
    name = src[i + 1 : j].lower()
    if name not in _HTML_TAGS:
        raise _parse_error(f'Unsupported start tag "{name}" at byte offset {offset}')
    attrs: dict[str, str] = {}
    while True:
        while j < n and _is_space(src[j]):
            j += 1
        if j >= n:
            raise _parse_error(f'Unclosed start tag "{name}" at byte offset {offset}')
        if src[j] == ">":
            return name, attrs, j + 1
        begin = j
        while j < n and not _is_space(src[j]) and src[j] not in "=>":
            j += 1
        attribute = src[begin:j].lower()
        if not attribute:
            raise _parse_error(f'Empty attribute name in the tag "{name}" at byte offset {_byte_offset(src, begin)}')
        while j < n and _is_space(src[j]):
            j += 1
        if (j >= n or src[j] != "=") and attribute == "expandable":
            attrs[attribute] = ""  # <blockquote expandable>, the one valueless attribute
            continue
        if j >= n or src[j] != "=":
            raise _parse_error(
                f'Expected equal sign in declaration of an attribute of the tag "{name}" at byte offset {offset}'
            )
        j += 1
        while j < n and _is_space(src[j]):
            j += 1
        if j >= n:
            raise _parse_error(f'Unclosed start tag "{name}" at byte offset {offset}')
        if src[j] in "\"'":
            close = src.find(src[j], j + 1)
            if close < 0:
                raise _parse_error(f"Unclosed start tag at byte offset {offset}")
            attrs[attribute], j = _unescape(src[j + 1 : close]), close + 1
            continue
        begin = j
        while j < n and (src[j].isascii() and src[j].isalnum() or src[j] in ".-"):
            j += 1
        if j < n and not _is_space(src[j]) and src[j] != ">":
            raise _parse_error(f"Unexpected end of name token at byte offset {_byte_offset(src, j)}")
        attrs[attribute] = src[begin:j]


def parse_html(src: str) -> tuple[str, list[dict[str, Any]]]:
    """Telegram's HTML parse mode: returns the plain text and its entities.

    Raises:
        ApiError: 400 ``can't parse entities: ...`` for a tag Telegram does not support
            (``<br>``, ``<div>``, a bare ``<`` as in ``loss < limit``), an unclosed or
            mismatched tag, a malformed attribute.
    """
    out = _Out()
    stack: list[tuple[str, int, dict[str, str], int]] = []  # tag, start, attributes, parts index
    i = 0
    while i < len(src):
        char = src[i]
        decoded = _html_entity(src, i) if char == "&" else None
        if decoded is not None:
            out.add(decoded[0])
            i = decoded[1]
            continue
        if char != "<":
            out.add(char)
            i += 1
            continue
        offset = _byte_offset(src, i)
        if not src.startswith("</", i):
            name, attrs, i = _start_tag(src, i, offset)
            if name == "span" and attrs.get("class") != "tg-spoiler":
                raise _parse_error(f'Tag "span" must have class "tg-spoiler" at byte offset {offset}')
            if name == "tg-emoji" and not attrs.get("emoji-id", "").isdigit():
                raise bad_request("Invalid custom emoji identifier specified")
            stack.append((name, out.pos, attrs, len(out.parts)))
            continue
        if not stack:
            raise _parse_error(f"Unexpected end tag at byte offset {offset}")
        j = i + 2
        while j < len(src) and not _is_space(src[j]) and src[j] != ">":
            j += 1
        name = src[i + 2 : j].lower()
        while j < len(src) and _is_space(src[j]):
            j += 1
        if j >= len(src) or src[j] != ">":
            raise _parse_error(f"Unclosed end tag at byte offset {offset}")
        tag = stack[-1][0]
        if name and name != tag:  # "</>" closes whatever is open
            raise _parse_error(f'Unmatched end tag at byte offset {offset}, expected "</{tag}>", found "</{name}>"')
        _close_html(out, stack.pop(), stack)
        i = j + 1
    if stack:
        raise _parse_error(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return out.result()


def _close_html(out: _Out, entry: tuple[str, int, dict[str, str], int], stack: list) -> None:
    tag, start, attrs, first_part = entry
    kind = _HTML_TAGS[tag]
    language = attrs.get("class", "")
    if tag == "code" and stack and stack[-1][0] == "pre" and len(language) > len("language-") and language.startswith("language-"):
        # <pre><code class="language-x"> is one pre entity with a language, as at Telegram.
        stack[-1][2]["language"] = language.removeprefix("language-")
        return
    if kind == "text_link":
        url = normalize_url(attrs["href"] if "href" in attrs else "".join(out.parts[first_part:]))
        if url:
            out.entity("text_link", start, url=url)
    elif kind == "pre" and attrs.get("language"):
        out.entity("pre", start, language=attrs["language"])
    elif kind == "custom_emoji":
        out.entity("custom_emoji", start, custom_emoji_id=attrs["emoji-id"])
    elif kind == "blockquote" and "expandable" in attrs:
        out.entity("expandable_blockquote", start)
    else:
        out.entity(kind, start)


# ----------------------------------------------------------------------------- MarkdownV2

_V2_RESERVED = set("_*[]()~`>#+-=|{}.!")
_V2_NAMES = {
    "bold": "Bold", "italic": "Italic", "underline": "Underline", "strikethrough": "Strikethrough",
    "spoiler": "Spoiler", "code": "Code", "pre": "Pre", "text_link": "TextUrl",
}  # fmt: skip


def parse_markdown_v2(src: str) -> tuple[str, list[dict[str, Any]]]:
    """Telegram's MarkdownV2: returns the plain text and its entities.

    Raises:
        ApiError: 400 ``can't parse entities: Character '.' is reserved and must be
            escaped with the preceding '\\'`` and ``Can't find end of Bold entity at
            byte offset N`` as Telegram words them.
    """
    out = _Out()
    stack: list[tuple[str, int, int]] = []  # kind, start, byte offset of the opening mark
    quote_start: int | None = None  # a run of lines starting with ">" is one blockquote
    quote_end = 0
    pre_languages: dict[int, str] = {}  # stack depth of an open pre -> its language
    link_parts: list[int] = []  # where each open link's text begins in out.parts
    line_start = True
    i = 0

    def toggle(kind: str) -> None:
        # A mark closes the innermost entity if it is of its kind, else opens a new one.
        if stack and stack[-1][0] == kind:
            _, start, _ = stack.pop()
            out.entity(kind, start)
        else:
            stack.append((kind, out.pos, _byte_offset(src, i)))

    while i < len(src):
        char = src[i]
        top = stack[-1][0] if stack else None
        if char == "\\" and i + 1 < len(src) and 0 < ord(src[i + 1]) < 127:
            out.add(src[i + 1])
            i, line_start = i + 2, False
            continue
        if top in ("code", "pre"):
            closing = "```" if top == "pre" else "`"
            if src.startswith(closing, i):
                language = pre_languages.pop(len(stack), None)
                _, start, _ = stack.pop()
                out.entity(top, start, **({"language": language} if language else {}))
                i += len(closing)
            else:
                out.add(char)
                i += 1
            continue
        if line_start and char == ">":
            quote_start = out.pos if quote_start is None else quote_start
            i, line_start = i + 1, False
            continue
        if line_start and quote_start is not None:
            out.entity("blockquote", quote_start, quote_end)
            quote_start = None
        line_start = False
        width = 1
        if src.startswith("```", i):
            # "```lang\n" or "```lang " names the language (a space stays in the text)
            language = re.match(r"([^\s`]+)(\r\n|\n\r|\n|\r|(?=[ \t]))", src[i + 3 :])
            stack.append(("pre", out.pos, _byte_offset(src, i)))
            if language:
                pre_languages[len(stack)] = language.group(1)
            i += 3 + (language.end() if language else 0)
            continue
        if char == "`":
            stack.append(("code", out.pos, _byte_offset(src, i)))
        elif char == "*":
            toggle("bold")
        elif char == "_" and src.startswith("__", i):
            toggle("underline")
            width = 2
        elif char == "_":
            toggle("italic")
        elif char == "~":
            toggle("strikethrough")
        elif char == "|" and src.startswith("||", i):
            toggle("spoiler")
            width = 2
        elif char == "[":
            stack.append(("text_link", out.pos, _byte_offset(src, i)))
            link_parts.append(len(out.parts))
        elif char == "]" and top == "text_link":
            _, start, _ = stack.pop()
            text_start = link_parts.pop()
            target = "".join(out.parts[text_start:])  # "[telegram.org]" links to itself
            if src.startswith("(", i + 1):
                url = re.match(r"((?:\\.|[^)\\])*)\)", src[i + 2 :])
                if url is None:
                    raise _parse_error(f"Can't find end of a URL at byte offset {_byte_offset(src, i + 2)}")
                target, width = re.sub(r"\\(.)", r"\1", url.group(1)), 2 + url.end()
            if normalized := normalize_url(target):
                out.entity("text_link", start, url=normalized)
        elif char in _V2_RESERVED:
            raise _parse_error(
                f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
            )
        else:
            if char == "\n" and quote_start is not None:
                quote_end = out.pos  # the quote ends before the newline closing its line
            out.add(char)
            line_start = char == "\n"
        i += width
    if quote_start is not None:
        out.entity("blockquote", quote_start)
    if stack:
        kind, _, at = stack[-1]
        name = "PreCode" if kind == "pre" and len(stack) in pre_languages else _V2_NAMES[kind]
        raise _parse_error(f"Can't find end of {name} entity at byte offset {at}")
    return out.result()


# ----------------------------------------------------------------------------- Markdown (legacy)

_V1_KINDS = {"*": "bold", "_": "italic", "`": "code"}


def parse_markdown(src: str) -> tuple[str, list[dict[str, Any]]]:
    """Telegram's legacy Markdown (no nesting, ``\\`` escapes only ``_*`[``).

    Raises:
        ApiError: 400 ``can't parse entities: Can't find end of the entity starting at
            byte offset N``.
    """
    out = _Out()
    i = 0
    while i < len(src):
        char = src[i]
        if char == "\\" and src[i + 1 : i + 2] in ("_", "*", "`", "["):
            out.add(src[i + 1])
            i += 2
            continue
        if char not in "_*`[":
            out.add(char)
            i += 1
            continue
        unclosed = _parse_error(
            f"Can't find end of the entity starting at byte offset {_byte_offset(src, i)}"
        )
        start = out.pos
        if src.startswith("```", i):
            end = src.find("```", i + 3)
            if end < 0:
                raise unclosed
            body = src[i + 3 : end]
            language = re.match(r"([^\s`]*)\n", body)
            out.add(body[language.end() :] if language else body)
            out.entity("pre", start, **({"language": language.group(1)} if language and language.group(1) else {}))
            i = end + 3
        elif char == "[":
            end = src.find("](", i + 1)
            close = src.find(")", end + 2) if end >= 0 else -1
            if close < 0:
                raise unclosed
            out.add(src[i + 1 : end])
            out.entity("text_link", start, url=src[end + 2 : close])
            i = close + 1
        else:
            end = src.find(char, i + 1)
            if end < 0:
                raise unclosed
            out.add(src[i + 1 : end])
            out.entity(_V1_KINDS[char], start)
            i = end + 1
    return out.result()


# ----------------------------------------------------------------------------- message text

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


_COMMAND_RE = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![A-Za-z0-9_@])")


def command_entities(text: str) -> list[dict[str, Any]]:
    """The ``bot_command`` entities Telegram attaches to a user's text (``/status``,
    ``/halt@some_bot``): PTB's ``CommandHandler`` only matches a message whose first
    entity is a ``bot_command`` at offset 0."""
    return [
        {"type": "bot_command", "offset": u16len(text[: m.start()]), "length": u16len(m.group(0))}
        for m in _COMMAND_RE.finditer(text)
    ]
