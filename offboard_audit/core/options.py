"""Typed access to one config table, with errors that name the key and its line."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from offboard_audit.core.errors import ConfigError

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m|s)", re.IGNORECASE)
_UNITS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}


def parse_duration(text: str) -> timedelta:
    """Parse ``"0h"``, ``"15m"``, ``"7d"``, ``"1d12h"`` or ``"2w"`` into a timedelta."""
    cleaned = text.strip().replace(" ", "")
    if not cleaned:
        raise ValueError("empty duration")
    pos = 0
    total = 0.0
    for m in _DURATION_PART.finditer(cleaned):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2).lower()]
        pos = m.end()
    if pos != len(cleaned):
        raise ValueError(f"not a duration: {text!r} (use e.g. 0h, 30m, 7d, 1d12h)")
    return timedelta(seconds=total)


class SourceOptions:
    """One ``[[sources]]`` table (or any table) with typed getters.

    Each getter raises :class:`ConfigError` naming ``<prefix>.<key>`` and the key's line
    in the config file (when ``locate`` can find it).
    """

    def __init__(
        self,
        raw: Mapping[str, Any],
        prefix: str = "",
        locate: Callable[[str], int | None] | None = None,
        base_dir: Path | None = None,
    ) -> None:
        self.raw = raw
        self.prefix = prefix
        self._locate = locate or (lambda _key: None)
        self.base_dir = base_dir or Path.cwd()

    def path(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, message: str) -> ConfigError:
        path = self.path(key)
        return ConfigError(message, key=path, line=self._locate(path))

    def __contains__(self, key: str) -> bool:
        return key in self.raw

    def __iter__(self) -> Iterator[str]:
        return iter(self.raw)

    def keys(self) -> list[str]:
        return list(self.raw)

    def _get(self, key: str, required: bool) -> Any:
        if key not in self.raw:
            if required:
                raise self.error(key, "is required but missing")
            return None
        return self.raw[key]

    def string(self, key: str, shown: bool = True) -> str:
        """``shown=False`` for a value that may carry a secret (a URL with a password or a
        token): an error names its type, never the value."""
        value = self._get(key, True)
        if not isinstance(value, str) or not value.strip():
            got = repr(value) if shown else _kind(value)
            raise self.error(key, f"must be a non-empty string, got {got}")
        return value

    def opt_str(self, key: str, default: str | None = None, shown: bool = True) -> str | None:
        if key not in self.raw:
            return default
        return self.string(key, shown)

    def integer(self, key: str, default: int | None = None, minimum: int | None = None) -> int:
        value = self._get(key, default is None)
        if value is None:
            assert default is not None
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value}")
        return value

    def number(self, key: str, default: float | None = None) -> float:
        value = self._get(key, default is None)
        if value is None:
            assert default is not None
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"must be a number, got {value!r}")
        return float(value)

    def flag(self, key: str, default: bool = False) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def strings(self, key: str, default: tuple[str, ...] = (), shown: bool = True) -> tuple[str, ...]:
        """``shown=False``: as for :meth:`string`, an error names the wrong item by position."""
        value = self._get(key, False)
        if value is None:
            return default
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            if shown:
                raise self.error(key, f"must be a list of strings, got {value!r}")
            if not isinstance(value, list):
                raise self.error(key, f"must be a list of strings, got {_kind(value)}")
            n, item = next((n, v) for n, v in enumerate(value, start=1) if not isinstance(v, str))
            raise self.error(key, f"must be a list of strings; item {n} is {_kind(item)}")
        return tuple(value)

    def pairs(self, key: str, default: tuple[str, ...] = ()) -> tuple[tuple[str, str], ...]:
        """A list of ``"key=value"`` strings (tags, labels, metadata that mark something), as
        casefolded ``(key, value)`` pairs; an item without ``=`` or without a key is an error."""
        found: list[tuple[str, str]] = []
        for item in self.strings(key, default):
            name, sep, value = item.partition("=")
            if not sep or not name.strip():
                raise self.error(key, f'{item!r} is not "key=value"')
            found.append((name.strip().casefold(), value.strip().casefold()))
        return tuple(found)

    def only(self, known: Iterable[str], what: str = "") -> None:
        """Refuse a key that is not in ``known`` (a typo must not be silently ignored): the error
        names the first unknown key and lists the known ones."""
        allowed = sorted(known)
        unknown = sorted(set(self.raw) - set(allowed))
        if unknown:
            where = f" for {what}" if what else ""
            raise self.error(unknown[0], f"unknown option{where} (known: {', '.join(allowed)})")

    def duration(self, key: str, default: timedelta | None = None) -> timedelta:
        value = self._get(key, default is None)
        if value is None:
            assert default is not None
            return default
        if not isinstance(value, str):
            raise self.error(key, f'must be a duration string such as "7d", got {value!r}')
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise self.error(key, str(exc)) from None

    def str_map(self, key: str) -> dict[str, str]:
        value = self._get(key, False)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self.error(key, "must be a table of string keys to string values")
        return dict(value)

    def table(self, key: str) -> SourceOptions:
        value = self._get(key, False)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.error(key, "must be a table")
        return SourceOptions(value, self.path(key), self._locate, self.base_dir)

    def file_path(self, key: str) -> Path:
        p = Path(self.string(key)).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def opt_file_path(self, key: str) -> Path | None:
        return self.file_path(key) if key in self.raw else None

    def secret(self, key: str, env: Mapping[str, str], required: bool = True) -> str | None:
        """Read a secret from the environment variable that option ``key`` names.

        Secrets never live in the config file itself; the value is returned, never logged.
        """
        if key not in self.raw:
            if required:
                raise self.error(key, "is required: name the environment variable holding the secret")
            return None
        var = self.string(key)
        value = env.get(var)
        if value is None or value == "":
            raise self.error(key, f"environment variable {var} is not set")
        return value


def _kind(value: object) -> str:
    """What a TOML value is (``an integer``, ``a list``), for an error that must not show it."""
    name = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}
    return name.get(type(value), "a table" if isinstance(value, dict) else f"a {type(value).__name__}")
