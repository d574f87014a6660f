"""The exposure part of the AWS demo (issue 13), seeded into the demo's moto:

- the first departed person (the demo's critical leaver) read the token-signing secret
  ``prod/token-signing-key`` a month before leaving, and it was never rotated since: the
  Coupang story, a critical ``secret-exposed-to-leaver`` with its owner tag as rotate owner;
- the second departed person created an access key for the service user ``svc-build``, still
  active: ``persistence-left-by-leaver``.

The events are real CloudTrail log files (gzip JSON) in a moto S3 bucket. moto answers
``ListSecretVersionIds`` with the current time as every version's ``CreatedDate``; AWS gives each
version its own, so the demo patches moto to do the same while it runs (``close`` undoes it).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from offboard_audit.core.records import Person

DEMO_BUCKET = "demo-cloudtrail"
SIGNING_SECRET = "prod/token-signing-key"
SERVICE_USER = "svc-build"


def _faithful_versions() -> Callable[[], None]:
    from moto.secretsmanager.models import SecretsManagerBackend

    original = SecretsManagerBackend.list_secret_version_ids

    def patched(self: Any, secret_id: str) -> str:
        body = json.loads(original(self, secret_id))
        secret = self.secrets[secret_id]
        for v in body["Versions"]:
            v["CreatedDate"] = secret.versions[v["VersionId"]]["createdate"]
        return json.dumps(body)

    SecretsManagerBackend.list_secret_version_ids = patched  # type: ignore[method-assign]

    def undo() -> None:
        SecretsManagerBackend.list_secret_version_ids = original  # type: ignore[method-assign]

    return undo


def _record(user: str, account: str, at: datetime, event_id: str, call: dict[str, Any]) -> dict[str, Any]:
    """The CloudTrail record of ``call`` (its eventSource, eventName, requestParameters and
    responseElements) made by IAM user ``user`` of ``account`` in us-east-1 at ``at``."""
    return {
        "eventVersion": "1.09",
        "userIdentity": {
            "type": "IAMUser",
            "arn": f"arn:aws:iam::{account}:user/{user}",
            "accountId": account,
            "userName": user,
        },
        "eventTime": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        **call,
        "awsRegion": "us-east-1",
        "eventID": event_id,
        "recipientAccountId": account,
    }


def _regional(service: str) -> Any:
    import boto3

    # An explicit regional AWS endpoint: moto intercepts it, and AWS_ENDPOINT_URL cannot redirect it.
    client: Any = boto3.client(  # type: ignore[call-overload]
        service,
        region_name="us-east-1",
        endpoint_url=f"https://{service}.us-east-1.amazonaws.com",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return client


def seed_exposure(
    client: Callable[[str], Any], account: str, departed: Sequence[tuple[Person, str]], now: datetime
) -> Callable[[], None]:
    """Seed the secrets, the service user and the trail; returns what undoes the moto patch.
    ``departed``: (person, IAM user name) of the demo's first two leavers."""
    from moto.secretsmanager.models import secretsmanager_backends

    undo = _faithful_versions()
    sm = _regional("secretsmanager")
    iam = client("iam")
    s3 = client("s3")
    s3.create_bucket(Bucket=DEMO_BUCKET)
    records: list[dict[str, Any]] = []
    if departed:
        person, user = departed[0]
        assert person.terminated_at is not None
        sm.create_secret(
            Name=SIGNING_SECRET,
            SecretString="demo: not a real key",
            Tags=[{"Key": "owner", "Value": "security@example.com"}, {"Key": "purpose", "Value": "signing"}],
        )
        # The key dates from long before; nobody rotated it after the read.
        for v in secretsmanager_backends[account]["us-east-1"].secrets[SIGNING_SECRET].versions.values():
            v["createdate"] = int((person.terminated_at - timedelta(days=900)).timestamp())
        read_at = person.terminated_at - timedelta(days=30)
        records.append(
            _record(
                user,
                account,
                read_at,
                "demo-read-signing-key",
                {
                    "eventSource": "secretsmanager.amazonaws.com",
                    "eventName": "GetSecretValue",
                    "requestParameters": {"secretId": SIGNING_SECRET},
                    "responseElements": None,
                },
            )
        )
    if len(departed) > 1:
        person, user = departed[1]
        assert person.terminated_at is not None
        iam.create_user(UserName=SERVICE_USER, Path="/service/")
        key_id = iam.create_access_key(UserName=SERVICE_USER)["AccessKey"]["AccessKeyId"]
        made_at = person.terminated_at - timedelta(days=7)
        records.append(
            _record(
                user,
                account,
                made_at,
                "demo-key-for-svc-build",
                {
                    "eventSource": "iam.amazonaws.com",
                    "eventName": "CreateAccessKey",
                    "requestParameters": {"userName": SERVICE_USER},
                    "responseElements": {
                        "accessKey": {"accessKeyId": key_id, "userName": SERVICE_USER, "status": "Active"}
                    },
                },
            )
        )
    at = max((datetime.fromisoformat(r["eventTime"].replace("Z", "+00:00")) for r in records), default=now)
    key = (
        f"AWSLogs/{account}/CloudTrail/us-east-1/{at:%Y/%m/%d}/"
        f"{account}_CloudTrail_us-east-1_{at:%Y%m%dT%H%M}Z_demo0000000000001.json.gz"
    )
    s3.put_object(Bucket=DEMO_BUCKET, Key=key, Body=gzip.compress(json.dumps({"Records": records}).encode()))
    return undo
