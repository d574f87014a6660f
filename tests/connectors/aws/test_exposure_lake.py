"""CloudTrail Lake instead of log files, against botocore's Stubber (no Lake in moto): the query
names only the relevant events, pages become batches with checkpoints, a re-run resumes after
the last event read, and a failed query is a failed read, never "no events"."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from connectors.aws_iam.exposure.lake import STREAM, LakeReader, lake_query
from offboard_audit.core.errors import SourceError
from offboard_audit.core.exposure import Checkpoint
from offboard_audit.core.records import CredentialKind, ExposureHow

NOW = datetime(2026, 6, 30, tzinfo=UTC)
Q1 = "11111111-2222-3333-4444-555555555555"
Q2 = "66666666-7777-8888-9999-000000000000"
STORE = "arn:aws:cloudtrail:us-east-1:123456789012:eventdatastore/EXAMPLE-f852-4e8f-8bd1-bcf6cEXAMPLE"


def row(
    event_id: str, at: str, name: str, request: dict[str, Any], user: str = "alice"
) -> list[dict[str, str]]:
    return [
        {"eventID": event_id},
        {"eventTime": at},
        {"eventSource": "secretsmanager.amazonaws.com"},
        {"eventName": name},
        {"awsRegion": "us-east-1"},
        {"recipientAccountId": "123456789012"},
        {"userIdentity.type": "IAMUser"},
        {"userIdentity.arn": f"arn:aws:iam::123456789012:user/{user}"},
        {"userIdentity.username": user},
        {"requestParameters": json.dumps(request)},
    ]


def client() -> Any:
    return boto3.client(
        "cloudtrail", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def test_lake_pages_become_batches_and_a_rerun_resumes_after_the_last_event() -> None:
    ct = client()
    reader = LakeReader("aws", ct, STORE, timedelta(days=365), sleep=lambda _s: None)
    with Stubber(ct) as stub:
        stub.add_response(
            "start_query",
            {"QueryId": Q1},
            {"QueryStatement": lake_query(STORE, "2025-06-30 00:00:00")},
        )
        stub.add_response("get_query_results", {"QueryStatus": "RUNNING"}, {"QueryId": Q1})
        stub.add_response(
            "get_query_results",
            {
                "QueryStatus": "FINISHED",
                "QueryResultRows": [
                    row("e1", "2026-06-01 10:00:00.000", "GetSecretValue", {"secretId": "prod/sign"})
                ],
                "NextToken": "page-2",
            },
            {"QueryId": Q1},
        )
        stub.add_response(
            "get_query_results",
            {
                "QueryStatus": "FINISHED",
                "QueryResultRows": [
                    row(
                        "e2", "2026-06-02 11:00:00.000", "PutSecretValue", {"secretId": "prod/db"}, user="bob"
                    )
                ],
            },
            {"QueryId": Q1, "NextToken": "page-2"},
        )
        batches = list(reader.read({}, NOW))
        stub.assert_no_pending_responses()
    assert [[(e.event_id, e.how, e.target.kind, e.target.object_id) for e in b.events] for b in batches] == [
        [("e1", ExposureHow.READ, CredentialKind.SECRET, "us-east-1:prod/sign")],
        [("e2", ExposureHow.CREATED, CredentialKind.SECRET, "us-east-1:prod/db")],
    ]
    last = batches[-1].checkpoint
    assert last == Checkpoint(STREAM, "2026-06-02 11:00:00.000", ("e2",))

    # The next run asks from the last event's time on; the event read at that time is skipped.
    with Stubber(ct) as stub:
        stub.add_response(
            "start_query", {"QueryId": Q2}, {"QueryStatement": lake_query(STORE, "2026-06-02 11:00:00.000")}
        )
        stub.add_response(
            "get_query_results",
            {
                "QueryStatus": "FINISHED",
                "QueryResultRows": [
                    row("e2", "2026-06-02 11:00:00.000", "PutSecretValue", {"secretId": "prod/db"})
                ],
            },
            {"QueryId": Q2},
        )
        again = list(reader.read({STREAM: last}, NOW))
    assert [b.events for b in again] == [()]


def test_the_lake_query_names_only_relevant_events_and_no_failed_calls() -> None:
    query = lake_query(STORE, "2026-06-01 00:00:00")
    assert "FROM EXAMPLE-f852-4e8f-8bd1-bcf6cEXAMPLE " in query
    assert "'GetSecretValue'" in query and "'CreateAccessKey'" in query and "'DescribeInstances'" not in query
    assert "errorCode IS NULL" in query
    with pytest.raises(SourceError, match="not an event data store"):
        lake_query("x; DROP TABLE y", "2026-06-01 00:00:00")


def test_a_failed_lake_query_is_a_failed_read() -> None:
    ct = client()
    reader = LakeReader("aws", ct, STORE, timedelta(days=365), sleep=lambda _s: None)
    with Stubber(ct) as stub:
        stub.add_response("start_query", {"QueryId": Q1}, {"QueryStatement": ANY})
        stub.add_response(
            "get_query_results", {"QueryStatus": "FAILED", "ErrorMessage": "query timed out"}, {"QueryId": Q1}
        )
        with pytest.raises(SourceError, match="ended FAILED"):
            list(reader.read({}, NOW))
