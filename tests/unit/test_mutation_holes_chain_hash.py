"""Mutation holes in the audit chain's hash (issue 10, batch 5). The hash is a stored format:
its input is checked against a known answer written out here and hashed with hashlib, never
with the product's own functions."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from offboard_audit.core.audit_chain import GENESIS, AuditEvent, event_hash


@pytest.fixture
def local_zone_plus_0530(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone at +05:30 (POSIX form: no zone database needed)."""
    monkeypatch.setenv("TZ", "XYZ-5:30")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_event_hash_is_sha256_of_the_known_compact_utc_json_with_non_ascii_kept_as_utf8(
    local_zone_plus_0530: None,
) -> None:
    at = datetime(2026, 3, 1, 13, 30, 0, 5, tzinfo=timezone(timedelta(hours=1)))  # 12:30 UTC
    payload_json = '{"name":"Zoë Ø","note":"日本"}'
    content = (
        '["' + GENESIS + '",7,"2026-03-01T12:30:00.000005+00:00","revoke","zoë@example.com",'
        '"run-1",null,"{\\"name\\":\\"Zoë Ø\\",\\"note\\":\\"日本\\"}"]'
    )
    expected = hashlib.sha256(content.encode("utf-8")).hexdigest()
    got = event_hash(GENESIS, 7, at, "revoke", "zoë@example.com", "run-1", None, payload_json)
    assert got == expected


def test_event_hash_refuses_a_naive_time_naming_at() -> None:
    with pytest.raises(ValueError, match=r"^at must be timezone-aware, got naive "):
        event_hash(GENESIS, 1, datetime(2026, 3, 1), "k", "a", None, None, "{}")


def test_an_audit_event_refuses_a_naive_time_naming_its_field() -> None:
    with pytest.raises(ValueError, match=r"^AuditEvent\.at must be timezone-aware, got naive "):
        AuditEvent(1, datetime(2026, 3, 1), "k", "a", None, None, "{}", GENESIS, "h")
    # an aware one is accepted
    assert AuditEvent(1, datetime(2026, 3, 1, tzinfo=UTC), "k", "a", None, None, "{}", GENESIS, "h").seq == 1
