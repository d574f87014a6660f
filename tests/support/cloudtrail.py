"""CloudTrail log files for tests and benches: records in the documented format, gzip objects in an
S3 bucket (moto), and a faithful Secrets Manager version date in moto.

moto answers ``ListSecretVersionIds`` with ``CreatedDate = now`` for every version; AWS gives each
version its own creation time. :func:`faithful_secret_versions` patches moto to return the stored
``createdate`` (which :func:`backdate_secret` sets), so "rotated since the read" can be tested.
"""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from tests.support.aws import MOTO_ACCOUNT

BUCKET = "org-cloudtrail"


def _z(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iam_user(name: str, account: str = MOTO_ACCOUNT, user_id: str | None = None) -> dict[str, Any]:
    """An IAM user's ``userIdentity``; ``user_id`` is its UserId (pass the one moto gave the user
    for the record to be that user's, not a user of the same name)."""
    return {
        "type": "IAMUser",
        "principalId": user_id or f"AIDA{name.upper()}",
        "arn": f"arn:aws:iam::{account}:user/{name}",
        "accountId": account,
        "accessKeyId": "AKIAEXAMPLE",
        "userName": name,
    }


def sso_session(
    session: str,
    role: str = "AWSReservedSSO_Admin_0123abcd",
    account: str = MOTO_ACCOUNT,
    source_identity: str | None = None,
) -> dict[str, Any]:
    ident: dict[str, Any] = {
        "type": "AssumedRole",
        "principalId": f"AROAEXAMPLE:{session}",
        "arn": f"arn:aws:sts::{account}:assumed-role/{role}/{session}",
        "accountId": account,
        "sessionContext": {
            "sessionIssuer": {
                "type": "Role",
                "arn": f"arn:aws:iam::{account}:role/aws-reserved/{role}",
                "userName": role,
            },
            "attributes": {"creationDate": "2025-01-01T00:00:00Z", "mfaAuthenticated": "false"},
        },
    }
    if source_identity:
        ident["sessionContext"]["sourceIdentity"] = source_identity
    return ident


def record(
    event_name: str,
    source: str,
    at: datetime,
    identity: Mapping[str, Any],
    request: Mapping[str, Any] | None = None,
    response: Mapping[str, Any] | None = None,
    *,
    account: str = MOTO_ACCOUNT,
    region: str = "us-east-1",
    error: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "eventVersion": "1.09",
        "userIdentity": dict(identity),
        "eventTime": _z(at),
        "eventSource": source,
        "eventName": event_name,
        "awsRegion": region,
        "sourceIPAddress": "203.0.113.7",
        "userAgent": "aws-cli/2.15.0",
        "requestParameters": dict(request) if request is not None else None,
        "responseElements": dict(response) if response is not None else None,
        "requestID": str(uuid.uuid4()),
        "eventID": event_id or str(uuid.uuid4()),
        "readOnly": event_name.startswith(("Get", "List", "Describe")),
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
    }
    if error:
        rec["errorCode"] = error
        rec["errorMessage"] = f"injected {error}"
    return rec


def noise(at: datetime, i: int, account: str = MOTO_ACCOUNT) -> dict[str, Any]:
    """An irrelevant record (most of a real trail): a DescribeInstances call."""
    return record(
        "DescribeInstances",
        "ec2.amazonaws.com",
        at,
        iam_user(f"user-{i % 50}", account),
        {"instancesSet": {}, "filterSet": {}},
        None,
        account=account,
        event_id=f"noise-{i}",
    )


def log_key(
    at: datetime,
    account: str = MOTO_ACCOUNT,
    region: str = "us-east-1",
    prefix: str = "",
    org: str | None = None,
    suffix: str | None = None,
) -> str:
    base = f"{prefix}AWSLogs/{org + '/' if org else ''}{account}/CloudTrail/{region}/{at:%Y/%m/%d}/"
    name = f"{account}_CloudTrail_{region}_{at.astimezone(UTC):%Y%m%dT%H%M}Z_{suffix or uuid.uuid4().hex[:16]}.json.gz"
    return base + name


def log_body(records: Sequence[Mapping[str, Any]]) -> bytes:
    return gzip.compress(json.dumps({"Records": list(records)}).encode(), compresslevel=6)


def put_log(s3: Any, key: str, records: Sequence[Mapping[str, Any]], bucket: str = BUCKET) -> None:
    s3.put_object(Bucket=bucket, Key=key, Body=log_body(records))


@contextmanager
def faithful_secret_versions() -> Iterator[None]:
    """moto's ListSecretVersionIds with each version's own CreatedDate (as AWS answers)."""
    from moto.secretsmanager.models import SecretsManagerBackend

    original = SecretsManagerBackend.list_secret_version_ids

    def patched(self: Any, secret_id: str) -> str:
        body = json.loads(original(self, secret_id))
        secret = self.secrets[secret_id]
        for v in body["Versions"]:
            v["CreatedDate"] = secret.versions[v["VersionId"]]["createdate"]
        return json.dumps(body)

    SecretsManagerBackend.list_secret_version_ids = patched  # type: ignore[method-assign]
    try:
        yield
    finally:
        SecretsManagerBackend.list_secret_version_ids = original  # type: ignore[method-assign]


def backdate_secret(
    name: str, when: datetime, account: str = MOTO_ACCOUNT, region: str = "us-east-1"
) -> None:
    """Set the creation time of the secret's AWSCURRENT version (moto backend)."""
    from moto.secretsmanager.models import secretsmanager_backends

    secret = secretsmanager_backends[account][region].secrets[name]
    for v in secret.versions.values():
        if "AWSCURRENT" in v["version_stages"]:
            v["createdate"] = int(when.timestamp())


def backdate_parameter(
    name: str, when: datetime, account: str = MOTO_ACCOUNT, region: str = "us-east-1"
) -> None:
    from moto.ssm.models import ssm_backends

    for p in ssm_backends[account][region]._parameters[name]:
        p.last_modified_date = when.timestamp()
