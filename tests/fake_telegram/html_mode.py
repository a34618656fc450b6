"""Telegram's HTML parse mode, written from the Bot API's formatting rules and the
messages Telegram answers (no HTML library parses Telegram's subset or words its errors)."""

from __future__ import annotations

import re
from typing import Any

from tests.fake_telegram.errors import bad_request
from tests.fake_telegram.text import TextOut, byte_offset, normalize_url, parse_error

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


def _is_space(char: str) -> bool:
    return char in " \t\r\n\f\v"


def _start_tag(src: str, i: int, offset: int) -> tuple[str, dict[str, str], int]:
    """Parse the start tag at ``src[i] == "<"``; returns its name, attributes and the
    index after its ``>``. The rules and messages are Telegram's."""
    n, j = len(src), i + 1
    while j < n and not _is_space(src[j]) and src[j] != ">":
        j += 1
    if j >= n:
        raise parse_error(f"Unclosed start tag at byte offset {offset}")
    name = src[i + 1 : j].lower()
    if name not in _HTML_TAGS:
        raise parse_error(f'Unsupported start tag "{name}" at byte offset {offset}')
    attrs: dict[str, str] = {}
    while True:
        while j < n and _is_space(src[j]):
            j += 1
        if j >= n:
            raise parse_error(f'Unclosed start tag "{name}" at byte offset {offset}')
        if src[j] == ">":
            return name, attrs, j + 1
        begin = j
        while j < n and not _is_space(src[j]) and src[j] not in "=>":
            j += 1
        attribute = src[begin:j].lower()
        if not attribute:
            raise parse_error(f'Empty attribute name in the tag "{name}" at byte offset {byte_offset(src, begin)}')
        while j < n and _is_space(src[j]):
            j += 1
        if (j >= n or src[j] != "=") and attribute == "expandable":
            attrs[attribute] = ""  # <blockquote expandable>, the one valueless attribute
            continue
        if j >= n or src[j] != "=":
            raise parse_error(
                f'Expected equal sign in declaration of an attribute of the tag "{name}" at byte offset {offset}'
            )
        j += 1
        while j < n and _is_space(src[j]):
            j += 1
        if j >= n:
            raise parse_error(f'Unclosed start tag "{name}" at byte offset {offset}')
        if src[j] in "\"'":
            close = src.find(src[j], j + 1)
            if close < 0:
                raise parse_error(f"Unclosed start tag at byte offset {offset}")
            attrs[attribute], j = _unescape(src[j + 1 : close]), close + 1
            continue
        begin = j
        while j < n and (src[j].isascii() and src[j].isalnum() or src[j] in ".-"):
            j += 1
        if j < n and not _is_space(src[j]) and src[j] != ">":
            raise parse_error(f"Unexpected end of name token at byte offset {byte_offset(src, j)}")
        attrs[attribute] = src[begin:j]


def parse_html(src: str) -> tuple[str, list[dict[str, Any]]]:
    """Telegram's HTML parse mode: returns the plain text and its entities.

    Raises:
        ApiError: 400 ``can't parse entities: ...`` for a tag Telegram does not support
            (``<br>``, ``<div>``, a bare ``<`` as in ``loss < limit``), an unclosed or
            mismatched tag, a malformed attribute.
    """
    out = TextOut()
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
        offset = byte_offset(src, i)
        if not src.startswith("</", i):
            name, attrs, i = _start_tag(src, i, offset)
            if name == "span" and attrs.get("class") != "tg-spoiler":
                raise parse_error(f'Tag "span" must have class "tg-spoiler" at byte offset {offset}')
            if name == "tg-emoji" and not attrs.get("emoji-id", "").isdigit():
                raise bad_request("Invalid custom emoji identifier specified")
            stack.append((name, out.pos, attrs, len(out.parts)))
            continue
        if not stack:
            raise parse_error(f"Unexpected end tag at byte offset {offset}")
        j = i + 2
        while j < len(src) and not _is_space(src[j]) and src[j] != ">":
            j += 1
        name = src[i + 2 : j].lower()
        while j < len(src) and _is_space(src[j]):
            j += 1
        if j >= len(src) or src[j] != ">":
            raise parse_error(f"Unclosed end tag at byte offset {offset}")
        tag = stack[-1][0]
        if name and name != tag:  # "</>" closes whatever is open
            raise parse_error(f'Unmatched end tag at byte offset {offset}, expected "</{tag}>", found "</{name}>"')
        _close_html(out, stack.pop(), stack)
        i = j + 1
    if stack:
        raise parse_error(f'Can\'t find end tag corresponding to start tag "{stack[-1][0]}"')
    return out.result()


def _close_html(out: TextOut, entry: tuple[str, int, dict[str, str], int], stack: list) -> None:
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
