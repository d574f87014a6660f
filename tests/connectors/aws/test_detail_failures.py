"""A failed detail pass is a failed scope, and every failed call says what failed.

Throttling is injected with a botocore ``before-send`` hook that answers only the chosen call
for the chosen user, so botocore's own retry logic runs (``needs-retry``) and gives up after
``max_attempts``. The unimplemented call is real: the moto server lacks
``ListServiceSpecificCredentials`` and answers it with an HTML 500 page.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders

from connectors.aws_iam import PLUGIN
from connectors.aws_iam.errors import explain_call
from connectors.aws_iam.revoker import DEACTIVATE_SERVICE_CREDENTIAL, DEACTIVATE_SSH_KEY, AwsIamRevoker
from connectors.aws_iam.source import AwsIamSource
from offboard_audit.core.actions import ActionTarget
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Account, CredentialKind
from offboard_audit.engine.steps import apply_step, read_state
from tests.support.aws import FAKE_AWS_ENV, MOTO_ACCOUNT, SeedUser, iam_backend, seed_users

NOW = datetime.now(UTC).replace(microsecond=0)


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def error_for(
    operation: str, code: str, status: int, attempts: Counter[str], body: bytes | None = None, **match: str
) -> Any:
    """A ``before-send`` handler: ``operation`` with the ``match`` parameters (e.g. UserName) gets
    an error answer; every other request goes through. Register it before the source makes its
    clients: botocore copies the session's event hooks into each client when it is created."""
    xml = (
        f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>injected {code}</Message>"
        "</Error><RequestId>injected</RequestId></ErrorResponse>"
    ).encode()

    def handler(request: Any, **_: Any) -> AWSResponse | None:
        raw = request.body
        params = parse_qs(raw.decode() if isinstance(raw, bytes) else str(raw or ""))
        if params.get("Action") != [operation] or any(params.get(k) != [v] for k, v in match.items()):
            return None
        attempts[operation] += 1
        headers = HTTPHeaders()
        headers["Content-Type"] = "text/xml"
        return AWSResponse(request.url, status, headers, _Body(body or xml))

    return handler


@pytest.fixture
def session() -> Iterator[boto3.session.Session]:
    from moto import mock_aws

    with mock_aws():
        yield boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        )


def make_source(injected: Any, **options: Any) -> AwsIamSource:
    table = {"name": "aws-df", "type": "aws_iam", "service_specific_credentials": False, **options}
    source = PLUGIN.make_source(SourceOptions(table), SourceContext(Path("."), clients={"aws-df": injected}))
    assert isinstance(source, AwsIamSource)
    return source


def make_revoker(injected: Any, **options: Any) -> AwsIamRevoker:
    table = {"name": "aws-df", "type": "aws_iam", **options}
    assert PLUGIN.make_revoker is not None
    made = PLUGIN.make_revoker(SourceOptions(table), SourceContext(Path("."), clients={"aws-df": injected}))
    assert isinstance(made, AwsIamRevoker)
    return made


def two_leavers() -> None:
    seed_users(
        [
            SeedUser("bob", keys=[(NOW - timedelta(days=90), NOW - timedelta(days=1))], has_password=True),
            SeedUser("carol", keys=[(NOW - timedelta(days=90), None)]),
        ]
    )


def by_name(accounts: tuple[Account, ...]) -> dict[str, Account]:
    return {a.username: a for a in accounts}


# --- item 8: a failed detail pass is a failed scope -----------------------------------------


def test_throttled_list_access_keys_past_retries_fails_the_scope_and_returns_nothing_for_that_user(
    session: boto3.session.Session,
) -> None:
    two_leavers()
    attempts: Counter[str] = Counter()
    session.events.register_first(
        "before-send.iam", error_for("ListAccessKeys", "Throttling", 400, attempts, UserName="bob")
    )
    source = make_source(session, max_attempts=3)
    bulk = by_name(source.collect().accounts)
    detail = source.detail([bulk["bob"], bulk["carol"]])
    # botocore retried (3 attempts), then the failure came back as the account's failure.
    assert attempts["ListAccessKeys"] == 3
    assert [f.scope for f in detail.failed_scopes] == [MOTO_ACCOUNT]
    error = detail.failed_scopes[0].error
    assert "iam:ListAccessKeys" in error and "'bob'" in error and "Throttling" in error
    # Nothing of bob: no account, and never an empty list of keys that would replace his.
    assert [a.username for a in detail.accounts] == ["carol"]
    assert {c.account_id for c in detail.credentials} == {bulk["carol"].account_id}


def test_a_later_call_failing_for_a_user_drops_the_calls_that_worked_for_that_user(
    session: boto3.session.Session,
) -> None:
    two_leavers()
    attempts: Counter[str] = Counter()
    # ListAccessKeys works; the SSH key listing that follows is throttled past retries.
    session.events.register_first(
        "before-send.iam", error_for("ListSSHPublicKeys", "Throttling", 400, attempts, UserName="bob")
    )
    source = make_source(session, max_attempts=2)
    bob = by_name(source.collect().accounts)["bob"]
    detail = source.detail([bob])
    assert attempts["ListSSHPublicKeys"] == 2
    assert detail.accounts == () and detail.credentials == ()
    assert "iam:ListSSHPublicKeys" in detail.failed_scopes[0].error


def test_full_detail_keeps_the_bulk_data_of_a_user_whose_detail_failed_and_fails_the_scope(
    session: boto3.session.Session,
) -> None:
    two_leavers()
    bob_key = iam_backend().users["bob"].access_keys[0].access_key_id
    attempts: Counter[str] = Counter()
    session.events.register_first(
        "before-send.iam",
        error_for("GetAccessKeyLastUsed", "Throttling", 400, attempts, AccessKeyId=bob_key),
    )
    data = make_source(session, full_detail=True, max_attempts=2).collect()
    assert attempts["GetAccessKeyLastUsed"] == 2
    assert [f.scope for f in data.failed_scopes] == [MOTO_ACCOUNT]
    assert "iam:GetAccessKeyLastUsed" in data.failed_scopes[0].error
    assert "'bob'" in data.failed_scopes[0].error
    by_user: dict[str, list[str]] = {}
    for c in data.credentials:
        if c.kind is CredentialKind.ACCESS_KEY:
            by_user.setdefault(c.account_id.rsplit("/", 1)[-1], []).append(c.credential_id)
    # bob keeps the bulk pass's (provisional) slot; carol's detail replaced hers with the real id.
    assert by_user == {
        "bob": ["report/access_key_1"],
        "carol": [iam_backend().users["carol"].access_keys[0].access_key_id],
    }


# --- item 9: errors that say what failed ----------------------------------------------------


def test_unimplemented_call_on_the_moto_server_names_call_user_and_option_without_html(
    moto_endpoint: str,
) -> None:
    seed_users([SeedUser("bob", keys=[(NOW - timedelta(days=90), None)])])
    session = boto3.session.Session(
        aws_access_key_id=FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    source = make_source(
        session, endpoint_url=moto_endpoint, service_specific_credentials=True, max_attempts=1
    )
    bob = by_name(source.collect().accounts)["bob"]
    detail = source.detail([bob])
    assert [f.scope for f in detail.failed_scopes] == [MOTO_ACCOUNT]
    error = detail.failed_scopes[0].error
    assert "iam:ListServiceSpecificCredentials" in error and "'bob'" in error
    assert "service_specific_credentials = false" in error and "'aws-df'" in error
    assert "<" not in error and "doctype" not in error.lower()
    assert detail.accounts == ()

    # The revoker says the same when it reads a service-specific credential there.
    rv = make_revoker(session, endpoint_url=moto_endpoint, max_attempts=1)
    target = ActionTarget(
        source="aws-df",
        system="aws_iam",
        account_id=bob.account_id,
        username="bob",
        credential_id="ACCAEXAMPLE",
        credential_kind=CredentialKind.SERVICE_CREDENTIAL,
        scope=MOTO_ACCOUNT,
        account_uid=bob.uid,
    )
    with pytest.raises(RevokeError) as info:
        read_state(rv, DEACTIVATE_SERVICE_CREDENTIAL, target)
    text = str(info.value)
    assert "iam:ListServiceSpecificCredentials" in text and "'bob'" in text
    assert "service_specific_credentials = false" in text and "<" not in text


@pytest.mark.parametrize("code", ["NotImplemented", "InvalidAction"])
def test_not_implemented_ssh_key_listing_names_the_ssh_public_keys_option(
    session: boto3.session.Session, code: str
) -> None:
    two_leavers()
    attempts: Counter[str] = Counter()
    session.events.register_first(
        "before-send.iam", error_for("ListSSHPublicKeys", code, 400, attempts, UserName="bob")
    )
    source = make_source(session, max_attempts=1)
    bob = by_name(source.collect().accounts)["bob"]
    error = source.detail([bob]).failed_scopes[0].error
    assert "iam:ListSSHPublicKeys" in error and "'bob'" in error and code in error
    assert "ssh_public_keys = false" in error
    # The option does what the message says: with it, the same endpoint reads bob in full.
    quiet = make_source(session, max_attempts=1, ssh_public_keys=False)
    quiet.collect()
    ok = quiet.detail([bob])
    assert ok.failed_scopes == () and [a.username for a in ok.accounts] == ["bob"]
    assert attempts["ListSSHPublicKeys"] == 1


def test_html_500_on_a_required_call_names_call_and_user_and_says_it_is_required(
    session: boto3.session.Session,
) -> None:
    two_leavers()
    page = (
        b"<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n"
        b"<h1>Internal Server Error</h1>\n<p>The server encountered an internal error.</p>\n"
    )
    attempts: Counter[str] = Counter()
    session.events.register_first(
        "before-send.iam", error_for("ListAccessKeys", "", 500, attempts, body=page, UserName="bob")
    )
    source = make_source(session, max_attempts=1)
    bob = by_name(source.collect().accounts)["bob"]
    error = source.detail([bob]).failed_scopes[0].error
    assert "iam:ListAccessKeys" in error and "'bob'" in error and "required" in error
    assert "500 Internal Server Error" in error
    assert "<" not in error and "Internal Server Error</" not in error


def test_revoker_write_refused_by_the_endpoint_names_call_user_and_option(
    session: boto3.session.Session,
) -> None:
    seed_users([SeedUser("bob")])
    iam = session.client("iam")
    ssh_id = iam.upload_ssh_public_key(UserName="bob", SSHPublicKeyBody="ssh-rsa AAAAB3NzaC1yc2E bob@x")[
        "SSHPublicKey"
    ]["SSHPublicKeyId"]
    rv = make_revoker(session, max_attempts=1)
    attempts: Counter[str] = Counter()
    session.events.register_first(
        "before-send.iam", error_for("UpdateSSHPublicKey", "NotImplemented", 501, attempts, UserName="bob")
    )
    target = ActionTarget(
        source="aws-df",
        system="aws_iam",
        account_id=f"arn:aws:iam::{MOTO_ACCOUNT}:user/bob",
        username="bob",
        credential_id=ssh_id,
        credential_kind=CredentialKind.SSH_KEY,
        scope=MOTO_ACCOUNT,
        account_uid=str(iam_backend().users["bob"].id),
    )
    step = apply_step(rv, DEACTIVATE_SSH_KEY, target)
    # The engine records what a re-read shows, not what the failed call claimed (moto in process
    # still processes the request behind the injected answer): applied exactly when the key is
    # inactive now, and the call's error, naming call, user and option, is kept either way.
    status = iam.list_ssh_public_keys(UserName="bob")["SSHPublicKeys"][0]["Status"]
    assert step.status == ("applied" if status == "Inactive" else "failed")
    text = step.error or step.message
    assert "iam:UpdateSSHPublicKey" in text and "'bob'" in text and "ssh_public_keys = false" in text


def test_explained_client_error_keeps_code_status_and_attempts_but_not_html() -> None:
    from botocore.exceptions import ClientError

    response: Any = {
        "Error": {"Code": "500", "Message": "<html><title>Bad Gateway</title><body>x</body></html>"},
        "ResponseMetadata": {"HTTPStatusCode": 502, "RetryAttempts": 7},
    }
    exc = ClientError(response, "ListMFADevices")
    text = explain_call("ListMFADevices", "bob", exc, source="aws", scope="111122223333")
    assert text.startswith("iam:ListMFADevices for IAM user 'bob' in account 111122223333 failed: ")
    assert "'Bad Gateway'" in text and "HTTP 502" in text and "after 8 attempts" in text
    assert "<" not in text
