"""Text with NUL characters on PostgreSQL.

PostgreSQL's text cannot hold the NUL character (SQLite's can), and psycopg refuses to send one:
a single HR name, display name or credential detail with a NUL in it failed the whole audit on
PostgreSQL (exit 4) while SQLite stored it. Values come from other systems, so the database
layer must store them as they are on both databases.

On PostgreSQL every string sent is escaped and every text value read is unescaped, so a value
reads back exactly as written and comparisons in SQL (ids, names) match the same escaped form:
``U+FFFE`` is the escape character (a Unicode noncharacter, which text from other systems does
not carry), ``\\0`` is sent as ``U+FFFE 0`` and ``U+FFFE`` itself as ``U+FFFE e``. A string with
neither is sent and read unchanged, so every value stored before this needs no migration.
"""

from __future__ import annotations

import re
from typing import Any

from psycopg.adapt import AdaptersMap, Buffer
from psycopg.types.string import StrBinaryDumper, StrDumperUnknown, TextBinaryLoader, TextLoader

ESCAPE = "\ufffe"
_ESCAPED = re.compile(ESCAPE + "(.)", re.DOTALL)
_DECODE = {"0": "\0", "e": ESCAPE}


def escape_text(value: str) -> str:
    if "\0" not in value and ESCAPE not in value:
        return value
    return value.replace(ESCAPE, ESCAPE + "e").replace("\0", ESCAPE + "0")


def unescape_text(value: str) -> str:
    if ESCAPE not in value:
        return value
    return _ESCAPED.sub(lambda m: _DECODE.get(m.group(1), m.group(0)), value)


class _Dumper(StrDumperUnknown):
    def dump(self, obj: str) -> Buffer | None:
        return super().dump(escape_text(obj))


class _BinaryDumper(StrBinaryDumper):
    def dump(self, obj: str) -> Buffer | None:
        return super().dump(escape_text(obj))


class _Loader(TextLoader):
    def load(self, data: Buffer) -> Any:
        value = super().load(data)
        return unescape_text(value) if isinstance(value, str) else value


class _BinaryLoader(TextBinaryLoader):
    def load(self, data: Buffer) -> Any:
        value = super().load(data)
        return unescape_text(value) if isinstance(value, str) else value


def register_nul_safe_text(adapters: AdaptersMap) -> None:
    """Make a psycopg connection's strings NUL-safe (see the module docstring)."""
    adapters.register_dumper(str, _Dumper)
    adapters.register_dumper(str, _BinaryDumper)
    for name in ("text", "varchar"):
        adapters.register_loader(name, _Loader)
        adapters.register_loader(name, _BinaryLoader)
