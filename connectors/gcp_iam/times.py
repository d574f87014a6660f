"""The times in Google's payloads as aware datetimes: protobuf Timestamps and RFC 3339 text.

Pure. Shared by the account translation (``translate_service_accounts.py``) and the exposure
reader (``exposure/``), which read the same Google time formats.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Protocol


class _Timestamp(Protocol):
    seconds: int
    nanos: int


def ts_to_datetime(ts: _Timestamp | None) -> datetime | None:
    """A protobuf Timestamp (or proto-plus DatetimeWithNanoseconds) as an aware datetime; unset -> None."""
    if ts is None:
        return None
    if isinstance(ts, datetime):
        # proto-plus gives DatetimeWithNanoseconds for a set field and None for an unset one.
        return ts if ts.tzinfo else ts.replace(tzinfo=UTC)
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=UTC)


def parse_rfc3339(text: str | None) -> datetime | None:
    if not text:
        return None
    cleaned = text.replace("Z", "+00:00")
    # Python 3.11 fromisoformat takes at most 6 fractional digits; Google sends up to 9.
    m = re.match(r"^(.*?\.\d{6})\d*(.*)$", cleaned)
    if m:
        cleaned = m.group(1) + m.group(2)
    value = datetime.fromisoformat(cleaned)
    return value if value.tzinfo else value.replace(tzinfo=UTC)
