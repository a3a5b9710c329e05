"""Run Alembic migrations programmatically (``carebot db upgrade`` and ``carebot run``).

Alembic (with Mako and Pygments behind it) is imported only when a migration runs: a bot whose
schema is current never loads it, which keeps several megabytes out of the running process.
``HEAD_REVISION`` says which revision this version of carebot needs without reading the
migration scripts; a test checks it against Alembic's own head.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from storage.engine import create_engine, parse_database_url

if TYPE_CHECKING:
    from alembic.config import Config

HEAD_REVISION = "0019"
"""The newest migration in ``storage/migrations/versions`` (raise it with each new one)."""

_VERSION = text("SELECT version_num FROM alembic_version")


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at the migrations shipped inside the package."""
    from alembic.config import Config

    parse_database_url(database_url)
    config = Config()
    config.set_main_option("script_location", "storage:migrations")
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema up to ``revision``; blocking, so call it outside a running event loop."""
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)


def upgrade_if_behind(database_url: str) -> bool:
    """Upgrade only when the schema is not at ``HEAD_REVISION`` (read in plain SQL: Alembic is
    not loaded for a current database); True when it ran. Blocking, like ``upgrade``."""
    if asyncio.run(revision_of(database_url)) == HEAD_REVISION:
        return False
    upgrade(database_url)
    return True


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    async with engine.connect() as connection:
        if not await connection.run_sync(lambda sync: inspect(sync).has_table("alembic_version")):
            return None
        return (await connection.execute(_VERSION)).scalar_one_or_none()


async def revision_of(database_url: str) -> str | None:
    """``current_revision`` of the database at ``database_url`` (an engine of its own)."""
    engine = create_engine(database_url)
    try:
        return await current_revision(engine)
    finally:
        await engine.dispose()
