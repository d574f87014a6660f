"""An UpdateAccessKey that reached IAM but whose answer was lost is recorded from a re-read
(issue 17, item 3): moto in process, the real revoker, the connection reset injected with a
botocore ``after-call`` hook (the call was processed, the client never saw the answer)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ConnectionClosedError

from connectors.aws_iam import PLUGIN
from connectors.aws_iam.revoker import DEACTIVATE_ACCESS_KEY, AwsIamRevoker
from offboard_audit.core.actions import ActionTarget
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import CredentialKind
from offboard_audit.engine.steps import apply_step
from tests.support.aws import MOTO_ACCOUNT


@pytest.fixture
def session() -> Iterator[boto3.session.Session]:
    from moto import mock_aws

    with mock_aws():
        yield boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )


def revoker(session: boto3.session.Session) -> AwsIamRevoker:
    table = {"name": "aws-f", "type": "aws_iam"}
    assert PLUGIN.make_revoker is not None
    made = PLUGIN.make_revoker(SourceOptions(table), SourceContext(Path("."), clients={"aws-f": session}))
    assert isinstance(made, AwsIamRevoker)
    return made


def lose_the_answer_of(session: boto3.session.Session, operation: str) -> list[str]:
    """After ``operation`` was processed, raise as a reset connection would; returns the log."""
    lost: list[str] = []

    def reset(model: Any, **_: Any) -> None:
        if model.name == operation:
            lost.append(operation)
            raise ConnectionClosedError(endpoint_url="https://iam.amazonaws.com/")

    session.events.register("after-call.iam.*", reset)
    return lost


def test_update_access_key_that_reached_iam_before_the_reset_is_applied_not_failed(session):
    iam = session.client("iam")
    uid = iam.create_user(UserName="bob")["User"]["UserId"]
    key = iam.create_access_key(UserName="bob")["AccessKey"]["AccessKeyId"]
    target = ActionTarget(
        source="aws-f",
        system="aws_iam",
        account_id=f"arn:aws:iam::{MOTO_ACCOUNT}:user/bob",
        username="bob",
        credential_id=key,
        credential_kind=CredentialKind.ACCESS_KEY,
        scope=MOTO_ACCOUNT,
        account_uid=uid,
    )
    rv = revoker(session)
    lost = lose_the_answer_of(session, "UpdateAccessKey")

    step = apply_step(rv, DEACTIVATE_ACCESS_KEY, target)

    assert lost == ["UpdateAccessKey"]  # the answer really was lost
    assert step.status == "applied", step
    assert "in place" in step.message
    assert iam.list_access_keys(UserName="bob")["AccessKeyMetadata"][0]["Status"] == "Inactive"
