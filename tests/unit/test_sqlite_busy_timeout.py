"""How long a SQLite write waits for another process's lock: 30 s, or the URL's ``?timeout=N``
(read back from SQLite itself, not from the product's parsing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from offboard_audit.core.errors import ConfigError
from offboard_audit.storage.db import make_engine


def _busy_ms(url: str) -> int:
    with make_engine(url).connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one())


@pytest.mark.parametrize(
    ("query", "expected_ms"),
    [("", 30_000), ("?timeout=3", 3_000), ("?timeout=0.5", 500), ("?timeout=0", 0)],
)
def test_the_busy_timeout_is_30_s_unless_the_url_sets_it(
    tmp_path: Path, query: str, expected_ms: int
) -> None:
    assert _busy_ms(f"sqlite:///{tmp_path / 'a.db'}{query}") == expected_ms


@pytest.mark.parametrize("value", ["abc", "-1", "nan"])
def test_a_timeout_that_is_not_a_number_of_seconds_is_a_config_error_naming_it(
    tmp_path: Path, value: str
) -> None:
    with pytest.raises(ConfigError) as exc:
        make_engine(f"sqlite:///{tmp_path / 'a.db'}?timeout={value}")
    assert f"timeout={value!r}" in exc.value.message and exc.value.key == "database.url"
