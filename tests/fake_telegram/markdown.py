"""Telegram's MarkdownV2 and legacy Markdown parse modes, from the Bot API's formatting
rules and Telegram's error messages (Markdown libraries know neither Telegram's reserved
characters nor ``||spoiler||``)."""

from __future__ import annotations

import re
from typing import Any

from tests.fake_telegram.text import TextOut, byte_offset, normalize_url, parse_error

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
    out = TextOut()
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
            stack.append((kind, out.pos, byte_offset(src, i)))

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
            stack.append(("pre", out.pos, byte_offset(src, i)))
            if language:
                pre_languages[len(stack)] = language.group(1)
            i += 3 + (language.end() if language else 0)
            continue
        if char == "`":
            stack.append(("code", out.pos, byte_offset(src, i)))
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
            stack.append(("text_link", out.pos, byte_offset(src, i)))
            link_parts.append(len(out.parts))
        elif char == "]" and top == "text_link":
            _, start, _ = stack.pop()
            text_start = link_parts.pop()
            target = "".join(out.parts[text_start:])  # "[telegram.org]" links to itself
            if src.startswith("(", i + 1):
                url = re.match(r"((?:\\.|[^)\\])*)\)", src[i + 2 :])
                if url is None:
                    raise parse_error(f"Can't find end of a URL at byte offset {byte_offset(src, i + 2)}")
                target, width = re.sub(r"\\(.)", r"\1", url.group(1)), 2 + url.end()
            if normalized := normalize_url(target):
                out.entity("text_link", start, url=normalized)
        elif char in _V2_RESERVED:
            raise parse_error(
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
        raise parse_error(f"Can't find end of {name} entity at byte offset {at}")
    return out.result()


# ----------------------------------------------------------------------------- Markdown (legacy)

_V1_KINDS = {"*": "bold", "_": "italic", "`": "code"}


def parse_markdown(src: str) -> tuple[str, list[dict[str, Any]]]:
    """Telegram's legacy Markdown (no nesting, ``\\`` escapes only ``_*`[``).

    Raises:
        ApiError: 400 ``can't parse entities: Can't find end of the entity starting at
            byte offset N``.
    """
    out = TextOut()
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
        unclosed = parse_error(
            f"Can't find end of the entity starting at byte offset {byte_offset(src, i)}"
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
