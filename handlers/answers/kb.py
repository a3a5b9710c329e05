"""The knowledge base an operator edits: YAML files in ``CAREBOT_CONFIG_DIR/kb/``.

YAML rather than TOML here: an entry is a list of phrasings and multi-line answers in two
languages, which YAML writes without quoting every line. Every file may hold ``entries`` and
``synonyms``; all files are validated together at start-up (duplicate ids, a missing language,
invalid Telegram HTML, unknown keys) and an error names the file and the key, like the TOML rule
files in ``bot.kernel.config``.

The running bot keeps the knowledge base in a ``KbLibrary``. It is replaced whole, without a
restart, when the operator runs ``carebot kb reload`` (which validates the files, then raises a
version in the database that every bot process reads every few seconds: ``scheduler.kb_reload``)
or sends the process SIGHUP. A reload that finds an error keeps the previous knowledge base and
logs the error.
"""

from __future__ import annotations

import asyncio
import logging
import re
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from bot.kernel.config import StrictModel
from bot.kernel.files import ConfigError
from handlers.answers.matching import KbIndex, has_cjk, normalise

logger = logging.getLogger(__name__)

KB_DIRECTORY = "kb"
ENTRY_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
MAX_ANSWER_LENGTH = 3500  # Telegram's limit is 4096 characters once the HTML is parsed
MAX_BUTTON_LABEL = 40
MAX_KEYWORD_LENGTH = 40

# Telegram's HTML parse mode: these tags (with these attributes) and nothing else.
ALLOWED_TAGS: dict[str, frozenset[str]] = {
    "b": frozenset(),
    "strong": frozenset(),
    "i": frozenset(),
    "em": frozenset(),
    "u": frozenset(),
    "ins": frozenset(),
    "s": frozenset(),
    "strike": frozenset(),
    "del": frozenset(),
    "tg-spoiler": frozenset(),
    "span": frozenset({"class"}),
    "a": frozenset({"href"}),
    "code": frozenset({"class"}),
    "pre": frozenset(),
    "blockquote": frozenset({"expandable"}),
    "tg-emoji": frozenset({"emoji-id"}),
}
ALLOWED_ENTITIES = frozenset({"lt", "gt", "amp", "quot"})


class KnowledgeBaseError(ConfigError):
    """A knowledge-base file is invalid; the message names the file and the key."""


class _TelegramHtmlChecker(HTMLParser):
    """Finds the first thing Telegram would refuse in an HTML-formatted message."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []
        self.problem: str | None = None

    def _fail(self, problem: str) -> None:
        if self.problem is None:
            self.problem = problem

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        allowed = ALLOWED_TAGS.get(tag)
        if allowed is None:
            self._fail(f"tag <{tag}> is not allowed by Telegram")
            return
        for name, _value in attrs:
            if name not in allowed:
                self._fail(f'attribute "{name}" is not allowed on <{tag}>')
        attributes = dict(attrs)
        if tag == "a" and not attributes.get("href"):
            self._fail('<a> needs an href="..."')
        if tag == "span" and attributes.get("class") != "tg-spoiler":
            self._fail('<span> is only allowed as <span class="tg-spoiler">')
        self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._fail(f"self-closing <{tag}/> is not allowed by Telegram")

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            expected = f"</{self.stack[-1]}>" if self.stack else "no closing tag"
            self._fail(f"</{tag}> does not match: expected {expected}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        if "<" in data or ">" in data:
            self._fail("write < and > as &lt; and &gt; outside tags")
        if "&" in data:
            self._fail("write & as &amp;")

    def handle_entityref(self, name: str) -> None:
        if name not in ALLOWED_ENTITIES:
            self._fail(f"&{name}; is not supported by Telegram (use &lt; &gt; &amp; &quot;)")

    def handle_comment(self, data: str) -> None:
        self._fail("HTML comments are not allowed by Telegram")

    def handle_decl(self, decl: str) -> None:
        self._fail("declarations are not allowed by Telegram")

    def unknown_decl(self, data: str) -> None:
        self._fail("declarations are not allowed by Telegram")


def check_telegram_html(text: str) -> str | None:
    """What Telegram would refuse in ``text`` (parse mode HTML), or None when it is fine."""
    checker = _TelegramHtmlChecker()
    checker.feed(text)
    checker.close()
    if checker.problem is None and checker.rawdata:
        checker.problem = f"unfinished markup: {checker.rawdata[:20]!r}"
    if checker.problem is None and checker.stack:
        checker.problem = f"<{checker.stack[-1]}> is never closed"
    return checker.problem


def _non_empty(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


class LocalizedText(StrictModel):
    """A text in every language of the bot."""

    zh: str
    en: str

    @field_validator("zh", "en")
    @classmethod
    def _filled(cls, value: str) -> str:
        return _non_empty(value)

    def get(self, language: str) -> str:
        return self.zh if language == "zh" else self.en


class Answer(LocalizedText):
    """An answer per language, in Telegram HTML."""

    @field_validator("zh", "en")
    @classmethod
    def _telegram_html(cls, value: str) -> str:
        if len(value) > MAX_ANSWER_LENGTH:
            raise ValueError(f"longer than {MAX_ANSWER_LENGTH} characters")
        problem = check_telegram_html(value)
        if problem:
            raise ValueError(f"invalid Telegram HTML: {problem}")
        return value.strip()


class ButtonLabel(LocalizedText):
    @field_validator("zh", "en")
    @classmethod
    def _short(cls, value: str) -> str:
        if len(value) > MAX_BUTTON_LABEL:
            raise ValueError(f"longer than {MAX_BUTTON_LABEL} characters")
        return value


class Questions(StrictModel):
    """The ways customers ask for this entry, per language."""

    zh: list[str] = Field(min_length=1)
    en: list[str] = Field(min_length=1)

    @field_validator("zh", "en")
    @classmethod
    def _filled(cls, value: list[str]) -> list[str]:
        for question in value:
            _non_empty(question)
        return value

    def as_mapping(self) -> dict[str, list[str]]:
        return {"zh": self.zh, "en": self.en}


class Keywords(StrictModel):
    """Words and short phrases that point to this entry, per language (optional): customers'
    own words the questions do not use ("amex", "高仿"). They count in the entry's vocabulary,
    which the matcher compares with long and mixed-language messages."""

    zh: list[str] = Field(default_factory=list)
    en: list[str] = Field(default_factory=list)

    @field_validator("zh", "en")
    @classmethod
    def _words(cls, value: list[str]) -> list[str]:
        for position, keyword in enumerate(value):
            if not normalise(keyword):
                raise ValueError(f"item {position} ({keyword!r}) has no letters or characters")
            if len(keyword) > MAX_KEYWORD_LENGTH:
                raise ValueError(
                    f"item {position} ({keyword!r}) is longer than {MAX_KEYWORD_LENGTH} characters"
                )
        return value

    @field_validator("en")
    @classmethod
    def _english(cls, value: list[str]) -> list[str]:
        for position, keyword in enumerate(value):
            if has_cjk(keyword):
                raise ValueError(
                    f"item {position} ({keyword!r}) has Chinese characters: list it under zh"
                )
        return value

    def all(self) -> list[str]:
        return [*self.zh, *self.en]


class EntryButton(StrictModel):
    """A link (``link`` + ``label``) or an action (``complaint``: open a complaint, ``person``:
    talk to a person)."""

    link: str | None = None
    label: ButtonLabel | None = None
    action: Literal["complaint", "person"] | None = None

    @field_validator("link")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(https?|tg)://\S+$", value):
            raise ValueError("expected an http(s):// or tg:// link")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> EntryButton:
        if (self.link is None) == (self.action is None):
            raise ValueError("expected either link (with label) or action")
        if self.link is not None and self.label is None:
            raise ValueError("a link button needs a label with zh and en")
        if self.action is not None and self.label is not None:
            raise ValueError("an action button is labelled by the bot: remove label")
        return self


class Entry(StrictModel):
    id: str
    questions: Questions
    answer: Answer
    tags: list[str] = Field(default_factory=list)
    keywords: Keywords = Keywords()
    buttons: list[EntryButton] = Field(default_factory=list, max_length=3)

    @field_validator("id")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        if not ENTRY_ID.match(value):
            raise ValueError("expected 1-32 lowercase letters, digits, - or _")
        return value


class Synonyms(StrictModel):
    zh: list[list[str]] = Field(default_factory=list)
    en: list[list[str]] = Field(default_factory=list)

    @field_validator("zh", "en")
    @classmethod
    def _groups(cls, value: list[list[str]]) -> list[list[str]]:
        for number, group in enumerate(value):
            if len(group) < 2:
                raise ValueError(f"group {number}: each group needs at least two words")
            for word in group:
                if not normalise(word):
                    raise ValueError(f"group {number}: {word!r} has no letters or characters")
        return value

    @field_validator("en")
    @classmethod
    def _english(cls, value: list[list[str]]) -> list[list[str]]:
        for number, group in enumerate(value):
            for word in group:
                if has_cjk(word):
                    raise ValueError(
                        f"group {number}: {word!r} has Chinese characters: list it under zh"
                    )
        return value


class KbFile(StrictModel):
    """One YAML file under ``kb/``."""

    entries: list[Entry] = Field(default_factory=list)
    synonyms: Synonyms = Synonyms()


@dataclass(frozen=True)
class KnowledgeBase:
    """All entries of all files, validated, and the index questions are matched against."""

    entries: tuple[Entry, ...] = ()
    synonyms: Mapping[str, list[list[str]]] = field(default_factory=dict)
    index: KbIndex = field(default_factory=lambda: KbIndex.build(()))
    by_id: Mapping[str, Entry] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_id", {entry.id: entry for entry in self.entries})

    @classmethod
    def of(
        cls, entries: tuple[Entry, ...], synonyms: Mapping[str, list[list[str]]]
    ) -> KnowledgeBase:
        """Entries and synonyms with their index built (normalised once, here)."""
        index = KbIndex.build(
            ((entry.id, entry.questions.as_mapping()) for entry in entries),
            synonyms=synonyms,
            keywords={entry.id: entry.keywords.all() for entry in entries},
        )
        return cls(entries, synonyms, index)

    def entry(self, entry_id: str) -> Entry | None:
        return self.by_id.get(entry_id)


def _error_key(data: Any, location: tuple[int | str, ...]) -> str:
    key = ".".join(str(part) for part in location) or "(top level)"
    if len(location) >= 2 and location[0] == "entries" and isinstance(location[1], int):
        try:
            entry_id = data["entries"][location[1]]["id"]
        except (KeyError, IndexError, TypeError):
            return key
        return f"{key} (entry {entry_id})"
    return key


def load_kb_file(path: Path) -> KbFile:
    """Parse and validate one file; raises KnowledgeBaseError naming the file and key."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise KnowledgeBaseError(f"{path}: cannot read: {error.strerror}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "syntax error"
        raise KnowledgeBaseError(f"{path}: not valid YAML{where}: {problem}") from None
    if data is None:
        return KbFile()
    if not isinstance(data, dict):
        raise KnowledgeBaseError(f"{path}: (top level): expected a mapping with entries")
    try:
        return KbFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "extra_forbidden":
            message = "unknown key"
        elif first["type"] == "missing":
            message = "missing (every entry needs id, questions and answer, each in zh and en)"
        raise KnowledgeBaseError(f"{path}: {_error_key(data, first['loc'])}: {message}") from None


def kb_files(config_dir: Path) -> list[Path]:
    directory = config_dir / KB_DIRECTORY
    if not directory.is_dir():
        return []
    return sorted(
        path for path in directory.iterdir() if path.suffix in (".yaml", ".yml") and path.is_file()
    )


def load_knowledge_base(config_dir: Path) -> KnowledgeBase:
    """Load and validate every file of ``config_dir/kb`` (none: an empty knowledge base)."""
    entries: list[Entry] = []
    defined_in: dict[str, Path] = {}
    synonyms: dict[str, list[list[str]]] = {"zh": [], "en": []}
    for path in kb_files(config_dir):
        kb_file = load_kb_file(path)
        for position, entry in enumerate(kb_file.entries):
            first = defined_in.get(entry.id)
            if first is not None:
                raise KnowledgeBaseError(
                    f"{path}: entries.{position}.id: duplicate id {entry.id!r}, "
                    f"first defined in {first}"
                )
            defined_in[entry.id] = path
            entries.append(entry)
        synonyms["zh"].extend(kb_file.synonyms.zh)
        synonyms["en"].extend(kb_file.synonyms.en)
    return KnowledgeBase.of(tuple(entries), synonyms)


class KbLibrary:
    """The live knowledge base of a running bot: replaced whole on reload, never edited in place
    (``carebot kb reload`` reaches every process through the database: ``scheduler.kb_reload``;
    SIGHUP reaches one)."""

    def __init__(self, config_dir: Path, knowledge: KnowledgeBase | None = None) -> None:
        self.config_dir = config_dir
        self._current = knowledge if knowledge is not None else load_knowledge_base(config_dir)
        self.reloads = 0

    def current(self) -> KnowledgeBase:
        """The knowledge base as last loaded."""
        return self._current

    def reload(self) -> bool:
        """Load the files again; on an error keep serving the previous knowledge base."""
        try:
            knowledge = load_knowledge_base(self.config_dir)
        except ConfigError as error:
            logger.error("knowledge base not reloaded, keeping the previous one: %s", error)
            return False
        self._current = knowledge
        self.reloads += 1
        logger.info("knowledge base reloaded: %d entries", len(knowledge.entries))
        return True


def reload_on_sighup(library: KbLibrary) -> Callable[[], None]:
    """Reload ``library`` when the process gets SIGHUP (``systemctl reload``, ``docker kill -s
    HUP``, ``kill -HUP <pid>``); returns the function that stops listening."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGHUP, library.reload)
    except (AttributeError, NotImplementedError, RuntimeError, ValueError):
        return lambda: None  # no SIGHUP here (Windows, or not the main thread)

    def stop() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    return stop
