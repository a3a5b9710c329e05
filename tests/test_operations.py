"""What a shop owner meets running carebot: `carebot db current`, `carebot kb check`, `kb reload`
reaching a running bot through the database, quiet Alembic, the CLI's help and plurals in both
languages, and the Docker files."""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import typer
import yaml
from typer.testing import CliRunner

from bot.cli import app
from bot.cli_texts import counted
from bot.logs import configure_logging
from bot.sandbox.api import LocalBotApi
from bot.settings import EXAMPLE_CONFIG_DIR
from storage.migrate import HEAD_REVISION, upgrade
from tests.auxil.harness import STAFF_CHAT_ID
from tests.auxil.processes import free_port, start_carebot
from tests.auxil.waiting import eventually

ROOT = Path(__file__).resolve().parents[1]
NEW_ANSWER = "No live fish — only <b>tanks</b>."
PETS = (
    "entries:\n"
    "  - id: aquarium-fish\n"
    "    questions:\n"
    "      zh: [卖观赏鱼吗]\n"
    "      en: [do you sell aquarium fish]\n"
    "    answer:\n"
    "      zh: 不卖，只卖鱼缸。\n"
    f"      en: {NEW_ANSWER}\n"
)
BROKEN = "entries:\n  - id: broken\n    questions: {zh: [坏], en: [broken]}\n"


def _sqlite(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'carebot.db'}"


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every command and group of the CLI, as the words that reach it."""
    yield path
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


class TestCommandLine:
    def test_no_help_page_shows_a_bool_type(self) -> None:
        pages = list(_commands(typer.main.get_command(app)))
        assert ("db", "current") in pages and ("kb", "check") in pages
        for page in pages:
            result = CliRunner().invoke(app, [*page, "--help"])
            assert result.exit_code == 0, (page, result.output)
            assert "<bool>" not in result.output, (page, result.output)
        recompute = CliRunner().invoke(app, ["tiers", "recompute", "--help"]).output
        assert "--full " in recompute and "--rebuild " in recompute  # flags, without a value

    def test_counts_have_real_plurals_in_both_languages(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        assert [counted("customers", n) for n in (0, 1, 2, 1200)] == [
            "0 customers",
            "1 customer",
            "2 customers",
            "1,200 customers",
        ]
        monkeypatch.setenv("CAREBOT_CLI_LANGUAGE", "zh")
        assert [counted("customers", n) for n in (1, 2)] == ["1 位客户", "2 位客户"]
        monkeypatch.delenv("CAREBOT_CLI_LANGUAGE")
        monkeypatch.setenv("LANG", "zh_CN.UTF-8")
        monkeypatch.delenv("LC_ALL", raising=False)
        monkeypatch.delenv("LC_MESSAGES", raising=False)
        assert counted("entries", 2) == "2 个条目"

    def test_an_unknown_cli_language_is_one_line(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CAREBOT_CLI_LANGUAGE", "fr")
        result = CliRunner().invoke(app, ["db", "current"])
        assert result.exit_code == 2
        assert result.output == (
            "carebot: invalid setting CAREBOT_CLI_LANGUAGE: expected one of zh, en\n"
        )


class TestDbCurrent:
    def test_says_the_revision_and_whether_it_is_current(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CAREBOT_DATABASE_URL", _sqlite(tmp_path))
        empty = CliRunner().invoke(app, ["db", "current"])
        assert (empty.exit_code, empty.output) == (
            1,
            f"database schema: none yet, this carebot needs {HEAD_REVISION}: "
            "run `carebot db upgrade`\n",
        )
        upgrade(_sqlite(tmp_path), "0012")
        behind = CliRunner().invoke(app, ["db", "current"])
        assert behind.exit_code == 1
        assert f"revision 0012, this carebot needs {HEAD_REVISION}" in behind.output
        assert CliRunner().invoke(app, ["db", "upgrade"]).exit_code == 0
        current = CliRunner().invoke(app, ["db", "current"])
        assert (current.exit_code, current.output) == (
            0,
            f"database schema: revision {HEAD_REVISION}, current\n",
        )
        monkeypatch.setenv("CAREBOT_CLI_LANGUAGE", "zh")
        chinese = CliRunner().invoke(app, ["db", "current"])
        assert chinese.output == f"数据库结构：版本 {HEAD_REVISION}，已是最新\n"

    def test_an_unreachable_database_is_one_line(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(
            "CAREBOT_DATABASE_URL", f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none"
        )
        result = CliRunner().invoke(app, ["db", "current"])
        assert result.exit_code == 2
        assert result.output.startswith("carebot: cannot open the database at postgresql")
        assert len(result.output.splitlines()) == 1


class TestKbCheck:
    def test_the_shipped_files_pass(self) -> None:
        result = CliRunner().invoke(app, ["kb", "check", "--config-dir", str(EXAMPLE_CONFIG_DIR)])
        assert (result.exit_code, result.output) == (
            0,
            "knowledge base OK: 36 entries in 7 files\n",
        )

    def test_an_error_names_the_file_and_the_key(self, tmp_path: Path) -> None:
        config = tmp_path / "config"
        shutil.copytree(EXAMPLE_CONFIG_DIR, config)
        (config / "kb" / "broken.yaml").write_text(BROKEN, encoding="utf-8")
        result = CliRunner().invoke(app, ["kb", "check", "--config-dir", str(config)])
        assert result.exit_code == 2
        assert f"{config / 'kb' / 'broken.yaml'}: entries.0.answer" in result.output


class TestAlembicIsQuiet:
    def test_its_set_up_lines_are_debug_and_come_once(
        self, tmp_path: Path, restore_logging: None
    ) -> None:
        info = io.StringIO()
        configure_logging("INFO", secrets=[], stream=info, log_format="text")
        upgrade(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
        assert "Running upgrade  -> 0001" in info.getvalue()
        assert "Context impl" not in info.getvalue()
        assert "setup plugin" not in info.getvalue()

        debug = io.StringIO()
        configure_logging("DEBUG", secrets=[], stream=debug, log_format="text")
        upgrade(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}")
        logging.getLogger("alembic").setLevel(logging.NOTSET)
        assert debug.getvalue().count("DEBUG alembic.runtime.migration: Context impl") == 1


class TestDocker:
    def test_the_compose_files_parse_and_the_small_shop_runs_one_process(self) -> None:
        scale_out = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
        assert scale_out["services"]
        shop = yaml.safe_load((ROOT / "deploy" / "compose.shop.yaml").read_text())
        [(name, service)] = shop["services"].items()
        assert name == "carebot"
        environment = service["environment"]
        assert environment["CAREBOT_DATABASE_URL"].startswith("sqlite+aiosqlite:////data/")
        assert "CAREBOT_WEBHOOK_URL" not in environment  # long polling: no domain needed
        assert any(volume.endswith(":/data") for volume in service["volumes"])
        assert "ports" not in service  # nothing listens for the internet

    def test_the_dockerfile_installs_dependencies_first_and_checks_health(self) -> None:
        lines = [
            line.strip()
            for line in (ROOT / "Dockerfile").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        ]
        copies = [line for line in lines if line.startswith("COPY")]
        assert copies[0].startswith("COPY pyproject.toml")
        installs = [number for number, line in enumerate(lines) if "pip install" in line]
        assert len(installs) == 2  # the dependencies, then the project without them
        assert installs[0] < lines.index(copies[1])
        assert any(line.startswith("HEALTHCHECK") for line in lines)
        for copied in copies[1:]:
            source = copied.split()[1]
            assert (ROOT / source).exists(), copied


async def test_a_running_bot_follows_kb_reload_and_readyz_runs_no_alembic(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    shutil.copytree(EXAMPLE_CONFIG_DIR, config)
    config.chmod(0o555)  # as in the Docker image: nothing may be written beside the files
    api = LocalBotApi("123456:OPS-test")
    await api.start()
    api.add_group(STAFF_CHAT_ID, "Staff", forum=True)
    port = free_port()
    log = tmp_path / "bot.log"
    process = await start_carebot(
        "run",
        log=log,
        telegram_token=api.token,
        telegram_api_url=api.root_url,
        database_url=database_url,
        config_dir=str(config),
        staff_chat_id=str(STAFF_CHAT_ID),
        serve_web="true",
        listen_host="127.0.0.1",
        listen_port=str(port),
        log_level="INFO",
        log_format="text",
    )
    try:
        fay = api.add_user(7201, "Fay", language_code="en")
        await api.send_text(fay, "do you sell aquarium fish")
        assert (await api.wait_for_sent(fay.id, 1, timeout=30))[0].text != NEW_ANSWER
        async with aiohttp.ClientSession() as client:
            for _ in range(2):
                async with client.get(f"http://127.0.0.1:{port}/readyz") as probe:
                    assert probe.status == 200, await probe.text()

        config.chmod(0o755)
        (config / "kb" / "pets.yaml").write_text(PETS, encoding="utf-8")
        config.chmod(0o555)
        monkeypatch.setenv("CAREBOT_DATABASE_URL", database_url)
        reload = await asyncio.to_thread(
            CliRunner().invoke, app, ["kb", "reload", "--config-dir", str(config)]
        )
        assert reload.exit_code == 0, reload.output
        await eventually(
            lambda: "knowledge base reloaded: 37 entries" in log.read_text(),
            timeout=15,
            description="the bot reloading its knowledge base",
        )
        await api.send_text(fay, "do you sell aquarium fish?")
        assert (await api.wait_for_sent(fay.id, 2, timeout=10))[-1].text == NEW_ANSWER
    finally:
        config.chmod(0o755)
        process.terminate()
        async with asyncio.timeout(30):
            await process.wait()
        await api.stop()
    output = log.read_text()
    assert "alembic" not in output, output
    assert "Traceback" not in output, output
