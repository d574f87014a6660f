"""AWS timestamps are read with the standard library, not dateutil, and give the same instants.

The expected values are written out by hand (not produced by botocore), and the end-to-end test
compares what the provider's clients read from a moto server with what a plain boto3 client
(botocore's default dateutil parser) reads from the same server.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest

from connectors.aws_iam.clients import AwsClients, ClientProvider, parse_aws_timestamp
from connectors.aws_iam.settings import AwsSettings
from tests.support.aws import FAKE_AWS_ENV, SeedUser, seed_users


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-28T09:15:02Z", datetime(2026, 11, 28, 9, 15, 2, tzinfo=UTC)),
        ("2026-11-28T09:15:02.123456Z", datetime(2026, 11, 28, 9, 15, 2, 123456, tzinfo=UTC)),
        ("2026-11-28T09:15:02.123Z", datetime(2026, 11, 28, 9, 15, 2, 123000, tzinfo=UTC)),
        ("2026-11-28T10:15:02+01:00", datetime(2026, 11, 28, 9, 15, 2, tzinfo=UTC)),
        ("2026-11-28T09:15:02", datetime(2026, 11, 28, 9, 15, 2, tzinfo=UTC)),
        # Not ISO 8601: botocore's own parser takes these.
        ("Sat, 28 Nov 2026 09:15:02 GMT", datetime(2026, 11, 28, 9, 15, 2, tzinfo=UTC)),
        (0, datetime(1970, 1, 1, tzinfo=UTC)),
        ("1795857302", datetime(2026, 11, 28, 9, 15, 2, tzinfo=UTC)),
        # Digits only are epoch seconds (as botocore reads them), even where ISO's basic form
        # would read a date: 20,261,128 s after 1970-01-01 is 1970-08-23 12:05:28.
        ("20261128", datetime(1970, 8, 23, 12, 5, 28, tzinfo=UTC)),
    ],
)
def test_aws_timestamps_in_every_form_botocore_accepts_read_as_the_same_utc_instant(
    raw: object, expected: datetime
) -> None:
    parsed = parse_aws_timestamp(raw)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


def test_a_value_that_is_no_timestamp_is_refused_not_read_as_now() -> None:
    with pytest.raises(ValueError):
        parse_aws_timestamp("not a date")


def test_provider_clients_read_the_same_dates_as_botocores_default_parser(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(key, value)
    created = datetime(2024, 2, 29, 23, 59, 58, tzinfo=UTC)
    seed_users([SeedUser("ada", created=created), SeedUser("bob")])
    settings = AwsSettings(name="aws", endpoint_url=moto_endpoint)
    ours = ClientProvider(settings, AwsClients()).home_iam().list_users()["Users"]
    plain = boto3.session.Session(region_name="us-east-1").client("iam", endpoint_url=moto_endpoint)
    theirs = plain.list_users()["Users"]

    assert [u["CreateDate"] for u in ours] == [u["CreateDate"] for u in theirs]
    assert {u["UserName"]: u["CreateDate"] for u in ours}["ada"] == created
    # The fast parser answers in the standard library's UTC; botocore's default in dateutil's
    # tzutc: this is how the test knows the provider's clients did not fall back to dateutil.
    assert all(u["CreateDate"].tzinfo is UTC for u in ours)
    assert all(u["CreateDate"].tzinfo is not UTC for u in theirs)
