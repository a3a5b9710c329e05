"""Throwaway databases for tests: a migrated SQLite file per test, and one PostgreSQL database
per test run (created, migrated once, truncated before each test, dropped at the end)."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from storage.migrate import upgrade
from storage.models import Base

POSTGRES_ADMIN_URL = os.environ.get(
    "CAREBOT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_POSTGRES = os.environ.get("CAREBOT_REQUIRE_POSTGRES", "") not in ("", "0")


T = TypeVar("T")


def blocking(function: Callable[..., T], *args: Any) -> T:
    """Run ``function`` in a worker thread and wait: it may call ``asyncio.run`` (Alembic's env
    does) even when the caller is inside a running event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, *args).result()


def run_coroutine(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return blocking(lambda: asyncio.run(factory()))


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _admin_execute(statement: str) -> None:
    connection = await asyncpg.connect(_asyncpg_dsn(POSTGRES_ADMIN_URL), timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def create_postgres_database() -> str:
    """Create and migrate a fresh database; skip (or fail, when required) without a server."""
    url = create_empty_postgres_database()
    blocking(upgrade, url)
    return url


def create_empty_postgres_database() -> str:
    """Create an empty database; skip (or fail, when required) without a server."""
    name = f"carebot_test_{uuid.uuid4().hex[:12]}"
    try:
        run_coroutine(lambda: _admin_execute(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError, TimeoutError) as error:
        reason = f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL}: {error}"
        if REQUIRE_POSTGRES:
            pytest.fail(f"{reason} (CAREBOT_REQUIRE_POSTGRES is set)", pytrace=False)
        pytest.skip(reason)
    return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def drop_postgres_database(url: str) -> None:
    name = make_url(url).database
    run_coroutine(lambda: _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def truncate_all(url: str) -> None:
    """Empty every table (tests that commit cannot be rolled back from outside)."""
    tables = ", ".join(f'"{table.name}"' for table in Base.metadata.sorted_tables)

    async def truncate() -> None:
        connection = await asyncpg.connect(_asyncpg_dsn(url))
        try:
            await connection.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        finally:
            await connection.close()

    run_coroutine(truncate)


def create_sqlite_template(directory: Path) -> Path:
    path = directory / "template.db"
    blocking(upgrade, f"sqlite+aiosqlite:///{path}")
    return path


def sqlite_copy(template: Path, directory: Path) -> str:
    target = directory / f"carebot-{uuid.uuid4().hex[:8]}.db"
    shutil.copyfile(template, target)
    return f"sqlite+aiosqlite:///{target}"
