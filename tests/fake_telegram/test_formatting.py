"""Parse modes as Telegram applies them: what a bot's formatted text turns into, and the
mistakes Telegram refuses (offsets are UTF-8 bytes in errors, UTF-16 units in entities)."""

from __future__ import annotations

import pytest

from tests.fake_telegram.errors import ApiError
from tests.fake_telegram.formatting import (
    command_entities,
    normalize_url,
    parse_html,
    parse_markdown,
    parse_markdown_v2,
    render_text,
)

PREFIX = "Bad Request: can't parse entities: "


def refused(parser, text: str) -> str:
    with pytest.raises(ApiError) as caught:
        parser(text)
    assert caught.value.code == 400
    return caught.value.description.removeprefix(PREFIX)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("loss < limit", 'Unsupported start tag "" at byte offset 5'),
        ("x <b", "Unclosed start tag at byte offset 2"),
        ("⚠️<br>", 'Unsupported start tag "br" at byte offset 6'),
        ("<div>x</div>", 'Unsupported start tag "div" at byte offset 0'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<b>x</b", "Unclosed end tag at byte offset 4"),
        ("<b>HALT", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<i aba>x</i>", 'Expected equal sign in declaration of an attribute of the tag "i" at byte offset 0'),
        ("<i =x>x</i>", 'Empty attribute name in the tag "i" at byte offset 3'),
        ("<a href=x/>y</a>", "Unexpected end of name token at byte offset 9"),
        ('<a href="x>y</a>', "Unclosed start tag at byte offset 0"),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ],
)
def test_html_mistakes_are_refused_with_telegrams_message(text, message):
    assert refused(parse_html, text) == message


def test_html_renders_text_entities_and_links():
    assert parse_html("🏟 <b>HALT</b> &lt;global&gt; &amp; &laquo;x&raquo; &lt") == (
        "🏟 HALT <global> & &laquo;x&raquo; <",
        [{"type": "bold", "offset": 3, "length": 4}],
    )
    text, entities = parse_html('<i>a <b>b</b></i> <a href="telegram.org?&lt;">x</a> <a>y</a> <s></s>')
    assert text == "a b x y "
    assert entities == [
        {"type": "italic", "offset": 0, "length": 3},
        {"type": "bold", "offset": 2, "length": 1},
        {"type": "text_link", "offset": 4, "length": 1, "url": "http://telegram.org/?<"},
    ]  # "<a>y</a>" has no URL to link to, the empty <s> leaves nothing
    assert parse_html('<pre><code class="language-python">x = 1</code></pre>')[1] == [
        {"type": "pre", "offset": 0, "length": 5, "language": "python"}
    ]
    assert parse_html("<b>x</>")[1] == [{"type": "bold", "offset": 0, "length": 1}]
    assert parse_html("<blockquote expandable>q</blockquote>")[1][0]["type"] == "expandable_blockquote"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("loss 1.5%", "Character '.' is reserved and must be escaped with the preceding '\\'"),
        ("HALT!", "Character '!' is reserved and must be escaped with the preceding '\\'"),
        ("a-b", "Character '-' is reserved and must be escaped with the preceding '\\'"),
        ("🏟 🏟_abc", "Can't find end of Italic entity at byte offset 9"),
        ("🏟 🏟_ab * c _", "Can't find end of Italic entity at byte offset 17"),
        ("🏟 🏟_🏟 🏟__", "Can't find end of Underline entity at byte offset 19"),
        ("`code", "Can't find end of Code entity at byte offset 0"),
        ("```a", "Can't find end of Pre entity at byte offset 0"),
        ("```a b", "Can't find end of PreCode entity at byte offset 0"),
        ("[x](http://a", "Can't find end of a URL at byte offset 4"),
    ],
)
def test_markdown_v2_mistakes_are_refused_with_telegrams_message(text, message):
    assert refused(parse_markdown_v2, text) == message


def test_markdown_v2_renders_text_and_entities():
    assert parse_markdown_v2("*HALT* at 1\\.5% by _desk_ \\\\ \\➡") == (
        "HALT at 1.5% by desk \\ \\➡",
        [{"type": "bold", "offset": 0, "length": 4}, {"type": "italic", "offset": 16, "length": 4}],
    )
    text, entities = parse_markdown_v2("_a __b___ ||s|| ~t~ [l](https://x.example) [y\\.org]")
    assert text == "a b s t l y.org"
    assert [(e["type"], e["offset"], e["length"]) for e in entities] == [
        ("italic", 0, 3), ("underline", 2, 1), ("spoiler", 4, 1), ("strikethrough", 6, 1),
        ("text_link", 8, 1), ("text_link", 10, 5),
    ]  # fmt: skip
    assert entities[-1]["url"] == "http://y.org/"
    assert parse_markdown_v2("```python\nx = 1```") == ("x = 1", [{"type": "pre", "offset": 0, "length": 5, "language": "python"}])
    assert parse_markdown_v2("`a_b*c`")[0] == "a_b*c"  # no formatting inside code
    assert parse_markdown_v2(">quoted\n>more\nafter") == (
        "quoted\nmore\nafter",
        [{"type": "blockquote", "offset": 0, "length": 11}],
    )


def test_legacy_markdown():
    assert parse_markdown("*HALT* _now_ `x` [desk](https://d.example) 1.5!") == (
        "HALT now x desk 1.5!",
        [
            {"type": "bold", "offset": 0, "length": 4},
            {"type": "italic", "offset": 5, "length": 3},
            {"type": "code", "offset": 9, "length": 1},
            {"type": "text_link", "offset": 11, "length": 4, "url": "https://d.example"},
        ],
    )
    assert refused(parse_markdown, "a_b") == "Can't find end of the entity starting at byte offset 1"


def test_render_text_trims_counts_utf16_and_checks_the_mode():
    assert render_text("  <b>x</b>  ", "HTML") == ("x", [{"type": "bold", "offset": 0, "length": 1}])
    assert render_text("<b>x</b>", None) == ("<b>x</b>", [])
    assert render_text("🛑" * 2048, None)[0] == "🛑" * 2048  # 4096 UTF-16 units: the limit
    for text, mode, message in [
        ("🛑" * 2049, None, "Bad Request: message is too long"),
        ("<b> </b>", "html", "Bad Request: message text is empty"),
        ("", None, "Bad Request: message text is empty"),
        ("x", "bbcode", "Bad Request: unsupported parse_mode"),
    ]:
        with pytest.raises(ApiError) as caught:
            render_text(text, mode)
        assert caught.value.description == message


def test_command_entities_mark_every_command_in_utf16_units():
    assert command_entities("/status") == [{"type": "bot_command", "offset": 0, "length": 7}]
    assert command_entities("🛑 /halt@killswitch_test_bot now /x") == [
        {"type": "bot_command", "offset": 3, "length": 25},
        {"type": "bot_command", "offset": 33, "length": 2},
    ]
    assert command_entities("a/b and KILL") == []


def test_urls_are_normalized_or_dropped_like_telegram():
    assert normalize_url("telegram.org") == "http://telegram.org/"
    assert normalize_url("https://telegram.dog?") == "https://telegram.dog/?"
    assert normalize_url("https://x.example/a?b") == "https://x.example/a?b"
    assert normalize_url("tg://user?id=1") == "tg://user?id=1"
    assert normalize_url("asdasd") is None
    assert normalize_url("javascript:alert(1)") is None
