"""The AWS part of ``offboard-audit demo``: an in-process moto IAM seeded from the demo HR.

No network and no server: moto's ``mock_aws`` intercepts botocore in this process and the
clients carry explicit fake credentials (so boto3 never looks for real ones, nor at the
instance metadata service). Usage dates are back-dated through moto's backend, the only way
to set ``last_used``. ``close()`` stops the mock, leaving nothing patched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from connectors.aws_iam.clients import AwsClients
from offboard_audit.core.protocols import DemoPart
from offboard_audit.core.records import Person

DEMO_ACCOUNT = "123456789012"
DEMO_SOURCE = "aws-demo"
_FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
_SSH_KEY = (
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDfakefakefakefakefakefakefakefakefakefakefakefake demo@example"
)


def _client(service: str) -> Any:
    import boto3

    # An explicit AWS endpoint: moto intercepts it, and AWS_ENDPOINT_URL in the caller's
    # environment (pointing at some server) cannot redirect the demo to the network.
    client: Any = boto3.client(  # type: ignore[call-overload]
        service,
        region_name="us-east-1",
        endpoint_url=f"https://{service}.amazonaws.com",
        **_FAKE_CREDENTIALS,
    )
    return client


def build_demo(people: Sequence[Person], now: datetime) -> DemoPart:
    from moto import mock_aws

    mock = mock_aws()
    mock.start()
    try:
        iam = _client("iam")
        sts = _client("sts")
        _seed(iam, people, now)
        undo_exposure = _seed_exposure(people, now)
    except BaseException:
        mock.stop()
        raise

    def close() -> None:
        undo_exposure()
        mock.stop()

    source = {
        "name": DEMO_SOURCE,
        "type": "aws_iam",
        "region": "us-east-1",
        # moto does not implement ListServiceSpecificCredentials.
        "service_specific_credentials": False,
        "protected_users": ["breakglass"],
        "include_inline_deny": False,
        # What leavers could carry away: CloudTrail files in the demo bucket (issue 13).
        "exposure": {"trail_bucket": DEMO_BUCKET},
    }
    import boto3

    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )
    return DemoPart(source=source, client=AwsClients(session=session, iam=iam, sts=sts), close=close)


def _seed_exposure(people: Sequence[Person], now: datetime) -> Callable[[], None]:
    """The first two leavers' exposure (connectors/aws_iam/exposure/demo.py), with the IAM user
    names ``_seed`` gave them."""
    from connectors.aws_iam.exposure.demo import seed_exposure

    alias_owners: dict[str, int] = {}
    for person in people:
        for alias in person.aliases:
            alias_owners[alias] = alias_owners.get(alias, 0) + 1
    departed = sorted((p for p in people if p.is_departed(now)), key=lambda p: p.employee_id)[:2]
    named = []
    for index, person in enumerate(departed):
        own = [a for a in person.aliases if alias_owners[a] == 1 and "@" not in a]
        if index == 0:
            named.append((person, own[-1] if own else person.employee_id.lower()))
        else:
            named.append((person, own[0] if own else person.employee_id.lower()))
    return seed_exposure(_client, DEMO_ACCOUNT, named, now)


def _seed(iam: Any, people: Sequence[Person], now: datetime) -> None:
    from moto.iam.models import AccessKeyLastUsed, iam_backends

    backend = iam_backends[DEMO_ACCOUNT]["aws"]
    iam.create_group(GroupName="developers")
    iam.create_group(GroupName="admins")

    def user(name: str, tags: dict[str, str] | None = None, path: str = "/") -> Any:
        iam.create_user(
            UserName=name, Path=path, Tags=[{"Key": k, "Value": v} for k, v in (tags or {}).items()]
        )
        return backend.users[name]

    def key(name: str, created: datetime, used: datetime | None) -> None:
        iam.create_access_key(UserName=name)
        k = backend.users[name].access_keys[-1]
        k.create_date = created
        if used is not None:
            k.last_used = AccessKeyLastUsed(timestamp=used, service="s3", region="us-east-1")

    alias_owners: dict[str, int] = {}
    for person in people:
        for alias in person.aliases:
            alias_owners[alias] = alias_owners.get(alias, 0) + 1
    departed = sorted((p for p in people if p.is_departed(now)), key=lambda p: p.employee_id)
    for person in people:
        own = [a for a in person.aliases if alias_owners[a] == 1 and "@" not in a]
        if person in departed:
            continue
        if not own:
            continue  # only shared aliases: covered by the ambiguous account below
        user(own[0], {"email": person.email} if person.email else None)
        key(own[0], now - timedelta(days=200), now - timedelta(days=1))

    for index, person in enumerate(departed):
        assert person.terminated_at is not None
        terminated = person.terminated_at
        own = [a for a in person.aliases if alias_owners[a] == 1 and "@" not in a]
        if index == 0:
            # Matched by alias only; its key was used after the owner left: the critical case.
            name = own[-1] if own else person.employee_id.lower()
            u = user(name)
            used_after = min(terminated + timedelta(days=12), now - timedelta(hours=1))
            key(name, terminated - timedelta(days=400), used_after)
            iam.add_user_to_group(GroupName="admins", UserName=name)
        elif index == 1:
            # Matched by an employee_id tag; console password, active key, SSH key and a group,
            # all last used before leaving.
            name = own[0] if own else person.employee_id.lower()
            u = user(name, {"employee_id": person.employee_id})
            key(name, terminated - timedelta(days=300), terminated - timedelta(days=3))
            iam.create_login_profile(UserName=name, Password="Demo-Password-789!")
            u.password_last_used = terminated - timedelta(days=4)
            iam.upload_ssh_public_key(UserName=name, SSHPublicKeyBody=_SSH_KEY)
            iam.add_user_to_group(GroupName="developers", UserName=name)
        else:
            # The email as IAM user name; console password (with MFA) last used before leaving.
            name = person.email or person.employee_id.lower()
            u = user(name)
            iam.create_login_profile(UserName=name, Password="Demo-Password-123!")
            u.password_last_used = terminated - timedelta(days=2)
            serial = iam.create_virtual_mfa_device(VirtualMFADeviceName=f"mfa-{index}")["VirtualMFADevice"][
                "SerialNumber"
            ]
            iam.enable_mfa_device(
                UserName=name, SerialNumber=serial, AuthenticationCode1="123456", AuthenticationCode2="654321"
            )
        u.create_date = terminated - timedelta(days=500)

    for alias, count in sorted(alias_owners.items()):
        if count > 1:
            # An account named after an alias that several people share, with no email: ambiguous.
            user(alias)
            key(alias, now - timedelta(days=90), now - timedelta(days=2))
    # A human account that matches nobody in HR.
    user("contractor-tmp")
    key("contractor-tmp", now - timedelta(days=60), now - timedelta(days=5))
    # A service account and a protected break-glass user (never revoked).
    user("ci-deploy", path="/service/")
    key("ci-deploy", now - timedelta(days=30), now - timedelta(hours=3))
    user("breakglass", path="/service/")
    iam.create_login_profile(UserName="breakglass", Password="Demo-Password-456!")
    iam.add_user_to_group(GroupName="admins", UserName="breakglass")


from connectors.aws_iam.exposure.demo import DEMO_BUCKET  # noqa: E402  (no moto import at load)

__all__ = ["DEMO_ACCOUNT", "DEMO_BUCKET", "DEMO_SOURCE", "build_demo"]
