"""Knowledge base: file validation, normalisation, matching, the labelled quality set, reload."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path

import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.settings import EXAMPLE_CONFIG_DIR
from handlers.answers.kb import (
    KbLibrary,
    KnowledgeBaseError,
    check_telegram_html,
    load_knowledge_base,
    reload_on_sighup,
)
from handlers.answers.matching import Band, KbIndex, normalise
from scheduler.kb_reload import KbReloadWatch
from storage.kb import reload_version, request_reload
from tests.auxil.outbox import NOW

QUESTIONS = Path(__file__).parent / "data" / "kb_questions.yaml"

ENTRY = """
entries:
  - id: {id}
    questions:
      zh: [怎么退货]
      en: [how do i return something]
    answer:
      zh: 在“我的订单”里申请退货。
      en: {answer}
"""


def _config(tmp_path: Path, **files: str) -> Path:
    (tmp_path / "kb").mkdir(exist_ok=True)
    for name, text in files.items():
        (tmp_path / "kb" / f"{name}.yaml").write_text(text, encoding="utf-8")
    return tmp_path


class TestValidation:
    def test_shipped_knowledge_base_is_valid_and_bilingual(self) -> None:
        knowledge = load_knowledge_base(EXAMPLE_CONFIG_DIR)
        assert len(knowledge.entries) >= 30
        for entry in knowledge.entries:
            assert entry.questions.zh and entry.questions.en and entry.answer.zh

    def test_duplicate_id_names_both_files(self, tmp_path: Path) -> None:
        config = _config(
            tmp_path,
            a=ENTRY.format(id="returns", answer="Go to My orders."),
            b=ENTRY.format(id="returns", answer="Go to My orders."),
        )
        with pytest.raises(KnowledgeBaseError, match=r"b\.yaml: entries\.0\.id: duplicate id"):
            load_knowledge_base(config)

    def test_missing_language_names_file_and_key(self, tmp_path: Path) -> None:
        text = ENTRY.format(id="returns", answer="x").replace("      en: x\n", "")
        config = _config(tmp_path, a=text)
        with pytest.raises(
            KnowledgeBaseError, match=r"a\.yaml: entries\.0\.answer\.en \(entry returns\): missing"
        ):
            load_knowledge_base(config)

    @pytest.mark.parametrize(
        ("answer", "problem"),
        [
            ("'<b>bold'", "<b> is never closed"),
            ("'<div>block</div>'", "tag <div> is not allowed"),
            ("'<b><i>x</b></i>'", "</b> does not match"),
            ("'fish & chips'", "write & as &amp;"),
            ("'<a>no link</a>'", "<a> needs an href"),
            ("'&nbsp;'", "&nbsp; is not supported"),
        ],
    )
    def test_invalid_html_names_file_key_and_problem(
        self, tmp_path: Path, answer: str, problem: str
    ) -> None:
        config = _config(tmp_path, a=ENTRY.format(id="returns", answer=answer))
        with pytest.raises(KnowledgeBaseError) as caught:
            load_knowledge_base(config)
        message = str(caught.value)
        assert "a.yaml: entries.0.answer.en (entry returns): invalid Telegram HTML" in message
        assert problem in message

    def test_unknown_key_is_named(self, tmp_path: Path) -> None:
        text = ENTRY.format(id="returns", answer="x").replace(
            "    answer:", "    anwser: 1\n    answer:"
        )
        config = _config(tmp_path, a=text)
        with pytest.raises(
            KnowledgeBaseError, match=r"entries\.0\.anwser \(entry returns\): unknown key"
        ):
            load_knowledge_base(config)

    def test_yaml_syntax_error_names_the_line(self, tmp_path: Path) -> None:
        config = _config(tmp_path, a="entries:\n  - id: [unclosed\n")
        with pytest.raises(KnowledgeBaseError, match=r"a\.yaml: not valid YAML at line \d+"):
            load_knowledge_base(config)

    def test_link_button_needs_a_label(self, tmp_path: Path) -> None:
        text = (
            ENTRY.format(id="returns", answer="x") + "    buttons:\n      - link: https://x.test\n"
        )
        config = _config(tmp_path, a=text)
        with pytest.raises(KnowledgeBaseError, match=r"buttons\.0 .*needs a label"):
            load_knowledge_base(config)

    @pytest.mark.parametrize(
        ("keywords", "problem"),
        [
            ("{zh: [退款], en: [退款]}", r"keywords\.en \(entry returns\): item 0 .* has Chinese"),
            ("{en: [ok, '!!']}", r"keywords\.en \(entry returns\): item 1 .* has no letters"),
            ("{en: [" + "x" * 41 + "]}", r"keywords\.en \(entry returns\): item 0 .* longer than"),
            ("{fr: [remboursement]}", r"keywords\.fr \(entry returns\): unknown key"),
        ],
    )
    def test_invalid_keywords_name_file_key_and_problem(
        self, tmp_path: Path, keywords: str, problem: str
    ) -> None:
        text = ENTRY.format(id="returns", answer="x") + f"    keywords: {keywords}\n"
        config = _config(tmp_path, a=text)
        with pytest.raises(KnowledgeBaseError, match=r"a\.yaml: entries\.0\." + problem):
            load_knowledge_base(config)

    @pytest.mark.parametrize(
        ("synonyms", "problem"),
        [
            ("{en: [[money back, 退款]]}", r"synonyms\.en: .*group 0: '退款' has Chinese"),
            ("{zh: [[退款]]}", r"synonyms\.zh: .*group 0: each group needs at least two"),
            ("{en: [[refund, '?']]}", r"synonyms\.en: .*group 0: '\?' has no letters"),
        ],
    )
    def test_invalid_synonyms_name_file_key_and_problem(
        self, tmp_path: Path, synonyms: str, problem: str
    ) -> None:
        config = _config(tmp_path, a=f"synonyms: {synonyms}\n")
        with pytest.raises(KnowledgeBaseError, match=r"a\.yaml: " + problem):
            load_knowledge_base(config)

    def test_keywords_and_phrase_synonyms_are_matched(self, tmp_path: Path) -> None:
        text = ENTRY.format(id="returns", answer="x") + "    keywords: {en: [amex]}\n"
        refund = ENTRY.format(id="refund", answer="y").replace("return", "refund")
        config = _config(tmp_path, a=text, b=refund, s="synonyms: {en: [[refund, money back]]}\n")
        index = load_knowledge_base(config).index
        assert index.match("amex?").best.entry_id == "returns"  # type: ignore[union-attr]
        assert index.match("how do i get my money back").best.entry_id == "refund"  # type: ignore[union-attr]

    @pytest.mark.parametrize(
        "html",
        [
            'plain <b>bold</b> <i>it</i> <a href="https://x.test">link</a> &lt;3 &amp; &#128512;',
            '<pre><code class="language-python">x = 1</code></pre><tg-spoiler>s</tg-spoiler>',
            '<blockquote expandable>q</blockquote> <span class="tg-spoiler">s</span>',
        ],
    )
    def test_telegram_html_accepted(self, html: str) -> None:
        assert check_telegram_html(html) is None


class TestMatching:
    def test_normalise_folds_width_case_traditional_and_punctuation(self) -> None:
        assert normalise("  怎麼退貨？？ ") == "怎么退货"
        assert normalise("ＷＨＥＲＥ’s my Parcel!!") == "wheres my parcel"
        assert normalise("我 想 退货 VIP会员") == "我想退货 vip 会员"

    def test_short_chinese_question_is_not_drowned_by_long_ones(self) -> None:
        index = KbIndex.build(
            [
                ("returns", {"zh": ["东西不喜欢想要退货应该怎么操作"]}),
                ("shipping", {"zh": ["运费"]}),
                ("refund", {"zh": ["退款多久到账"]}),
            ]
        )
        result = index.match("退货")
        assert result.best is not None and result.best.entry_id == "returns"
        assert result.band is not Band.NONE

    def test_typos_are_corrected_against_the_vocabulary(self) -> None:
        index = KbIndex.build(
            [
                ("returns", {"en": ["how do i return something"]}),
                ("shipping", {"en": ["how much is shipping"]}),
            ]
        )
        assert index.match("how do i retrun somthing").best.entry_id == "returns"  # type: ignore[union-attr]
        assert index.match("shiping cost?").best.entry_id == "shipping"  # type: ignore[union-attr]

    def test_greetings_and_noise_are_not_answered(self) -> None:
        knowledge = load_knowledge_base(EXAMPLE_CONFIG_DIR)
        for text in ("你好", "hello", "👍", "", "asdf qwer"):
            assert knowledge.index.match(text).band is Band.NONE, text


def test_labelled_questions_quality() -> None:
    """The hand-written set: top-1 >= 95 % where an answer exists, >= 90 % of "none" questions
    not answered with confidence. A question counts as right when its entry is the one answered
    or the first one offered (an unanswered question does not count)."""
    index = load_knowledge_base(EXAMPLE_CONFIG_DIR).index
    labelled: dict[str, list[str]] = yaml.safe_load(QUESTIONS.read_text(encoding="utf-8"))
    right = answered_right = answerable = rejected = none_total = 0
    misses: list[str] = []
    for expected, questions in labelled.items():
        for question in questions:
            result = index.match(str(question))
            if expected == "none":
                none_total += 1
                rejected += result.band is not Band.ANSWER
                continue
            answerable += 1
            hit = result.best is not None and result.best.entry_id == expected
            if hit and result.band is not Band.NONE:
                right += 1
                answered_right += result.band is Band.ANSWER
            else:
                best = result.best.entry_id if result.best else None
                misses.append(
                    f"{question!r}: expected {expected}, got {best} ({result.band.value})"
                )
    top1 = right / answerable
    confident = answered_right / answerable
    rejection = rejected / none_total
    print(
        f"\nKB quality on {answerable + none_total} questions: top-1 {top1:.1%} of {answerable} "
        f"with an answer ({confident:.1%} answered at once, the rest offered as buttons); "
        f"{rejection:.1%} of {none_total} 'none' questions not answered with confidence"
    )
    assert answerable + none_total >= 300
    assert top1 >= 0.95, "\n".join(misses)
    assert rejection >= 0.90


class TestReload:
    async def test_a_reload_asked_in_the_database_is_followed_and_an_invalid_file_kept_out(
        self, tmp_path: Path, sessionmaker: async_sessionmaker[AsyncSession]
    ) -> None:
        config = _config(tmp_path, a=ENTRY.format(id="returns", answer="x"))
        library = KbLibrary(config)
        watch = KbReloadWatch(sessionmaker, library)
        await watch.prime()
        _config(tmp_path, b=ENTRY.format(id="invoice", answer="y").replace("return", "invoice"))
        assert not await watch.run(NOW)  # nothing happens until a reload is asked for
        assert library.current().entry("invoice") is None

        async with sessionmaker.begin() as session:
            assert await request_reload(session, NOW) == 1
        assert await watch.run(NOW)
        assert library.current().entry("invoice") is not None
        assert not await watch.run(NOW)  # once per request

        _config(tmp_path, c="entries:\n  - id: broken\n")
        async with sessionmaker.begin() as session:
            assert await request_reload(session, NOW) == 2
        assert not await watch.run(NOW)
        assert library.current().entry("invoice") is not None and library.reloads == 1
        async with sessionmaker() as session:
            assert await reload_version(session) == 2

    async def test_sighup_reloads(self, tmp_path: Path) -> None:
        config = _config(tmp_path, a=ENTRY.format(id="returns", answer="x"))
        library = KbLibrary(config)
        stop = reload_on_sighup(library)
        try:
            shutil.copy(config / "kb" / "a.yaml", config / "kb" / "b.yaml")
            (config / "kb" / "b.yaml").write_text(ENTRY.format(id="more", answer="z"))
            os.kill(os.getpid(), signal.SIGHUP)
            for _ in range(100):
                if library.reloads:
                    break
                await asyncio.sleep(0.01)
        finally:
            stop()
        assert library.reloads == 1 and library.current().entry("more") is not None
