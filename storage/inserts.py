"""Rows inserted with one Core statement and handed back as loaded, mapped objects.

The ORM's unit of work (``session.add`` + ``flush``) costs about twice a Core ``INSERT ...
RETURNING`` of the same row; the ticket desk inserts a message and a delivery for every relayed
message (``bench/relay.py``, profiled), so those two go through here.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

from sqlalchemy import Insert, Table, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from storage.models import Base

Row = TypeVar("Row", bound=Base)

_INSERTS: dict[type[Base], tuple[Insert, str, list[tuple[str, Any]]]] = {}


def _statement(model: type[Base]) -> tuple[Insert, str, list[tuple[str, Any]]]:
    """The model's insert (built once), its key's name, and its other columns with the value
    each gets when none is given. Only plain columns with a constant default (or none)
    qualify: anything the database would fill in itself would differ from the object handed
    back."""
    known = _INSERTS.get(model)
    if known is not None:
        return known
    table = cast(Table, model.__table__)
    columns: list[tuple[str, Any]] = []
    for column in table.columns:
        if column.primary_key:
            continue
        default = column.default
        if column.server_default is not None or (default is not None and not default.is_scalar):
            raise TypeError(
                f"{table.name}.{column.key}: only constant defaults can be inserted here"
            )
        constant = default.arg if default is not None else None  # type: ignore[attr-defined]
        columns.append((column.key, constant))
    (primary,) = table.primary_key.columns
    built = (insert(table).returning(primary), primary.key, columns)
    _INSERTS[model] = built
    return built


async def insert_loaded(session: AsyncSession, model: type[Row], **values: Any) -> Row:
    """Insert one row of ``model`` and return it as a persistent object of the session, every
    column loaded (no lazy load can follow), as if it had been read back."""
    statement, key, columns = _statement(model)
    row = {name: values.pop(name, default) for name, default in columns}
    if values:
        raise TypeError(f"{model.__name__}: unknown columns {sorted(values)}")
    new_id = (await session.execute(statement, row)).scalar_one()
    instance = model(**{key: new_id}, **row)
    make_transient_to_detached(instance)
    session.add(instance)
    return instance
