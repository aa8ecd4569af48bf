"""Typed access to what SQLModel and SQLAlchemy leave untyped, so that callers need no
``# type: ignore``: the ``Table`` of a model class, the row count of an UPDATE or DELETE."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Result, Table
from sqlmodel import SQLModel


def table_of(model: type[SQLModel]) -> Table:
    """The ``Table`` of a SQLModel table class (``Model.__table__``, which SQLModel sets but does not declare)."""
    table = model.__table__  # type: ignore[attr-defined]  # set by SQLModel's metaclass on table=True classes
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not a SQLModel table class (table=True)")
    return table


def rowcount(result: Result[Any]) -> int:
    """The rows an UPDATE or DELETE matched (``Session.execute`` types its result as a plain
    ``Result``; for DML it is a ``CursorResult``)."""
    return cast(CursorResult[Any], result).rowcount


def stored_id(row: Any) -> int:
    """The integer primary key ``id`` of a stored (loaded or flushed) row, which SQLModel types
    ``int | None`` because a row not yet added has none."""
    if row.id is None:
        raise ValueError(f"{type(row).__name__} has no id: it is not stored yet")
    return int(row.id)


def values_of(row: SQLModel) -> dict[str, Any]:
    """A row's plain values (``model_dump()``) with its fields in the model's declared order:
    ``model_dump()`` of a loaded row follows the order SQLAlchemy happened to set them in, which
    changed from one process to the next, so ``--json`` and the API shuffled their keys."""
    dumped = row.model_dump()
    return {name: dumped[name] for name in type(row).model_fields if name in dumped}
