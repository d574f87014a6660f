"""API calls grow with the number of departed users, never with headcount (botocore event hooks)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from connectors.aws_iam import PLUGIN
from connectors.aws_iam.source import AwsIamSource
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from tests.support.aws import population, seed_users

NOW = datetime.now(UTC)
DEPARTED = 5


def count_calls(total_users: int, full_detail: bool = False) -> Counter[str]:
    """Seed ``total_users`` (5 of them departed), run bulk + detail for the departed, count calls."""
    from moto import mock_aws

    with mock_aws():
        seed_users(population(total_users, DEPARTED, NOW))
        session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )
        calls: Counter[str] = Counter()

        def count(model: Any, **_: Any) -> None:
            calls[f"{model.service_model.service_name}:{model.name}"] += 1

        session.events.register("before-call.*.*", count)
        options = {
            "name": "aws-count",
            "type": "aws_iam",
            "service_specific_credentials": False,
            "full_detail": full_detail,
        }
        source = PLUGIN.make_source(
            SourceOptions(options), SourceContext(Path("."), clients={"aws-count": session})
        )
        assert isinstance(source, AwsIamSource)
        data = source.collect()
        assert len(data.accounts) == total_users
        departed = [a for a in data.accounts if a.username.startswith("left-")]
        assert len(departed) == DEPARTED
        if not full_detail:
            source.detail(departed)
        return calls


@pytest.fixture(scope="module")
def counts() -> Iterator[tuple[Counter[str], Counter[str]]]:
    yield count_calls(20), count_calls(500)


def test_same_departed_users_cost_the_same_calls_for_20_and_500_users(
    counts: tuple[Counter[str], Counter[str]],
) -> None:
    small, large = counts
    # moto never truncates IAM pages, so without pagination the counts must be identical.
    assert small == large


def test_per_user_calls_are_made_only_for_departed_users(counts: tuple[Counter[str], Counter[str]]) -> None:
    _, large = counts
    per_user = {
        op: n
        for op, n in large.items()
        if op
        in {
            "iam:ListAccessKeys",
            "iam:GetAccessKeyLastUsed",
            "iam:ListSSHPublicKeys",
            "iam:ListMFADevices",
            "iam:ListSigningCertificates",
        }
    }
    # One key each: ListAccessKeys + GetAccessKeyLastUsed + ListSSHPublicKeys per departed user;
    # no MFA and no certificate in the report, so those lists are skipped.
    assert per_user == {
        "iam:ListAccessKeys": DEPARTED,
        "iam:GetAccessKeyLastUsed": DEPARTED,
        "iam:ListSSHPublicKeys": DEPARTED,
    }
    assert sum(large.values()) <= 5 * DEPARTED + 10
    assert large["iam:GetAccountAuthorizationDetails"] == 1
    assert large["iam:GetCredentialReport"] >= 1


def test_full_detail_makes_per_user_calls_for_everyone() -> None:
    calls = count_calls(20, full_detail=True)
    assert calls["iam:ListAccessKeys"] == 20
