"""The sandbox's formatting parsers (bot.sandbox.entities), without a server: HTML, MarkdownV2
and legacy Markdown into plain text and entities, Telegram's trimming, ``bot_command``
entities, and the exact ``can't parse entities`` errors."""

from __future__ import annotations

import pytest

from bot.sandbox.entities import (
    HTML_TAG_ENTITIES,
    PARSERS,
    EntityParseError,
    command_entities,
    parse_html,
    parse_markdown,
    parse_markdown_v2,
    trim,
    u16,
)
from bot.sandbox.protocol import JSONDict


def entity(kind: str, offset: int, length: int, **extra: str) -> JSONDict:
    return {"type": kind, "offset": offset, "length": length, **extra}


class TestUtf16:
    @pytest.mark.parametrize(
        ("text", "length"), [("", 0), ("abc", 3), ("é", 1), ("中文", 2), ("😀", 2), ("a😀b", 4)]
    )
    def test_length_in_code_units(self, text: str, length: int) -> None:
        assert u16(text) == length


_REQUIRED_ATTRIBUTES = {
    "span": ' class="tg-spoiler"',
    "tg-emoji": ' emoji-id="42"',
    "a": ' href="u"',
}


class TestHtml:
    @pytest.mark.parametrize(("tag", "kind"), sorted(HTML_TAG_ENTITIES.items()))
    def test_every_tag_makes_its_entity(self, tag: str, kind: str) -> None:
        text, entities = parse_html(f"x<{tag}{_REQUIRED_ATTRIBUTES.get(tag, '')}>yz</{tag}>")
        assert text == "xyz"
        assert entities[0]["type"] == kind
        assert (entities[0]["offset"], entities[0]["length"]) == (1, 2)

    def test_tags_are_case_insensitive_and_nest(self) -> None:
        text, entities = parse_html("<B>bold <I>both</i></b> plain")
        assert text == "bold both plain"
        assert entities == [entity("bold", 0, 9), entity("italic", 5, 4)]

    def test_entities_sorted_by_offset_then_longest_first(self) -> None:
        _, entities = parse_html("<u><b>ab</b>c</u><i>d</i>")
        assert entities == [
            entity("underline", 0, 3),
            entity("bold", 0, 2),
            entity("italic", 3, 1),
        ]

    def test_offsets_count_utf16_code_units(self) -> None:
        text, entities = parse_html("😀 <b>中😀</b>")
        assert text == "😀 中😀"
        assert entities == [entity("bold", 3, 3)]

    @pytest.mark.parametrize(
        ("html", "text"),
        [
            ("&lt;&gt;&amp;&quot;", '<>&"'),
            ("&#65;&#x42;&#X43;", "ABC"),
            ("&#x1F600;", "😀"),
            ("&nbsp; &bogus; &#xD800; &#0; a & b", "&nbsp; &bogus; &#xD800; &#0; a & b"),
        ],
    )
    def test_character_references(self, html: str, text: str) -> None:
        assert parse_html(html) == (text, [])

    def test_references_count_in_offsets(self) -> None:
        assert parse_html("&#x1F600;<b>x</b>")[1] == [entity("bold", 2, 1)]

    def test_links(self) -> None:
        _, entities = parse_html(
            "<a href=\"https://x.y/?a=1&amp;b=2\">q</a><a href='s'>s</a><a href=u.v>u</a>"
        )
        assert entities == [
            entity("text_link", 0, 1, url="https://x.y/?a=1&b=2"),
            entity("text_link", 1, 1, url="s"),
            entity("text_link", 2, 1, url="u.v"),
        ]

    def test_link_without_href_is_plain_text(self) -> None:
        assert parse_html("<a>x</a><a href=''>y</a>") == ("xy", [])

    def test_pre_takes_the_language_of_its_code(self) -> None:
        text, entities = parse_html('<pre><code class="language-python">x = 1</code></pre>')
        assert text == "x = 1"
        assert entities == [entity("pre", 0, 5, language="python")]

    @pytest.mark.parametrize("code", ["<code>", '<code class="language-">', '<code class="py">'])
    def test_code_in_pre_without_language(self, code: str) -> None:
        assert parse_html(f"<pre>{code}x</code></pre>") == ("x", [entity("pre", 0, 1)])

    def test_code_outside_pre_keeps_no_language(self) -> None:
        assert parse_html('<code class="language-py">x</code>')[1] == [entity("code", 0, 1)]

    def test_blockquote_expandable(self) -> None:
        _, entities = parse_html("<blockquote expandable>a</blockquote><blockquote>b</blockquote>")
        assert entities == [entity("expandable_blockquote", 0, 1), entity("blockquote", 1, 1)]

    def test_custom_emoji(self) -> None:
        _, entities = parse_html('<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>')
        assert entities == [entity("custom_emoji", 0, 2, custom_emoji_id="5368324170671202286")]

    def test_empty_entities_are_dropped(self) -> None:
        assert parse_html("<b></b>x<i></i>") == ("x", [])

    @pytest.mark.parametrize(
        ("html", "error"),
        [
            ("é</b>", "Unexpected end tag at byte offset 2"),
            ("<b>x</b", "Unclosed end tag at byte offset 4"),
            ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
            ("中<q>", 'Unsupported start tag "q" at byte offset 3'),
            ("<b", "Unclosed start tag at byte offset 0"),
            ("<b =1>", 'Empty attribute name in the tag "b" at byte offset 0'),
            (
                "<b x>",
                "Expected equal sign in declaration of an attribute of the tag "
                '"b" at byte offset 0',
            ),
            (
                "<blockquote expandable",
                "Expected equal sign in declaration of an attribute of the tag "
                '"blockquote" at byte offset 0',
            ),
            ("<b x=", "Unclosed start tag at byte offset 0"),
            ("<b x='1>", 'Unclosed start tag "b" at byte offset 0'),
            ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
            (
                '<tg-emoji emoji-id="x">',
                'Custom emoji entity must contain a valid "emoji-id" attribute at byte offset 0',
            ),
            ("<b><i>x</i>", 'Can\'t find end tag corresponding to start tag "b"'),
        ],
    )
    def test_errors(self, html: str, error: str) -> None:
        with pytest.raises(EntityParseError) as caught:
            parse_html(html)
        assert str(caught.value) == error


class TestMarkdownV2:
    @pytest.mark.parametrize(
        ("markdown", "kind"),
        [
            ("*x*", "bold"),
            ("_x_", "italic"),
            ("__x__", "underline"),
            ("~x~", "strikethrough"),
            ("||x||", "spoiler"),
            ("`x`", "code"),
            ("```x```", "pre"),
        ],
    )
    def test_every_marker_makes_its_entity(self, markdown: str, kind: str) -> None:
        assert parse_markdown_v2(markdown) == ("x", [entity(kind, 0, 1)])

    def test_escapes_and_nesting(self) -> None:
        text, entities = parse_markdown_v2(r"\*a\* *b _c_* 1\.5\!")
        assert text == "*a* b c 1.5!"
        assert entities == [entity("bold", 4, 3), entity("italic", 6, 1)]

    def test_italic_then_underline(self) -> None:
        text, entities = parse_markdown_v2("_a_ __b__")
        assert text == "a b"
        assert entities == [entity("italic", 0, 1), entity("underline", 2, 1)]

    def test_links_and_their_escaped_urls(self) -> None:
        text, entities = parse_markdown_v2(r"[a *b*](https://x.y/\(1\)) [c](x)")
        assert text == "a b c"
        assert entities == [
            entity("text_link", 0, 3, url="https://x.y/(1)"),
            entity("bold", 2, 1),
            entity("text_link", 4, 1, url="x"),
        ]

    def test_link_without_url_is_plain_text(self) -> None:
        assert parse_markdown_v2("[a]") == ("a", [])

    def test_custom_emoji(self) -> None:
        text, entities = parse_markdown_v2("![👍](tg://emoji?id=5368324170671202286)")
        assert text == "👍"
        assert entities == [entity("custom_emoji", 0, 2, custom_emoji_id="5368324170671202286")]

    def test_code_and_pre_keep_their_content(self) -> None:
        text, entities = parse_markdown_v2("`*a*` ```py\nb_c\n```")
        assert text == "*a* b_c\n"
        assert entities == [entity("code", 0, 3), entity("pre", 4, 4, language="py")]

    def test_pre_header_with_spaces_is_content(self) -> None:
        assert parse_markdown_v2("```a b\nc```") == ("a b\nc", [entity("pre", 0, 5)])

    def test_block_quote_markers_are_dropped(self) -> None:
        assert parse_markdown_v2(">one\n>two") == ("one\ntwo", [])

    def test_offsets_count_utf16_code_units(self) -> None:
        assert parse_markdown_v2("😀*中*")[1] == [entity("bold", 2, 1)]

    @pytest.mark.parametrize(
        ("markdown", "error"),
        [
            ("1.5", "Character '.' is reserved and must be escaped with the preceding '\\'"),
            ("a|b", "Character '|' is reserved and must be escaped with the preceding '\\'"),
            ("a>b", "Character '>' is reserved and must be escaped with the preceding '\\'"),
            ("é*x", "Can't find end of Bold entity at byte offset 2"),
            ("__x", "Can't find end of Underline entity at byte offset 0"),
            ("`x", "Can't find end of Code entity at byte offset 0"),
            ("```x", "Can't find end of Pre entity at byte offset 0"),
            ("[x", "Can't find end of TextUrl entity at byte offset 0"),
            ("[x](u", "Can't find end of a URL at byte offset 3"),
            ("![x](https://x)", "Custom emoji entity must contain a tg://emoji URL"),
        ],
    )
    def test_errors(self, markdown: str, error: str) -> None:
        with pytest.raises(EntityParseError) as caught:
            parse_markdown_v2(markdown)
        assert str(caught.value) == error

    @pytest.mark.xfail(
        strict=True,
        reason="known deviation, kept by the restructure: inside an open spoiler or underline "
        "a one-character opening marker swallows the next character",
    )
    @pytest.mark.parametrize(
        ("markdown", "text"), [("||a*b*||", "ab"), ("__a_b_ c__", "ab c"), ("__a`b`__", "ab")]
    )
    def test_one_character_marker_inside_spoiler_or_underline(
        self, markdown: str, text: str
    ) -> None:
        assert parse_markdown_v2(markdown)[0] == text


class TestMarkdown:
    def test_entities(self) -> None:
        text, entities = parse_markdown("*b* _i_ `c` [l](https://x) ```py\np```")
        assert text == "b i c l p"
        assert entities == [
            entity("bold", 0, 1),
            entity("italic", 2, 1),
            entity("code", 4, 1),
            entity("text_link", 6, 1, url="https://x"),
            entity("pre", 8, 1, language="py"),
        ]

    def test_no_nesting_and_escapes(self) -> None:
        assert parse_markdown(r"*a _b_* \_c") == ("a _b_ _c", [entity("bold", 0, 5)])

    def test_empty_entities_are_dropped(self) -> None:
        assert parse_markdown("a**b") == ("ab", [])

    @pytest.mark.parametrize("markdown", ["é*x", "é[x]", "é[x](u", "é```x"])
    def test_unclosed(self, markdown: str) -> None:
        with pytest.raises(EntityParseError) as caught:
            parse_markdown(markdown)
        assert str(caught.value) == "Can't find end of the entity starting at byte offset 2"


class TestParseModes:
    def test_each_parse_mode_by_its_lower_cased_name(self) -> None:
        expected = {
            "html": parse_html,
            "markdownv2": parse_markdown_v2,
            "markdown": parse_markdown,
        }
        assert expected == PARSERS


class TestTrim:
    def test_untouched_without_outer_whitespace(self) -> None:
        entities = [entity("bold", 0, 1)]
        assert trim("a b", entities) == ("a b", entities)

    def test_entities_are_shifted_and_clipped(self) -> None:
        entities = [entity("bold", 0, 3), entity("italic", 3, 3), entity("code", 0, 1)]
        assert trim("  ab  ", entities) == ("ab", [entity("bold", 0, 1), entity("italic", 1, 1)])

    def test_leading_whitespace_counts_in_utf16(self) -> None:
        assert trim("\u3000😀x ", [entity("bold", 3, 1)]) == ("😀x", [entity("bold", 2, 1)])


class TestCommands:
    @pytest.mark.parametrize(
        ("text", "entities"),
        [
            ("/start", [entity("bot_command", 0, 6)]),
            ("/start@carebot payload", [entity("bot_command", 0, 14)]),
            ("😀 /help and /x", [entity("bot_command", 3, 5), entity("bot_command", 13, 2)]),
            ("a/b http://x/y @u/z //x", []),
            ("/", []),
        ],
    )
    def test_bot_commands(self, text: str, entities: list[JSONDict]) -> None:
        assert command_entities(text) == entities
