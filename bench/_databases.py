"""Throwaway databases for the benchmarks: a migrated SQLite file or PostgreSQL database."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from storage.migrate import upgrade

POSTGRES_ADMIN_URL = os.environ.get(
    "CAREBOT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
)


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@asynccontextmanager
async def scratch_database(kind: str, directory: Path, name: str) -> AsyncIterator[str]:
    """A migrated, empty database of ``kind`` (sqlite or postgresql), removed afterwards."""
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{directory / f'{name}.db'}"
        await asyncio.to_thread(upgrade, url)
        yield url
        return
    database = f"carebot_bench_{name}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(_dsn(POSTGRES_ADMIN_URL))
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        url = make_url(POSTGRES_ADMIN_URL).set(database=database).render_as_string(False)
        try:
            await asyncio.to_thread(upgrade, url)
            yield url
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()
