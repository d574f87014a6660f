"""deny_issued_sessions (aws_iam): the exact policy document it writes and the exact states its
read records (the audit log's before/after), against moto in process.

The action is what cuts off a leaver's already-issued STS sessions: a wrong document (a stamp
in the host's local time with a ``Z``, say) leaves sessions live while the step says applied,
and a wrong read makes the audit log record the wrong thing. moto does not evaluate policies,
so the documents are pinned against texts written out here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest

from connectors.aws_iam import PLUGIN
from connectors.aws_iam.actions import DenyIssuedSessions
from connectors.aws_iam.revoker import DENY_ISSUED_SESSIONS, AwsIamRevoker, deny_policy_document
from connectors.aws_iam.translate import DENY_POLICY_NAME
from offboard_audit.core.actions import ActionTarget, ResourceState
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import CredentialKind
from offboard_audit.engine.steps import apply_step, read_state
from tests.support.aws import MOTO_ACCOUNT, SeedUser, action_target, iam_backend, seed_users

FIXED_NOW = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)

# The document for FIXED_NOW, written out by hand: keys sorted at every level, json.dumps'
# default separators, the stamp in UTC with a literal Z.
EXPECTED_DOCUMENT = (
    '{"Statement": [{"Action": "*", "Condition": {"DateLessThan": '
    '{"aws:TokenIssueTime": "2026-03-01T12:00:05Z"}}, "Effect": "Deny", "Resource": "*", '
    '"Sid": "OffboardAuditDenyIssuedSessions"}], "Version": "2012-10-17"}'
)


@pytest.fixture
def iam() -> Iterator[Any]:
    from moto import mock_aws

    with mock_aws():
        yield boto3.client(
            "iam", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
        )


@pytest.fixture
def host_west_of_utc() -> Iterator[None]:
    """The process's local time zone set to UTC-5 (POSIX TZ, no tzdata needed), then restored."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "EST5"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


def revoker(iam: Any, now: datetime = FIXED_NOW) -> AwsIamRevoker:
    table = {"name": "aws-rv", "type": "aws_iam", "include_inline_deny": True}
    assert PLUGIN.make_revoker is not None
    made = PLUGIN.make_revoker(SourceOptions(table), SourceContext(Path("."), clients={"aws-rv": iam}))
    assert isinstance(made, AwsIamRevoker)
    return AwsIamRevoker(made.settings, made.provider, clock=lambda: now)


def target(user: str) -> ActionTarget:
    found = iam_backend().users.get(user)
    arn = f"arn:aws:iam::{MOTO_ACCOUNT}:user/{user}"
    return action_target(user, arn, CredentialKind.ACCOUNT, str(found.id) if found is not None else "")


def stored_document(user: str) -> str:
    """The policy text exactly as the action sent it to IAM (moto keeps it verbatim)."""
    return str(iam_backend().users[user].policies[DENY_POLICY_NAME])


def test_read_without_deny_policy_is_existing_active_and_records_only_the_user(iam: Any) -> None:
    seed_users([SeedUser("frank")])
    t = target("frank")
    state = read_state(revoker(iam), DENY_ISSUED_SESSIONS, t)
    assert state == ResourceState(exists=True, active=True, data=(("user", "frank"),), identity=t.account_uid)


def test_apply_records_exact_before_and_after_states_with_the_policy_text_written(iam: Any) -> None:
    seed_users([SeedUser("frank")])
    t = target("frank")
    done = apply_step(revoker(iam), DENY_ISSUED_SESSIONS, t)
    assert done.status == "applied"
    assert done.before == ResourceState(
        exists=True, active=True, data=(("user", "frank"),), identity=t.account_uid
    )
    assert done.after == ResourceState(
        exists=True,
        active=False,
        data=(("user", "frank"), ("policy", EXPECTED_DOCUMENT)),
        identity=t.account_uid,
    )


def test_written_deny_policy_is_the_exact_sorted_document_with_its_sid_and_utc_stamp(iam: Any) -> None:
    assert deny_policy_document(FIXED_NOW) == EXPECTED_DOCUMENT
    seed_users([SeedUser("frank")])
    assert apply_step(revoker(iam), DENY_ISSUED_SESSIONS, target("frank")).status == "applied"
    assert stored_document("frank") == EXPECTED_DOCUMENT


def test_stamp_is_utc_even_when_the_host_time_zone_is_not(iam: Any, host_west_of_utc: None) -> None:
    # Local wall time with a Z would put the cut-off 5 hours early: sessions issued in those
    # 5 hours would stay live while the step reports applied.
    assert deny_policy_document(FIXED_NOW) == EXPECTED_DOCUMENT
    plus_two = FIXED_NOW.astimezone(timezone(timedelta(hours=2)))
    assert deny_policy_document(plus_two) == EXPECTED_DOCUMENT
    seed_users([SeedUser("frank")])
    assert apply_step(revoker(iam), DENY_ISSUED_SESSIONS, target("frank")).status == "applied"
    assert stored_document("frank") == EXPECTED_DOCUMENT


def test_read_records_a_policy_stored_with_keys_in_another_order_as_the_canonical_text(iam: Any) -> None:
    seed_users([SeedUser("frank")])
    unsorted = (
        '{"Version": "2012-10-17", "Statement": [{"Sid": "OffboardAuditDenyIssuedSessions", '
        '"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"DateLessThan": '
        '{"aws:TokenIssueTime": "2026-03-01T12:00:05Z"}}}]}'
    )
    iam.put_user_policy(UserName="frank", PolicyName=DENY_POLICY_NAME, PolicyDocument=unsorted)
    state = read_state(revoker(iam), DENY_ISSUED_SESSIONS, target("frank"))
    assert not state.active
    assert state.value("policy") == EXPECTED_DOCUMENT


class TextPolicyIam:
    """An IAM client whose GetUserPolicy answers with the document as text (not decoded)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.calls: list[dict[str, Any]] = []

    def get_user_policy(self, **params: Any) -> dict[str, Any]:
        self.calls.append(params)
        return {
            "UserName": params["UserName"],
            "PolicyName": params["PolicyName"],
            "PolicyDocument": self.text,
        }


def test_read_keeps_a_policy_document_returned_as_text_verbatim(iam: Any) -> None:
    text = '{"Version":"2012-10-17","Statement":[]}'
    client = TextPolicyIam(text)
    action = DenyIssuedSessions(revoker(iam))
    state = action.read_object(client, target("frank"))
    assert client.calls == [{"UserName": "frank", "PolicyName": DENY_POLICY_NAME}]
    assert state == ResourceState(exists=True, active=False, data=(("user", "frank"), ("policy", text)))
