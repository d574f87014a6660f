"""Translation of raw IAM payloads (credential report CSV, GetAccountAuthorizationDetails JSON).

The fixtures are real-format payloads, including the ``<root_account>`` row real AWS adds and
every sentinel (``N/A``, ``no_information``, ``not_supported``). A small fake IAM client serves
them to the source so the bulk pass is tested without moto's quirks.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.aws_iam.clients import AwsClients, ClientProvider
from connectors.aws_iam.payloads import ROOT_ROW, parse_credential_report, parse_report_time
from connectors.aws_iam.settings import parse_settings
from connectors.aws_iam.source import AwsIamSource
from offboard_audit.core.errors import ConfigError, SourceError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.records import AccountKind, CredentialKind

FIXTURES = Path(__file__).parent / "fixtures"
GENERATED = datetime(2026, 11, 27, 6, 30, tzinfo=UTC)
CAROL = "carol.g@corp.example.com"
CAROL_KEYS = ("AKIAEXAMPLECAROL0001", "AKIAEXAMPLECAROL0002")
CAROL_CERT = "CERTEXAMPLECAROL00000000000001"
CAROL_MFA = "arn:aws:iam::111122223333:mfa/carol"
# Raw detail-pass payloads for carol (the shapes of ListAccessKeys, GetAccessKeyLastUsed,
# ListSigningCertificates and ListMFADevices).
CAROL_DETAIL: dict[str, Any] = {
    "AccessKeyMetadata": [
        {"UserName": CAROL, "AccessKeyId": k, "Status": "Active", "CreateDate": "2023-05-05T08:10:00Z"}
        for k in CAROL_KEYS
    ],
    "AccessKeyLastUsed": {
        CAROL_KEYS[0]: {"LastUsedDate": "2026-06-12T11:00:00Z", "ServiceName": "iam", "Region": "us-east-1"},
        CAROL_KEYS[1]: {"ServiceName": "N/A", "Region": "N/A"},
    },
    "Certificates": [
        {
            "UserName": CAROL,
            "CertificateId": CAROL_CERT,
            "CertificateBody": "-----BEGIN CERTIFICATE-----...",
            "Status": "Active",
            "UploadDate": "2023-06-01T00:00:00Z",
        }
    ],
    "MFADevices": [{"UserName": CAROL, "SerialNumber": CAROL_MFA, "EnableDate": "2023-05-06T00:00:00Z"}],
}


def report_text() -> str:
    return (FIXTURES / "credential_report.csv").read_text()


def gaad() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / "gaad_users.json").read_text())
    return data


class FixtureIAM:
    """Serves the fixture payloads the way boto3 returns them (report content as bytes)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def generate_credential_report(self, **_: Any) -> dict[str, Any]:
        self.calls.append("GenerateCredentialReport")
        return {"State": "COMPLETE"}

    def get_credential_report(self, **_: Any) -> dict[str, Any]:
        self.calls.append("GetCredentialReport")
        return {"Content": report_text().encode(), "ReportFormat": "text/csv", "GeneratedTime": GENERATED}

    def get_account_authorization_details(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append("GetAccountAuthorizationDetails")
        assert kwargs.get("Filter") == ["User"]
        return gaad()

    # Detail pass: raw payloads for carol (two keys, a signing certificate, an MFA device), as
    # IAM returns them; everyone else has none.
    def list_access_keys(self, UserName: str, **_: Any) -> dict[str, Any]:
        self.calls.append("ListAccessKeys")
        return {"AccessKeyMetadata": list(CAROL_DETAIL["AccessKeyMetadata"]) if UserName == CAROL else []}

    def get_access_key_last_used(self, AccessKeyId: str, **_: Any) -> dict[str, Any]:
        self.calls.append("GetAccessKeyLastUsed")
        return {"UserName": CAROL, "AccessKeyLastUsed": CAROL_DETAIL["AccessKeyLastUsed"][AccessKeyId]}

    def list_ssh_public_keys(self, **_: Any) -> dict[str, Any]:
        self.calls.append("ListSSHPublicKeys")
        return {"SSHPublicKeys": []}

    def list_service_specific_credentials(self, **_: Any) -> dict[str, Any]:
        self.calls.append("ListServiceSpecificCredentials")
        return {"ServiceSpecificCredentials": []}

    def list_signing_certificates(self, UserName: str, **_: Any) -> dict[str, Any]:
        self.calls.append("ListSigningCertificates")
        return {"Certificates": list(CAROL_DETAIL["Certificates"]) if UserName == CAROL else []}

    def list_mfa_devices(self, UserName: str, **_: Any) -> dict[str, Any]:
        self.calls.append("ListMFADevices")
        return {"MFADevices": list(CAROL_DETAIL["MFADevices"]) if UserName == CAROL else []}


class FixtureSTS:
    def get_caller_identity(self) -> dict[str, str]:
        return {"Account": "111122223333"}


def fixture_source(**options: Any) -> AwsIamSource:
    settings = parse_settings(SourceOptions({"name": "aws-fx", "type": "aws_iam", **options}))
    return AwsIamSource(settings, ClientProvider(settings, AwsClients(iam=FixtureIAM(), sts=FixtureSTS())))


def test_report_sentinels_are_not_dates_and_root_row_is_kept_apart() -> None:
    report = parse_credential_report(report_text().encode(), GENERATED)
    assert ROOT_ROW not in report.rows
    assert report.root is not None and report.root.password_enabled is None  # not_supported
    bob = report.rows["bob"]
    assert bob.password_enabled is False and bob.password_last_used is None  # N/A
    # Slot 2 exists (it has a rotation date) but is inactive and was never used.
    assert [(k.slot, k.active, k.last_used) for k in bob.keys] == [
        (1, True, datetime(2026, 10, 12, 17, 0, tzinfo=UTC)),
        (2, False, None),
    ]
    assert bob.keys[0].last_used_region == "eu-west-1"
    newpw = report.rows["newpw"]
    assert newpw.password_enabled is True and newpw.password_last_used is None  # no_information
    assert newpw.keys == () and newpw.certs == ()
    carol = report.rows["carol.g@corp.example.com"]
    assert carol.mfa_active and [c.slot for c in carol.certs] == [1]
    assert parse_report_time("2026-01-02T03:04:05Z") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_report_time("not_supported") is None


def test_report_without_user_header_is_refused() -> None:
    with pytest.raises(ValueError, match="header"):
        parse_credential_report(b"foo,bar\n1,2\n", GENERATED)


def cut_after_column(text: str, user: str, columns: int) -> str:
    """The report ``text`` cut off inside ``user``'s row, after its first ``columns`` values."""
    start = text.index(f"\n{user},") + 1
    row = text[start : text.index("\n", start)]
    return text[:start] + ",".join(row.split(",")[:columns]) + "\n"


@pytest.mark.parametrize(
    "content",
    [
        # Cut after mfa_active: carol's keys and signing certificate, and every later user, are gone.
        pytest.param(cut_after_column(report_text(), CAROL, 8), id="row-cut-short"),
        pytest.param(report_text().replace("\nbob,", "\nbob,extra,", 1), id="row-with-an-extra-field"),
    ],
)
def test_report_with_a_row_that_does_not_fit_the_header_is_refused(content: str) -> None:
    with pytest.raises(ValueError, match="credential report line"):
        parse_credential_report(content.encode(), GENERATED)


def test_cut_off_report_fails_the_account_instead_of_hiding_a_signing_certificate() -> None:
    class CutReportIAM(FixtureIAM):
        def get_credential_report(self, **_: Any) -> dict[str, Any]:
            content = cut_after_column(report_text(), CAROL, 8).encode()
            return {"Content": content, "ReportFormat": "text/csv", "GeneratedTime": GENERATED}

    settings = parse_settings(SourceOptions({"name": "aws-fx", "type": "aws_iam", "full_detail": True}))
    provider = ClientProvider(settings, AwsClients(iam=CutReportIAM(), sts=FixtureSTS()))

    # The only account failed: a failed source, never carol without her certificate.
    with pytest.raises(SourceError, match="credential report line"):
        AwsIamSource(settings, provider).collect()


def test_bulk_pass_translates_users_and_report_into_accounts_and_slot_credentials() -> None:
    data = fixture_source().collect()
    assert data.scopes == ("111122223333",)
    accounts = {a.username: a for a in data.accounts}
    assert set(accounts) == {"bob", "carol.g@corp.example.com", "newpw", "svc-deploy", "late-joiner"}
    creds = {(c.account_id.rsplit("/", 1)[-1], c.credential_id): c for c in data.credentials}

    bob = accounts["bob"]
    assert bob.account_id == "arn:aws:iam::111122223333:user/bob"
    assert bob.scope == "111122223333" and bob.system == "aws_iam"
    assert ("tag:employee_id", "E1002") in bob.attributes and ("employee_id", "E1002") in bob.attributes
    # Only the configured owner tag keys are owner hints.
    assert not any(k == "tag:cost-center" for k, _ in bob.attributes)
    assert ("attached_policy", "ReadOnlyAccess") in bob.attributes
    assert bob.enabled and bob.kind is AccountKind.HUMAN
    key1 = creds[("bob", "report/access_key_1")]
    assert key1.kind is CredentialKind.ACCESS_KEY and key1.active
    assert key1.last_used_at == datetime(2026, 10, 12, 17, 0, tzinfo=UTC)
    # Report-derived credentials carry the report's generation time: it may be hours old.
    assert key1.observed_at == GENERATED
    assert not creds[("bob", "report/access_key_2")].active
    assert {cid for (u, cid) in creds if u == "bob" and cid.startswith("group/")} == {
        "group/admins",
        "group/developers",
    }

    carol = accounts["carol.g@corp.example.com"]
    # The user name is an email, and the Owner tag (any case) carries another one.
    assert set(carol.emails) == {"carol@example.com", "carol.g@corp.example.com"}
    assert ("inline_policy", "s3-own-bucket") in carol.attributes
    assert carol.last_login_at == datetime(2026, 6, 10, 9, 30, tzinfo=UTC)
    password = creds[("carol.g@corp.example.com", "login-profile")]
    assert password.kind is CredentialKind.PASSWORD and password.last_used_at == carol.last_login_at
    assert creds[("carol.g@corp.example.com", "report/mfa")].kind is CredentialKind.MFA_DEVICE
    assert creds[("carol.g@corp.example.com", "report/cert_1")].kind is CredentialKind.SIGNING_CERTIFICATE

    # A password that was never used is still an enabled login.
    assert accounts["newpw"].enabled and accounts["newpw"].last_login_at is None
    assert accounts["svc-deploy"].kind is AccountKind.SERVICE
    assert ("owner", "platform-team") in accounts["svc-deploy"].attributes


def test_user_newer_than_the_report_is_enabled_and_warned_about() -> None:
    data = fixture_source().collect()
    late = next(a for a in data.accounts if a.username == "late-joiner")
    # Nothing is known about its credentials yet: never assume it cannot log in.
    assert late.enabled
    assert any("late-joiner" in w and "newer than the credential report" in w for w in data.warnings)


def test_owners_map_and_custom_tag_keys_feed_owner_hints() -> None:
    data = fixture_source(
        owner_tag_keys=["cost-center"], owners={"newpw": "new.person@example.com"}
    ).collect()
    accounts = {a.username: a for a in data.accounts}
    assert ("tag:cost-center", "42") in accounts["bob"].attributes
    assert not any(k == "tag:employee_id" for k, _ in accounts["bob"].attributes)
    assert accounts["newpw"].emails == ("new.person@example.com",)


def test_deny_policy_option_adds_one_session_credential_per_user() -> None:
    data = fixture_source(include_inline_deny=True).collect()
    sessions = [c for c in data.credentials if c.kind is CredentialKind.ACCOUNT]
    assert len(sessions) == len(data.accounts)
    assert all(c.active for c in sessions)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"accounts": ["12345"]}, "accounts"),
        ({"organization": True}, "organization"),
        ({"assume_role": "arn:aws:iam::1:role/NoPlaceholder"}, "assume_role"),
        ({"retry_mode": "hope"}, "retry_mode"),
        ({"max_workers": 0}, "max_workers"),
        ({"endpoint_url": "127.0.0.1:5000"}, "endpoint_url"),
        ({"no_such_option": 1}, "no_such_option"),
    ],
)
def test_bad_options_raise_config_error_naming_the_key(options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_settings(SourceOptions({"name": "aws", "type": "aws_iam", **options}, prefix="sources[1]"))
    assert info.value.key == f"sources[1].{key}"


def test_report_age_is_within_the_generation_time() -> None:
    # Sanity of the fixture clock: the report may lag, and the source never invents a newer time.
    data = fixture_source().collect()
    report_creds = [c for c in data.credentials if c.credential_id.startswith("report/")]
    assert report_creds and all(c.observed_at == GENERATED for c in report_creds)
    assert all(
        c.observed_at is not None and c.observed_at > GENERATED - timedelta(hours=4) for c in report_creds
    )


def test_report_slots_are_provisional_and_the_detail_pass_ids_are_real() -> None:
    source = fixture_source()
    bulk = source.collect()
    carol = next(a for a in bulk.accounts if a.username == CAROL)
    slots = {c.credential_id: c.provisional for c in bulk.credentials if c.account_id == carol.account_id}
    # Report slots have no id: placeholders, never evaluated. Login profile and groups are real ids.
    assert slots == {
        "report/access_key_1": True,
        "report/access_key_2": True,
        "report/cert_1": True,
        "report/mfa": True,
        "login-profile": False,
    }
    assert all(c.provisional == c.credential_id.startswith("report/") for c in bulk.credentials), (
        "only report slots are provisional"
    )

    detail = source.detail([carol])
    assert detail.failed_scopes == ()
    real = {c.credential_id: c for c in detail.credentials}
    assert set(real) == {*CAROL_KEYS, CAROL_CERT, CAROL_MFA, "login-profile"}
    assert not any(c.provisional for c in detail.credentials)
    assert real[CAROL_KEYS[0]].last_used_at == datetime(2026, 6, 12, 11, 0, tzinfo=UTC)
    assert real[CAROL_KEYS[1]].last_used_at is None


def test_accounts_carry_the_user_id_from_the_authorization_details_as_uid() -> None:
    data = fixture_source().collect()
    uids = {a.username: a.uid for a in data.accounts}
    expected = {u["UserName"]: u["UserId"] for u in gaad()["UserDetailList"]}
    assert uids == expected and all(uids.values())
    # The ARN stays the account id; the UserId is the identity.
    bob = next(a for a in data.accounts if a.username == "bob")
    assert (bob.account_id, bob.uid) == ("arn:aws:iam::111122223333:user/bob", "AIDAEXAMPLEBOB000001")
