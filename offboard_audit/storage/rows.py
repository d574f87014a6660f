"""Records to rows and back, by name: a record field and the column of the same name hold the
same value (enums stored by value). Only what differs (JSON text, renamed or nested fields) is
written out by the caller.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from enum import Enum
from functools import cache
from types import NoneType, UnionType
from typing import TYPE_CHECKING, TypeVar, Union, cast, get_args, get_origin, get_type_hints

from sqlalchemy import RowMapping, Table

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")

Reader = Callable[[object], object]


def _same(value: object) -> object:
    return value


def _optional(read: Reader) -> Reader:
    return lambda value: None if value is None else read(value)


def _reader(hint: object) -> Reader:
    """How a column value becomes the value of a field declared ``hint``."""
    if get_origin(hint) in (Union, UnionType):
        inner = [a for a in get_args(hint) if a is not NoneType]
        return _optional(_reader(inner[0])) if len(inner) == 1 else _same
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint
    if hint is bool:
        return bool  # SQLite hands booleans back as 0/1 in some queries
    return _same


@cache
def _readers(cls: type[DataclassInstance]) -> tuple[tuple[str, Reader], ...]:
    hints = get_type_hints(cls)
    return tuple((f.name, _reader(hints[f.name])) for f in dataclasses.fields(cls))


def record_of(cls: type[R], row: RowMapping, /, **given: object) -> R:
    """A ``cls`` from ``row``: the ``given`` fields as they are, every other field from the
    column of its name (converted to the field's enum where it has one)."""
    values = dict(given)
    for name, read in _readers(cls):
        if name not in values and name in row:
            values[name] = read(row[name])
    return cast(Callable[..., R], cls)(**values)


@cache
def _columns(table: Table) -> frozenset[str]:
    return frozenset(table.c.keys())


@cache
def _shared_fields(cls: type[DataclassInstance], table: Table) -> tuple[str, ...]:
    # Worked out once per record class and table: a snapshot writes thousands of rows a run.
    columns = _columns(table)
    return tuple(f.name for f in dataclasses.fields(cls) if f.name in columns)


def row_of(record: DataclassInstance, table: Table, /, **given: object) -> dict[str, object]:
    """The column values of ``record`` for ``table``: each field that has a column of its name
    (enums by value), then ``given`` (columns named otherwise, JSON text, overrides)."""
    unknown = given.keys() - _columns(table)
    if unknown:
        raise KeyError(f"{table.name} has no column {', '.join(sorted(unknown))}")
    values: dict[str, object] = {}
    for name in _shared_fields(type(record), table):
        if name not in given:
            value = getattr(record, name)
            values[name] = value.value if isinstance(value, Enum) else value
    values.update(given)
    return values
