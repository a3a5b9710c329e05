"""`carebot db upgrade` gives the same schema on an empty SQLite file and PostgreSQL database."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from storage.engine import create_engine
from storage.models import Base
from tests.auxil import databases
from tests.auxil.processes import CAREBOT, carebot_env


def _family(column_type: Any) -> str:
    python_type = column_type.python_type
    return getattr(python_type, "__name__", str(python_type))


def _schema(connection: Connection) -> dict[str, Any]:
    inspector = inspect(connection)
    schema: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        if table == "alembic_version":
            continue
        schema[table] = {
            "columns": sorted(
                (c["name"], _family(c["type"]), c["nullable"])
                for c in inspector.get_columns(table)
            ),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in inspector.get_indexes(table)
                # PostgreSQL also lists each unique constraint as an index: compared below.
                if not i.get("duplicates_constraint")
            ),
            "unique": sorted(
                (u["name"], tuple(u["column_names"]))
                for u in inspector.get_unique_constraints(table)
            ),
            "foreign_keys": sorted(
                (f["name"], tuple(f["constrained_columns"]), f["referred_table"])
                for f in inspector.get_foreign_keys(table)
            ),
            "primary_key": tuple(inspector.get_pk_constraint(table)["constrained_columns"]),
        }
    return schema


async def _read_schema(url: str) -> dict[str, Any]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_schema)
    finally:
        await engine.dispose()


def _db_upgrade(url: str, cwd: Path) -> None:
    result = subprocess.run(
        [*CAREBOT, "db", "upgrade"],
        env=carebot_env(database_url=url),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


async def test_db_upgrade_gives_the_same_schema_on_both_databases(tmp_path: Path) -> None:
    sqlite_url = f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
    _db_upgrade(sqlite_url, tmp_path)
    postgres_url = databases.blocking(databases.create_empty_postgres_database)
    try:
        _db_upgrade(postgres_url, tmp_path)
        sqlite_schema = await _read_schema(sqlite_url)
        postgres_schema = await _read_schema(postgres_url)
    finally:
        databases.drop_postgres_database(postgres_url)
    assert set(sqlite_schema) == {table.name for table in Base.metadata.sorted_tables}
    assert sqlite_schema == postgres_schema


def test_db_upgrade_twice_is_harmless(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'again.db'}"
    for _ in range(2):
        _db_upgrade(url, tmp_path)


def test_the_head_revision_carebot_expects_is_alembics_head() -> None:
    """``storage.migrate.HEAD_REVISION`` (read without loading Alembic) is the newest
    migration shipped: a new migration must raise it."""
    from alembic.script import ScriptDirectory

    from storage.migrate import HEAD_REVISION, alembic_config

    scripts = ScriptDirectory.from_config(alembic_config("sqlite+aiosqlite:///unused.db"))
    assert scripts.get_current_head() == HEAD_REVISION
