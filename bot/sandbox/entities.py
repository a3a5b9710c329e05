"""Formatting as Telegram parses it: HTML, MarkdownV2 and legacy Markdown text turned into plain
text and ``MessageEntity`` dicts (offsets in UTF-16 code units), plus the trimming and the
``bot_command`` entities Telegram applies to messages.

The parsers are driven by tables: which HTML tag makes which entity, what a tag requires and
adds; which MarkdownV2 marker opens and which closes each entity."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

from bot.sandbox.protocol import JSONDict

Parsed = tuple[str, list[JSONDict]]


class EntityParseError(Exception):
    """The text of ``Bad Request: can't parse entities: ...``."""


def u16(text: str) -> int:
    """Length in UTF-16 code units, the unit of Telegram's entity offsets."""
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def byte_offset(text: str, index: int) -> int:
    return len(text[:index].encode("utf-8"))


def _by_position(entities: list[JSONDict]) -> list[JSONDict]:
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return entities


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------

HTML_TAG_ENTITIES = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "span": "spoiler",
    "tg-spoiler": "spoiler",
    "a": "text_link",
    "code": "code",
    "pre": "pre",
    "blockquote": "blockquote",
    "tg-emoji": "custom_emoji",
}
"""Every supported tag and the entity type it makes."""

_HTML_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}

_HTML_REQUIRED: dict[str, tuple[Callable[[dict[str, str]], bool], str]] = {
    "span": (
        lambda attrs: attrs.get("class") == "tg-spoiler",
        'Tag "span" must have class "tg-spoiler"',
    ),
    "tg-emoji": (
        lambda attrs: attrs.get("emoji-id", "").isdigit(),
        'Custom emoji entity must contain a valid "emoji-id" attribute',
    ),
}
"""Tags whose start tag must carry an attribute: the test, and the error's beginning."""


def _html_link(entity: JSONDict, attributes: dict[str, str], language: str) -> bool:
    href = attributes.get("href")
    if not href:
        return False  # a link without a target is plain text
    entity["url"] = href
    return True


def _html_pre(entity: JSONDict, attributes: dict[str, str], language: str) -> bool:
    if language:
        entity["language"] = language
    return True


def _html_blockquote(entity: JSONDict, attributes: dict[str, str], language: str) -> bool:
    if "expandable" in attributes:
        entity["type"] = "expandable_blockquote"
    return True


def _html_emoji(entity: JSONDict, attributes: dict[str, str], language: str) -> bool:
    entity["custom_emoji_id"] = attributes["emoji-id"]
    return True


_HTML_FINISH: dict[str, Callable[[JSONDict, dict[str, str], str], bool]] = {
    "a": _html_link,
    "pre": _html_pre,
    "blockquote": _html_blockquote,
    "tg-emoji": _html_emoji,
}
"""Tags whose entity takes more from the attributes (or the inner ``<code>``'s language); False:
no entity."""


def _is_tag_char(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char == "-")


def _is_attribute_char(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char in "-_")


def _is_unquoted_value_char(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char in "-._")


def _decode_html_entity(text: str, index: int) -> tuple[str | None, int]:
    end = text.find(";", index + 1, index + 12)
    if end < 0:
        return None, index
    body = text[index + 1 : end]
    if body in _HTML_NAMED_ENTITIES:
        return _HTML_NAMED_ENTITIES[body], end + 1
    code: int | None = None
    if (
        body[:2] in ("#x", "#X")
        and body[2:]
        and all(c in "0123456789abcdefABCDEF" for c in body[2:])
    ):
        code = int(body[2:], 16)
    elif body[:1] == "#" and body[1:].isdigit():
        code = int(body[1:])
    if code is not None and 0 < code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
        return chr(code), end + 1
    return None, index


def _decode_html_entities(text: str) -> str:
    out: list[str] = []
    index = 0
    while index < len(text):
        if text[index] == "&":
            decoded, after = _decode_html_entity(text, index)
            if decoded is not None:
                out.append(decoded)
                index = after
                continue
        out.append(text[index])
        index += 1
    return "".join(out)


class _OpenTag(NamedTuple):
    name: str
    attributes: dict[str, str]
    start: int  # UTF-16 offset in the output


class _HtmlParser:
    """One pass over the text: characters and character references go to the output, tags
    open and close entities."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)
        self.i = 0
        self.out: list[str] = []
        self.offset = 0  # UTF-16 length of out
        self.stack: list[_OpenTag] = []
        self.pre_languages: dict[int, str] = {}  # by the stack depth of the <pre>
        self.entities: list[JSONDict] = []

    def parse(self) -> Parsed:
        while self.i < self.n:
            char = self.text[self.i]
            if char == "&" and self._reference():
                continue
            if char == "<":
                self._tag()
            else:
                self._emit(char)
                self.i += 1
        if self.stack:
            raise EntityParseError(
                f'Can\'t find end tag corresponding to start tag "{self.stack[-1].name}"'
            )
        return "".join(self.out), _by_position(self.entities)

    def _emit(self, chars: str) -> None:
        self.out.append(chars)
        self.offset += u16(chars)

    def _reference(self) -> bool:
        decoded, after = _decode_html_entity(self.text, self.i)
        if decoded is None:
            return False
        self._emit(decoded)
        self.i = after
        return True

    def _error(self, message: str, begin: int) -> EntityParseError:
        return EntityParseError(f"{message} at byte offset {byte_offset(self.text, begin)}")

    def _take(self, accepts: Callable[[str], bool]) -> str:
        start = self.i
        while self.i < self.n and accepts(self.text[self.i]):
            self.i += 1
        return self.text[start : self.i]

    def _skip_spaces(self) -> None:
        self._take(str.isspace)

    def _at(self, char: str) -> bool:
        return self.i < self.n and self.text[self.i] == char

    def _tag(self) -> None:
        begin = self.i
        self.i += 1
        if self._at("/"):
            self.i += 1
            self._end_tag(begin)
        else:
            self._start_tag(begin)

    def _start_tag(self, begin: int) -> None:
        name = self._take(_is_tag_char).lower()
        if name not in HTML_TAG_ENTITIES:
            raise self._error(f'Unsupported start tag "{name}"', begin)
        attributes = self._attributes(name, begin)
        required = _HTML_REQUIRED.get(name)
        if required is not None and not required[0](attributes):
            raise self._error(required[1], begin)
        self.stack.append(_OpenTag(name, attributes, self.offset))

    def _attributes(self, name: str, begin: int) -> dict[str, str]:
        attributes: dict[str, str] = {}
        while True:
            self._skip_spaces()
            if self.i >= self.n:
                raise self._error("Unclosed start tag", begin)
            if self._at(">"):
                self.i += 1
                return attributes
            attribute = self._take(_is_attribute_char).lower()
            if not attribute:
                raise self._error(f'Empty attribute name in the tag "{name}"', begin)
            self._skip_spaces()
            if self.i < self.n and not self._at("=") and attribute == "expandable":
                attributes[attribute] = ""
                continue
            if not self._at("="):
                raise self._error(
                    f'Expected equal sign in declaration of an attribute of the tag "{name}"',
                    begin,
                )
            self.i += 1
            attributes[attribute] = self._attribute_value(name, begin)

    def _attribute_value(self, name: str, begin: int) -> str:
        self._skip_spaces()
        if self.i >= self.n:
            raise self._error("Unclosed start tag", begin)
        quote = self.text[self.i]
        if quote not in "\"'":
            return self._take(_is_unquoted_value_char)
        end = self.text.find(quote, self.i + 1)
        if end < 0:
            raise self._error(f'Unclosed start tag "{name}"', begin)
        value = _decode_html_entities(self.text[self.i + 1 : end])
        self.i = end + 1
        return value

    def _end_tag(self, begin: int) -> None:
        name = self._take(_is_tag_char).lower()
        if not self.stack:
            raise self._error("Unexpected end tag", begin)
        self._skip_spaces()
        if not self._at(">"):
            raise self._error("Unclosed end tag", begin)
        self.i += 1
        tag = self.stack.pop()
        if name != tag.name:
            raise EntityParseError(
                f"Unmatched end tag at byte offset {byte_offset(self.text, begin)}, "
                f'expected "</{tag.name}>", found "</{name}>"'
            )
        self._close(tag)

    def _close(self, tag: _OpenTag) -> None:
        depth = len(self.stack)
        if tag.name == "code" and self.stack and self.stack[-1].name == "pre":
            # <pre><code class="language-x">: the language of the <pre>, no entity of its own
            language = tag.attributes.get("class", "")
            if language.startswith("language-") and len(language) > len("language-"):
                self.pre_languages[depth - 1] = language[len("language-") :]
            return
        # Only a <pre> at this depth can have a language recorded (popped here either way).
        language = self.pre_languages.pop(depth, "")
        length = self.offset - tag.start
        if length <= 0:
            return
        entity: JSONDict = {
            "type": HTML_TAG_ENTITIES[tag.name],
            "offset": tag.start,
            "length": length,
        }
        finish = _HTML_FINISH.get(tag.name)
        if finish is None or finish(entity, tag.attributes, language):
            self.entities.append(entity)


def parse_html(text: str) -> Parsed:
    """Telegram's HTML parse mode: the plain text and its entities, or EntityParseError."""
    return _HtmlParser(text).parse()


# --------------------------------------------------------------------------------------------
# MarkdownV2
# --------------------------------------------------------------------------------------------

_MDV2_RESERVED = frozenset("_*[]()~`>#+-=|{}.!")
_MDV2_OPENERS = (
    ("```", "pre"),
    ("`", "code"),
    ("*", "bold"),
    ("~", "strikethrough"),
    ("__", "underline"),
    ("_", "italic"),
    ("||", "spoiler"),
    ("[", "text_link"),
    ("![", "custom_emoji"),
)
"""The marker opening each entity; the first that the text continues with wins (so a longer
marker precedes a shorter one with the same first character)."""
_MDV2_CLOSERS = {
    "code": "`",
    "pre": "```",
    "bold": "*",
    "strikethrough": "~",
    "underline": "__",
    "italic": "_",
    "spoiler": "||",
    "text_link": "]",
    "custom_emoji": "]",
}
"""The marker closing each entity (a link's target follows its "]")."""
_MDV2_TWO_WIDE = frozenset({"spoiler", "underline"})
_MDV2_NAMES = {
    "bold": "Bold",
    "italic": "Italic",
    "underline": "Underline",
    "strikethrough": "Strikethrough",
    "spoiler": "Spoiler",
    "code": "Code",
    "pre": "Pre",
    "text_link": "TextUrl",
    "custom_emoji": "CustomEmoji",
}
_CUSTOM_EMOJI_URL = re.compile(r"tg://emoji\?id=(\d+)")


class _OpenMarker(NamedTuple):
    kind: str
    start: int  # UTF-16 offset in the output
    begin: int  # index in the text where the marker began
    language: str


class _MarkdownV2Parser:
    """One pass over the text: escaped and plain characters go to the output, reserved ones
    close the innermost open entity or open a new one."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)
        self.i = 0
        self.out: list[str] = []
        self.offset = 0
        self.stack: list[_OpenMarker] = []
        self.entities: list[JSONDict] = []

    def parse(self) -> Parsed:
        text = self.text
        while self.i < self.n:
            char = text[self.i]
            if char == "\\" and self.i + 1 < self.n and 0 < ord(text[self.i + 1]) <= 126:
                self._emit(text[self.i + 1])
                self.i += 2
                continue
            top = self.stack[-1].kind if self.stack else None
            if self._is_plain(char, top):
                self._emit(char)
                self.i += 1
            elif top not in ("code", "pre") and char == ">" and self._at_line_start():
                self.i += 1  # a block quote line: the marker is dropped
            elif top is None or not self._close(top):
                self._open(char, top)
        if self.stack:
            kind, _, begin, _ = self.stack[-1]
            raise EntityParseError(
                f"Can't find end of {_MDV2_NAMES[kind]} entity at byte offset "
                f"{byte_offset(self.text, begin)}"
            )
        return "".join(self.out), _by_position(self.entities)

    def _emit(self, char: str) -> None:
        self.out.append(char)
        self.offset += 2 if ord(char) > 0xFFFF else 1

    def _at_line_start(self) -> bool:
        return self.i == 0 or self.text[self.i - 1] == "\n"

    def _is_plain(self, char: str, top: str | None) -> bool:
        if top in ("code", "pre"):  # only the closing backticks are markup
            return not (char == "`" and (top == "code" or self.text.startswith("```", self.i)))
        return char not in _MDV2_RESERVED

    def _close(self, top: str) -> bool:
        text, i = self.text, self.i
        marker = _MDV2_CLOSERS[top]
        if not text.startswith(marker, i):
            return False
        if (
            top == "italic"
            and text.startswith("__", i)
            and any(open_.kind == "underline" for open_ in self.stack)
        ):
            return False  # "__" closes the underline around this italic
        kind, start, _, language = self.stack.pop()
        self.i += len(marker)
        entity: JSONDict = {"type": kind, "offset": start, "length": self.offset - start}
        if kind in ("text_link", "custom_emoji") and not self._link_target(kind, entity):
            return True
        if kind == "pre" and language:
            entity["language"] = language
        if entity["length"] > 0:
            self.entities.append(entity)
        return True

    def _link_target(self, kind: str, entity: JSONDict) -> bool:
        """Read the ``(url)`` after a link's "]" into the entity; False: no entity."""
        url = self._url() if self.i < self.n and self.text[self.i] == "(" else ""
        if kind == "custom_emoji":
            match = _CUSTOM_EMOJI_URL.fullmatch(url)
            if match is None:
                raise EntityParseError("Custom emoji entity must contain a tg://emoji URL")
            entity["custom_emoji_id"] = match.group(1)
            return True
        if not url:
            return False
        entity["url"] = url
        return True

    def _url(self) -> str:
        text, n = self.text, self.n
        j = self.i + 1
        chars: list[str] = []
        while j < n and text[j] != ")":
            if text[j] == "\\" and j + 1 < n:
                j += 1
            chars.append(text[j])
            j += 1
        if j >= n:
            raise EntityParseError(
                f"Can't find end of a URL at byte offset {byte_offset(text, self.i)}"
            )
        self.i = j + 1
        return "".join(chars)

    def _open(self, char: str, top: str | None) -> None:
        text, i = self.text, self.i
        opener = next((o for o in _MDV2_OPENERS if text.startswith(o[0], i)), None)
        if opener is None:
            raise EntityParseError(
                f"Character '{char}' is reserved and must be escaped with the preceding '\\'"
            )
        marker, kind = opener
        width = len(marker)
        if width == 1 and top in _MDV2_TWO_WIDE:
            # Kept as it has always been: inside an open spoiler or underline, a one-character
            # opening marker also swallows the character after it.
            width = 2
        language = ""
        if kind == "pre":
            newline = text.find("\n", i + 3)
            header = text[i + 3 : newline] if newline >= 0 else ""
            if newline >= 0 and header and not any(c.isspace() for c in header):
                language = header
                width = 3 + len(header) + 1
        self.stack.append(_OpenMarker(kind, self.offset, i, language))
        self.i += width


def parse_markdown_v2(text: str) -> Parsed:
    """Telegram's MarkdownV2 parse mode (block quotes are accepted but not turned into
    entities)."""
    return _MarkdownV2Parser(text).parse()


# --------------------------------------------------------------------------------------------
# Legacy Markdown
# --------------------------------------------------------------------------------------------

_MARKDOWN_MARKERS = "_*`["
_MARKDOWN_KINDS = {"*": "bold", "_": "italic", "`": "code"}


class _Span(NamedTuple):
    kind: str
    inner: str
    after: int  # index in the text after the closing marker
    url: str = ""
    language: str = ""


def _markdown_span(text: str, i: int) -> _Span | None:
    """The entity starting with the marker at ``text[i]``, or None when it never ends."""
    char = text[i]
    if char == "[":
        end = text.find("]", i + 1)
        if end < 0 or not text.startswith("(", end + 1) or text.find(")", end + 2) < 0:
            return None
        close = text.find(")", end + 2)
        return _Span("text_link", text[i + 1 : end], close + 1, url=text[end + 2 : close])
    if text.startswith("```", i):
        end = text.find("```", i + 3)
        if end < 0:
            return None
        inner = text[i + 3 : end]
        language = ""
        newline = inner.find("\n")
        if newline > 0 and not any(c.isspace() for c in inner[:newline]):
            language, inner = inner[:newline], inner[newline + 1 :]
        return _Span("pre", inner, end + 3, language=language)
    end = text.find(char, i + 1)
    if end < 0:
        return None
    return _Span(_MARKDOWN_KINDS[char], text[i + 1 : end], end + 1)


def parse_markdown(text: str) -> Parsed:
    """Telegram's legacy Markdown parse mode (no nesting)."""
    out: list[str] = []
    entities: list[JSONDict] = []
    offset = 0
    n = len(text)
    i = 0
    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n and text[i + 1] in _MARKDOWN_MARKERS:
            out.append(text[i + 1])
            offset += 1
            i += 2
            continue
        if char not in _MARKDOWN_MARKERS:
            out.append(char)
            offset += u16(char)
            i += 1
            continue
        span = _markdown_span(text, i)
        if span is None:
            raise EntityParseError(
                f"Can't find end of the entity starting at byte offset {byte_offset(text, i)}"
            )
        length = u16(span.inner)
        if length:
            entity: JSONDict = {"type": span.kind, "offset": offset, "length": length}
            if span.url:
                entity["url"] = span.url
            if span.language:
                entity["language"] = span.language
            entities.append(entity)
        out.append(span.inner)
        offset += length
        i = span.after
    return "".join(out), entities


PARSERS: dict[str, Callable[[str], Parsed]] = {
    "html": parse_html,
    "markdownv2": parse_markdown_v2,
    "markdown": parse_markdown,
}
"""The parser of each ``parse_mode``, by its lower-cased name."""


# --------------------------------------------------------------------------------------------
# What Telegram does to every text
# --------------------------------------------------------------------------------------------


def trim(text: str, entities: list[JSONDict]) -> Parsed:
    """Telegram strips leading and trailing whitespace; entities are shifted and clipped."""
    left = text.lstrip()
    result = left.rstrip()
    if len(result) == len(text):
        return text, entities
    lead = u16(text[: len(text) - len(left)])
    total = u16(result)
    trimmed: list[JSONDict] = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, total)
        if end > start:
            trimmed.append({**entity, "offset": start, "length": end - start})
    return result, trimmed


_COMMAND_RE = re.compile(r"(?<![\w/@])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?")


def command_entities(text: str) -> list[JSONDict]:
    """``bot_command`` entities, as Telegram adds to messages from users."""
    entities: list[JSONDict] = []
    position = 0
    offset = 0
    for match in _COMMAND_RE.finditer(text):
        offset += u16(text[position : match.start()])
        length = u16(match.group())
        entities.append({"type": "bot_command", "offset": offset, "length": length})
        offset += length
        position = match.end()
    return entities
