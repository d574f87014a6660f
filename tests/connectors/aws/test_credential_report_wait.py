"""Waiting for the credential report: the users are paged while it is generated, a report still
in progress is polled with back-off, and one that never comes fails its account after
``report_timeout`` (a failed source, never an empty, clean account). The clock and sleep are fakes that only
move when the source sleeps, so no test waits in real time."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from connectors.aws_iam.clients import AwsClients, ClientProvider
from connectors.aws_iam.settings import parse_settings
from connectors.aws_iam.source import AwsIamSource
from offboard_audit.core.errors import SourceError
from offboard_audit.core.options import SourceOptions
from tests.connectors.aws.test_translate import GENERATED, FixtureIAM, FixtureSTS


class FakeTime:
    """A clock that moves only when the source sleeps; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = GENERATED + timedelta(minutes=1)
        self.sleeps: list[float] = []

    def clock(self) -> Any:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)


def not_ready(code: str = "ReportInProgress") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "later"}}, "GetCredentialReport")


class SlowReportIAM(FixtureIAM):
    """Answers ``GetCredentialReport`` with ``errors`` (one per call) before the report."""

    def __init__(self, errors: list[ClientError]) -> None:
        super().__init__()
        self.errors = errors

    def get_credential_report(self, **kwargs: Any) -> dict[str, Any]:
        if self.errors:
            self.calls.append("GetCredentialReport")
            raise self.errors.pop(0)
        return super().get_credential_report(**kwargs)


def source(iam: FixtureIAM, time: FakeTime, **options: Any) -> AwsIamSource:
    settings = parse_settings(SourceOptions({"name": "aws", "type": "aws_iam", **options}))
    provider = ClientProvider(settings, AwsClients(iam=iam, sts=FixtureSTS()))
    return AwsIamSource(settings, provider, clock=time.clock, sleep=time.sleep)


def test_users_are_paged_while_the_report_is_still_being_generated() -> None:
    paging = threading.Event()

    class ReportAfterUsers(FixtureIAM):
        def get_account_authorization_details(self, **kwargs: Any) -> dict[str, Any]:
            paging.set()
            return super().get_account_authorization_details(**kwargs)

        def get_credential_report(self, **kwargs: Any) -> dict[str, Any]:
            # Read one after the other, the users would only be asked for after this returns.
            if not paging.wait(timeout=10):
                raise AssertionError("the report was awaited before the users were paged")
            return super().get_credential_report(**kwargs)

    data = source(ReportAfterUsers(), FakeTime()).collect()

    assert data.failed_scopes == ()
    assert any(c.credential_id == "report/access_key_1" for c in data.credentials)


def test_a_report_in_progress_is_polled_with_doubling_waits_until_it_is_ready() -> None:
    time = FakeTime()
    iam = SlowReportIAM([not_ready(), not_ready("ReportNotPresent"), not_ready()])

    data = source(iam, time).collect()

    assert data.failed_scopes == ()
    assert time.sleeps == [0.5, 1.0, 2.0]
    assert iam.calls.count("GenerateCredentialReport") == 4
    report_creds = [c for c in data.credentials if c.credential_id.startswith("report/")]
    assert report_creds and all(c.observed_at == GENERATED for c in report_creds)


def test_a_report_never_ready_fails_the_source_after_report_timeout_not_an_empty_account() -> None:
    time = FakeTime()
    iam = SlowReportIAM([not_ready() for _ in range(50)])

    # The only account failed, so the whole source failed: nothing of it can read as clean.
    with pytest.raises(
        SourceError, match=r"every AWS account failed .*not ready after 0:00:10.*ReportInProgress"
    ):
        source(iam, time, report_timeout="10s").collect()

    # 0.5 + 1 + 2 + 4 = 7.5 s waited; the next wait (5 s, the cap) would pass the 10 s.
    assert time.sleeps == [0.5, 1.0, 2.0, 4.0]


def test_another_report_error_fails_the_source_at_once_without_waiting() -> None:
    time = FakeTime()
    iam = SlowReportIAM([not_ready("AccessDenied")])

    with pytest.raises(SourceError, match="AccessDenied"):
        source(iam, time).collect()

    assert time.sleeps == []
    assert iam.calls.count("GenerateCredentialReport") == 1
