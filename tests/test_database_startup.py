"""A database that cannot be reached or opened stops ``carebot run`` (and ``carebot db upgrade``)
with one line naming ``CAREBOT_DATABASE_URL``, its password masked, and a non-zero exit code;
not a traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.auxil.harness import TOKEN
from tests.auxil.processes import CAREBOT, carebot_env, free_port

PASSWORD = "s3cr3t-pass"


def _carebot(tmp_path: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CAREBOT, *args],
        env=carebot_env(telegram_token=TOKEN, database_url=database_url),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_line(result: subprocess.CompletedProcess[str], reason: str) -> str:
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.splitlines()
    assert line.startswith("carebot: cannot ") and "the database at " in line, line
    assert "(CAREBOT_DATABASE_URL)" in line and reason in line, line
    assert PASSWORD not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    return line


@pytest.mark.parametrize("command", [("run",), ("db", "upgrade")])
def test_an_unreachable_postgresql_is_one_line_without_the_password(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    url = f"postgresql+asyncpg://carebot:{PASSWORD}@127.0.0.1:{free_port()}/carebot"
    line = _one_line(_carebot(tmp_path, url, *command), "ConnectionRefusedError")
    assert "postgresql+asyncpg://carebot:***@127.0.0.1:" in line


def test_a_missing_postgresql_database_is_one_line(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://postgres:{PASSWORD}@127.0.0.1:5432/carebot_no_such_database"
    _one_line(_carebot(tmp_path, url, "run"), 'database "carebot_no_such_database" does not exist')


def test_a_sqlite_file_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "carebot.db"
    _one_line(
        _carebot(tmp_path, f"sqlite+aiosqlite:///{missing}", "run"), "unable to open database file"
    )
    not_a_database = tmp_path / "notes.db"
    not_a_database.write_text("shopping list: milk, eggs, and a lot more than a page header")
    _one_line(
        _carebot(tmp_path, f"sqlite+aiosqlite:///{not_a_database}", "run"),
        "file is not a database",
    )
    assert not missing.parent.exists()  # nothing was created on the way
