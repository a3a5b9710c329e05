"""End to end: customers ask the knowledge base through the real Application and the local Bot
API server, on both databases; plus the start-up check, reload and the report."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from bot.app import build_application
from bot.cli import app as cli_app
from bot.kernel.texts import Markup
from bot.settings import EXAMPLE_CONFIG_DIR, load_settings
from handlers.answers.kb import KbLibrary, KnowledgeBaseError, load_knowledge_base
from scheduler.kb_reload import KbReloadWatch
from storage.models import KbHandoff, KbQuestion
from tests.auxil.harness import TOKEN, Harness
from tests.auxil.processes import CAREBOT, carebot_env

KNOWLEDGE = load_knowledge_base(EXAMPLE_CONFIG_DIR)

BROKEN_ENTRY = """
entries:
  - id: broken
    questions: {zh: [坏的], en: [broken]}
    answer:
      zh: 好的
      en: <b>unclosed
"""


def _answer(harness: Harness, language: str, entry_id: str) -> str:
    entry = KNOWLEDGE.entry(entry_id)
    assert entry is not None
    return harness.text(language, "kb_answer", answer=Markup(entry.answer.get(language)))


def _callbacks(message: object) -> list[str]:
    return [data for _, data in message.buttons()]  # type: ignore[attr-defined]


async def _questions(harness: Harness) -> list[KbQuestion]:
    async with harness.sessionmaker() as session:
        return list((await session.execute(select(KbQuestion).order_by(KbQuestion.id))).scalars())


async def _handoffs(harness: Harness) -> list[KbHandoff]:
    async with harness.sessionmaker() as session:
        return list((await session.execute(select(KbHandoff).order_by(KbHandoff.id))).scalars())


async def _wait_for_callback_answer(harness: Harness, count: int) -> dict[str, object]:
    api = harness.api
    await api.wait_for(lambda: len(api.answered_callbacks) >= count, description="an answer")
    return api.answered_callbacks[count - 1]  # type: ignore[no-any-return]


def _copy_config(tmp_path: Path) -> Path:
    config = tmp_path / "config"
    shutil.copytree(EXAMPLE_CONFIG_DIR, config)
    return config


class TestAnswers:
    async def test_question_is_answered_in_the_customers_language(self, harness: Harness) -> None:
        api = harness.api
        li = api.add_user(3001, "小丽", language_code="zh-hans")
        await api.send_text(li, "退货怎么办")
        reply = (await api.wait_for_sent(li.id, 1))[0]
        assert reply.text == _answer(harness, "zh", "return-how")
        buttons = reply.buttons()
        assert buttons[0] == ("↩️ 申请退货", "https://shop.example.com/returns")
        [question] = await _questions(harness)
        assert buttons[-2:] == [
            (harness.text("zh", "kb_helpful_button"), f"kb:up:{question.id}"),
            (harness.text("zh", "kb_unhelpful_button"), f"kb:down:{question.id}"),
        ]
        assert (question.entry_id, question.outcome, question.question) == (
            "return-how",
            "answered",
            "退货怎么办",
        )

        await api.press_button(li, reply, f"kb:up:{question.id}")
        answer = await _wait_for_callback_answer(harness, 1)
        assert answer["text"] == harness.text("zh", "kb_thanks")
        [question] = await _questions(harness)
        assert question.feedback == "helpful" and question.feedback_at == harness.clock.now()

    async def test_typod_and_traditional_questions_are_answered(self, harness: Harness) -> None:
        api = harness.api
        tom = api.add_user(3002, "Tom", language_code="en")
        await api.send_text(tom, "how do i retrun somthing??")
        await api.send_text(tom, "運費多少錢")
        first, second = await api.wait_for_sent(tom.id, 2)
        assert first.text == _answer(harness, "en", "return-how")
        # A Chinese question from an English-speaking customer is answered in English.
        assert second.text == _answer(harness, "en", "shipping-fee")

    async def test_middle_band_offers_buttons_and_the_pick_answers(self, harness: Harness) -> None:
        api = harness.api
        wu = api.add_user(3003, "吴", language_code="zh")
        await api.send_text(wu, "退货还是换货")  # return or exchange: ambiguous
        offer = (await api.wait_for_sent(wu.id, 1))[0]
        assert offer.text == harness.text("zh", "kb_suggest")
        [question] = await _questions(harness)
        assert question.outcome == "suggested"
        picks = [data for data in _callbacks(offer) if data.startswith("kb:pick:")]
        assert len(picks) == 3
        assert f"kb:pick:{question.id}:return-policy" in picks
        assert _callbacks(offer)[-1] == f"kb:person:{question.id}"

        await api.press_button(wu, offer, f"kb:pick:{question.id}:return-policy")
        answer = (await api.wait_for_sent(wu.id, 2))[-1]
        assert answer.text == _answer(harness, "zh", "return-policy")
        [question] = await _questions(harness)
        assert (question.outcome, question.entry_id) == ("picked", "return-policy")

    async def test_thumbs_down_records_a_handoff_and_says_so(self, harness: Harness) -> None:
        api = harness.api
        ann = api.add_user(3004, "Ann", language_code="en")
        await api.send_text(ann, "Where is my parcel?")
        reply = (await api.wait_for_sent(ann.id, 1))[0]
        assert reply.text == _answer(harness, "en", "tracking")
        [question] = await _questions(harness)

        await api.press_button(ann, reply, f"kb:down:{question.id}")
        said = (await api.wait_for_sent(ann.id, 2))[-1]
        assert said.text == harness.text("en", "kb_handoff_requested")
        [handoff] = await _handoffs(harness)
        # Handed over as the customer typed it (the normalised text is for matching).
        assert (handoff.question, handoff.entry_id, handoff.kind) == (
            "Where is my parcel?",
            "tracking",
            "question",
        )
        assert handoff.customer_id == question.customer_id
        [question] = await _questions(harness)
        assert question.feedback == "unhelpful"

        # A second vote on the same answer changes nothing.
        await api.press_button(ann, reply, f"kb:up:{question.id}")
        answer = await _wait_for_callback_answer(harness, 2)
        assert answer["text"] == harness.text("en", "kb_feedback_already")
        assert len(await _handoffs(harness)) == 1

    async def test_unanswered_question_offers_a_person(self, harness: Harness) -> None:
        api = harness.api
        bo = api.add_user(3005, "Bo", language_code="en")
        await api.send_text(bo, "what is the capital of france")
        reply = (await api.wait_for_sent(bo.id, 1))[0]
        assert reply.text == harness.text("en", "kb_no_answer")
        [question] = await _questions(harness)
        assert question.outcome == "unanswered"
        await api.press_button(bo, reply, f"kb:person:{question.id}")
        said = (await api.wait_for_sent(bo.id, 2))[-1]
        assert said.text == harness.text("en", "kb_handoff_requested")
        assert [h.question for h in await _handoffs(harness)] == ["what is the capital of france"]

    async def test_someone_elses_button_is_refused(self, harness: Harness) -> None:
        api = harness.api
        cy = api.add_user(3006, "Cy", language_code="en")
        dee = api.add_user(3007, "Dee", language_code="en")
        await api.send_text(cy, "where is my parcel")
        await api.wait_for_sent(cy.id, 1)
        await api.send_text(dee, "/start")
        message = (await api.wait_for_sent(dee.id, 1))[0]
        [question] = await _questions(harness)
        await api.press_button(dee, message, f"kb:down:{question.id}")
        answer = await _wait_for_callback_answer(harness, 1)
        assert answer["text"] == harness.text("en", "button_expired")
        assert await _handoffs(harness) == []

    async def test_a_customer_in_a_flow_is_not_answered_by_the_kb(self, harness: Harness) -> None:
        api = harness.api
        eva = api.add_user(3008, "Eva", language_code="en")
        await api.send_text(eva, "/profile")
        card = (await api.wait_for_sent(eva.id, 1))[0]
        await api.press_button(eva, card, "profile:timezone")
        await api.wait_for_sent(eva.id, 2)
        await api.send_text(eva, "Europe/London")
        saved = (await api.wait_for_sent(eva.id, 3))[-1]
        assert saved.text == harness.text("en", "timezone_saved", timezone="Europe/London")
        assert await _questions(harness) == []

    async def test_reload_picks_up_a_new_entry_without_restart(
        self, harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        config = _copy_config(tmp_path)
        library = harness.application.bot_data.kb = KbLibrary(config)
        watch = KbReloadWatch(harness.sessionmaker, library)  # as `carebot run` ticks it
        await watch.prime()
        api = harness.api
        fay = api.add_user(3009, "Fay", language_code="en")
        new_answer = "No live fish — only <b>tanks</b>."
        await api.send_text(fay, "do you sell aquarium fish")
        assert (await api.wait_for_sent(fay.id, 1))[0].text != new_answer

        (config / "kb" / "pets.yaml").write_text(
            "entries:\n"
            "  - id: aquarium-fish\n"
            "    questions:\n"
            "      zh: [卖观赏鱼吗]\n"
            "      en: [do you sell aquarium fish]\n"
            "    answer:\n"
            "      zh: 不卖，只卖鱼缸。\n"
            f"      en: {new_answer}\n",
            encoding="utf-8",
        )
        monkeypatch.setenv("CAREBOT_DATABASE_URL", harness.settings.database_url)
        result = await asyncio.to_thread(
            CliRunner().invoke, cli_app, ["kb", "reload", "--config-dir", str(config)]
        )
        assert result.exit_code == 0, result.output
        assert "knowledge base OK: 37 entries in 8 files" in result.output
        assert "reload #1" in result.output
        assert await watch.run(harness.clock.now())

        await api.send_text(fay, "do you sell aquarium fish?")
        reply = (await api.wait_for_sent(fay.id, 2))[-1]
        assert reply.text == new_answer

    async def test_report_lists_unanswered_questions_and_unhelpful_entries(
        self, harness: Harness, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        api = harness.api
        gil = api.add_user(3010, "Gil", language_code="en")
        for text in ("what is the capital of france", "What is the capital of France?!"):
            await api.send_text(gil, text)
        await api.send_text(gil, "where is my parcel")
        replies = await api.wait_for_sent(gil.id, 3)
        tracking = next(q for q in await _questions(harness) if q.entry_id == "tracking")
        await api.press_button(gil, replies[2], f"kb:down:{tracking.id}")
        await api.wait_for_sent(gil.id, 4)

        monkeypatch.setenv("CAREBOT_DATABASE_URL", harness.settings.database_url)
        result = await asyncio.to_thread(
            CliRunner().invoke, cli_app, ["report", "kb", "--days", "36500"]
        )
        assert result.exit_code == 0, result.output
        rows = [
            [cell.strip() for cell in line.split("│")[1:-1]] for line in result.output.splitlines()
        ]
        assert ["2", "what is the capital of france"] in rows, result.output
        assert ["tracking", "1", "0", "1"] in rows, result.output


class TestStartup:
    async def test_a_kb_error_stops_start_up_naming_file_and_key(
        self, harness: Harness, tmp_path: Path
    ) -> None:
        config = _copy_config(tmp_path)
        (config / "kb" / "broken.yaml").write_text(BROKEN_ENTRY, encoding="utf-8")
        settings = load_settings(
            telegram_token=TOKEN,
            telegram_api_url=harness.settings.telegram_api_url,
            database_url=harness.settings.database_url,
            config_dir=config,
        )
        with pytest.raises(KnowledgeBaseError, match=r"broken\.yaml: entries\.0\.answer\.en"):
            build_application(
                settings,
                rules=harness.rules,
                texts=harness.texts,
                sessionmaker=harness.sessionmaker,
                clock=harness.clock,
            )

        env = carebot_env(
            telegram_token=TOKEN,
            telegram_api_url=harness.settings.telegram_api_url,
            database_url=harness.settings.database_url,
            config_dir=str(config),
        )
        run = await asyncio.to_thread(
            subprocess.run,
            [*CAREBOT, "run"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 2
        assert f"{config / 'kb' / 'broken.yaml'}: entries.0.answer.en (entry broken)" in run.stderr
        assert "<b> is never closed" in run.stderr

    def test_kb_reload_refuses_an_invalid_file_and_touches_nothing(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        config = _copy_config(tmp_path)
        (config / "kb" / "broken.yaml").write_text(BROKEN_ENTRY, encoding="utf-8")
        database = tmp_path / "carebot.db"
        monkeypatch.setenv("CAREBOT_DATABASE_URL", f"sqlite+aiosqlite:///{database}")
        result = CliRunner().invoke(cli_app, ["kb", "reload", "--config-dir", str(config)])
        assert result.exit_code == 2
        assert "broken.yaml: entries.0.answer.en (entry broken)" in result.output
        assert "nothing reloaded" in result.output
        assert not database.exists()  # the database was not even opened
