"""``verify`` of the HR webhook: which rejection (status *and* message) each malformed header gets.

The HTTP contract tests check the status only; the message is what the sender reads in the
``error`` field, so a bad timestamp must not be reported as a bad signature, nor a bad scheme as a
mismatch. Every signature here is made with ``hmac``/``hashlib`` over ``"<timestamp>.<body>"``,
including signatures over malformed timestamps: a sender holding the secret still gets a 401, not
a crash. (Issue 10: mutation survivors of ``offboard_audit/daemon/webhook.py``.)
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

import pytest

from offboard_audit.daemon.webhook import Rejected, verify

SECRET = b"verify-test-secret"
NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
TS = "1772452800"  # NOW in unix seconds
WINDOW = timedelta(minutes=5)
BODY = b'{"event_id": "evt-1"}'

NOT_UNIX_SECONDS = "X-Offboard-Timestamp must be unix seconds"
BAD_SCHEME = "X-Offboard-Signature must be sha256=<hex>"
MISMATCH = "signature does not match"


def hexmac(timestamp: str, body: bytes = BODY, secret: bytes = SECRET) -> str:
    return hmac.new(secret, timestamp.encode("utf-8") + b"." + body, hashlib.sha256).hexdigest()


def headers(timestamp: str, signature: str) -> dict[str, str]:
    return {"x-offboard-timestamp": timestamp, "x-offboard-signature": signature}


def refusal(hdrs: dict[str, str], window: timedelta = WINDOW) -> tuple[int, str]:
    with pytest.raises(Rejected) as info:
        verify(hdrs, BODY, SECRET, NOW, window)
    return info.value.status, info.value.message


def test_the_fixed_timestamp_is_now() -> None:
    assert datetime.fromtimestamp(int(TS), UTC) == NOW
    assert verify(headers(TS, "sha256=" + hexmac(TS)), BODY, SECRET, NOW, WINDOW) == NOW


# --- the timestamp ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "timestamp",
    [
        pytest.param("yesterday", id="word"),
        pytest.param("-1772452800", id="negative"),
        pytest.param("1772452800.5", id="fraction"),
        pytest.param("1.7e9", id="exponent"),
        pytest.param(" 1772452800", id="leading-space"),
        pytest.param("\u0661\u0667\u0667\u0662\u0664\u0665\u0662\u0668\u0660\u0660", id="non-ascii-digits"),
    ],
)
def test_a_correctly_signed_timestamp_that_is_not_ascii_digits_is_401_not_unix_seconds(
    timestamp: str,
) -> None:
    assert refusal(headers(timestamp, "sha256=" + hexmac(timestamp))) == (401, NOT_UNIX_SECONDS)


def test_a_correctly_signed_13_digit_timestamp_is_401_not_unix_seconds() -> None:
    timestamp = "1000000000000"
    assert refusal(headers(timestamp, "sha256=" + hexmac(timestamp))) == (401, NOT_UNIX_SECONDS)


def test_a_correctly_signed_12_digit_timestamp_is_unix_seconds_and_409_outside_the_window() -> None:
    timestamp = "100000000000"  # year 5138
    assert refusal(headers(timestamp, "sha256=" + hexmac(timestamp))) == (
        409,
        "timestamp outside the allowed window of ±300 s",
    )


@pytest.mark.parametrize(("seconds", "shown"), [(301, "±300 s"), (-301, "±300 s")])
def test_a_timestamp_outside_the_window_is_409_naming_the_window(seconds: int, shown: str) -> None:
    timestamp = str(int(TS) + seconds)
    assert refusal(headers(timestamp, "sha256=" + hexmac(timestamp))) == (
        409,
        f"timestamp outside the allowed window of {shown}",
    )


def test_the_window_named_in_the_409_is_the_configured_one() -> None:
    timestamp = str(int(TS) - 91)
    status, message = refusal(headers(timestamp, "sha256=" + hexmac(timestamp)), window=timedelta(seconds=90))
    assert (status, message) == (409, "timestamp outside the allowed window of ±90 s")


# --- the signature's scheme -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param("sha1=" + hexmac(TS), id="sha1-scheme-over-the-right-mac"),
        pytest.param("SHA256=" + hexmac(TS), id="scheme-in-capitals"),
        pytest.param(hexmac(TS), id="no-scheme"),
        pytest.param("sha256=", id="sha256-without-hex"),
        pytest.param("sha256", id="sha256-without-equals"),
    ],
)
def test_a_signature_without_the_sha256_scheme_and_a_value_is_401_saying_the_expected_form(
    signature: str,
) -> None:
    assert refusal(headers(TS, signature)) == (401, BAD_SCHEME)


# --- the signature's value --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "signature",
    [
        pytest.param("sha256=" + hexmac(TS, secret=b"another-secret"), id="other-secret"),
        pytest.param("sha256=" + hexmac(str(int(TS) - 1)), id="other-timestamp"),
        pytest.param("sha256=" + hexmac(TS, body=BODY + b" "), id="other-body"),
        pytest.param("sha256=" + hexmac(TS) + "=00", id="right-mac-then-an-equals-sign"),
        pytest.param("sha256=" + hexmac(TS)[:-1], id="one-digit-short"),
        pytest.param("sha256=\u00e9" + hexmac(TS)[1:], id="non-ascii-character"),
        pytest.param("sha256=\udcff" + hexmac(TS)[1:], id="lone-surrogate"),
    ],
)
def test_a_sha256_signature_that_does_not_match_is_401_saying_so(signature: str) -> None:
    assert refusal(headers(TS, signature)) == (401, MISMATCH)
