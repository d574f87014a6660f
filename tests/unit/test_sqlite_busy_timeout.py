"""How long a SQLite write waits for another process's lock: 30 s, or the URL's ``?timeout=N``
(read back from SQLite itself, not from the product's parsing)."""

from __future__ import annotations

from pathlib import Path

import pytest

from offboard_audit.storage.db import make_engine


def _busy_ms(url: str) -> int:
    with make_engine(url).connect() as conn:
        return int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one())


@pytest.mark.parametrize(
    ("query", "expected_ms"),
    [("", 30_000), ("?timeout=3", 3_000), ("?timeout=0.5", 500), ("?timeout=-1", 30_000)],
)
def test_the_busy_timeout_is_30_s_unless_the_url_sets_it(
    tmp_path: Path, query: str, expected_ms: int
) -> None:
    assert _busy_ms(f"sqlite:///{tmp_path / 'a.db'}{query}") == expected_ms
