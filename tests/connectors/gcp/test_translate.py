"""Translation of raw Google Cloud payloads (as the APIs return them) into records."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from google.cloud import iam_admin_v1
from google.iam.v1 import policy_pb2
from google.protobuf import json_format

from connectors.gcp_iam.translate import (
    BindingRef,
    binding_credential_id,
    parse_binding_credential_id,
    parse_member,
    policy_bindings,
    translate_policy,
)
from connectors.gcp_iam.translate_service_accounts import (
    last_auth_by_key,
    last_auth_by_service_account,
    service_account_owners,
    translate_key,
    translate_service_account,
)
from offboard_audit.core.records import AccountKind, CredentialKind

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
PROJECT = "acme-prod"


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def _policy() -> Any:
    return json_format.Parse(_fixture("policy.json"), policy_pb2.Policy())


def _service_accounts() -> list[Any]:
    resp = iam_admin_v1.ListServiceAccountsResponse.from_json(
        _fixture("service_accounts.json"), ignore_unknown_fields=True
    )
    return list(resp.accounts)


def _keys() -> list[Any]:
    resp = iam_admin_v1.ListServiceAccountKeysResponse.from_json(
        _fixture("keys.json"), ignore_unknown_fields=True
    )
    return list(resp.keys)


def test_members_parse_live_deleted_and_group_forms() -> None:
    assert parse_member("user:Grace@Example.com").email == "grace@example.com"
    deleted = parse_member("deleted:user:carol@example.com?uid=108234567890123456789")
    assert (deleted.type, deleted.email, deleted.deleted, deleted.uid) == (
        "user",
        "carol@example.com",
        True,
        "108234567890123456789",
    )
    assert parse_member("group:eng@example.com").type == "group"
    assert parse_member("allUsers").email == ""


def test_policy_gives_one_account_per_person_and_one_credential_per_role_and_member() -> None:
    accounts, credentials = translate_policy("gcp", PROJECT, policy_bindings(_policy()), NOW)
    by_id = {a.account_id: a for a in accounts}
    assert set(by_id) == {
        "projects/acme-prod/user:alice@example.com",
        "projects/acme-prod/user:grace@example.com",
        "projects/acme-prod/user:carol@example.com",
        "projects/acme-prod/group:eng@example.com",
    }
    grace = by_id["projects/acme-prod/user:grace@example.com"]
    assert grace.emails == ("grace@example.com",)
    assert grace.kind is AccountKind.HUMAN and grace.enabled and grace.scope == PROJECT
    grace_creds = sorted(c.credential_id for c in credentials if c.account_id == grace.account_id)
    assert len(grace_creds) == 2
    assert "projects/acme-prod/roles/editor/user:Grace@Example.com" in grace_creds
    assert all(c.kind is CredentialKind.IAM_BINDING and c.scope == PROJECT for c in credentials)
    # serviceAccount:, domain: and allUsers members are not people.
    assert not any("serviceAccount:" in c.credential_id or "allUsers" in c.credential_id for c in credentials)


def test_deleted_member_binding_stays_active_because_it_revives_with_the_account() -> None:
    accounts, credentials = translate_policy("gcp", PROJECT, policy_bindings(_policy()), NOW)
    carol = next(a for a in accounts if a.account_id.endswith("user:carol@example.com"))
    assert carol.enabled is False  # no live Google account behind it
    assert ("deleted_uid", "108234567890123456789") in carol.attributes
    (binding,) = [c for c in credentials if c.account_id == carol.account_id]
    assert binding.active is True
    assert "revives" in binding.detail


def test_group_members_are_reported_as_non_human_context() -> None:
    accounts, _ = translate_policy("gcp", PROJECT, policy_bindings(_policy()), NOW)
    group = next(a for a in accounts if "group:" in a.account_id)
    assert group.kind is AccountKind.SERVICE
    assert group.emails == ()


def test_wanted_keeps_only_that_persons_user_bindings() -> None:
    accounts, credentials = translate_policy(
        "gcp", PROJECT, policy_bindings(_policy()), NOW, wanted={"grace@example.com"}
    )
    assert [a.account_id for a in accounts] == ["projects/acme-prod/user:grace@example.com"]
    assert len(credentials) == 2


def test_binding_credential_ids_round_trip_including_custom_roles_and_conditions() -> None:
    expression = 'request.time < timestamp("2027-01-01T00:00:00Z")'
    cid = binding_credential_id(
        PROJECT, "projects/acme-prod/roles/deployer", "user:grace@example.com", expression
    )
    ref = parse_binding_credential_id(cid)
    assert ref.scope == PROJECT
    assert ref.role == "projects/acme-prod/roles/deployer"
    assert ref.member == "user:grace@example.com"
    assert ref.condition != ""
    deleted = binding_credential_id(PROJECT, "roles/viewer", "deleted:user:c@example.com?uid=1")
    assert parse_binding_credential_id(deleted) == BindingRef(
        PROJECT, "roles/viewer", "deleted:user:c@example.com?uid=1"
    )
    with pytest.raises(ValueError):
        parse_binding_credential_id("projects/p/serviceAccounts/x@y/keys/k")


@pytest.mark.parametrize("scope", ["organizations/123", "folders/456"])
def test_organization_and_folder_binding_ids_name_the_resource_and_round_trip(scope: str) -> None:
    custom = f"{scope}/roles/auditor" if scope.startswith("organizations/") else "roles/editor"
    cid = binding_credential_id(scope, custom, "user:grace@example.com")
    assert cid == f"{scope}/{custom}/user:grace@example.com"
    ref = parse_binding_credential_id(cid)
    assert ref == BindingRef(scope, custom, "user:grace@example.com")
    assert ref.resource == scope and ref.kind == scope.split("/")[0]
    assert parse_binding_credential_id(binding_credential_id(PROJECT, "roles/viewer", "user:a@b.c")).kind == (
        "projects"
    )
    with pytest.raises(ValueError):
        parse_binding_credential_id("organizations/acme/roles/viewer/user:grace@example.com")


def test_an_organization_policy_becomes_records_scoped_to_the_organization() -> None:
    accounts, credentials = translate_policy("gcp", "organizations/123", policy_bindings(_policy()), NOW)
    assert accounts and credentials
    assert {a.scope for a in accounts} == {"organizations/123"}
    assert all(a.account_id.startswith("organizations/123/") for a in accounts)
    assert all(c.credential_id.startswith("organizations/123/") for c in credentials)
    assert all("inherited by every project below" in c.detail for c in credentials)


def test_credential_ids_are_the_same_in_every_run() -> None:
    first = translate_policy("gcp", PROJECT, policy_bindings(_policy()), NOW)[1]
    second = translate_policy("gcp", PROJECT, policy_bindings(_policy()), datetime(2027, 1, 1, tzinfo=UTC))[1]
    assert [c.credential_id for c in first] == [c.credential_id for c in second]


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("owner: grace@example.com", (("owner", "grace@example.com"),)),
        ("CI. OWNER=Grace@Example.com", (("owner", "grace@example.com"),)),
        ("a owner:a@x.com, owner = b@x.com;", (("owner", "a@x.com"), ("owner", "b@x.com"))),
        ("owned by the platform team", ()),
        ("owner: platform-team", ()),
    ],
)
def test_owner_markers_in_descriptions(description: str, expected: tuple[tuple[str, str], ...]) -> None:
    assert service_account_owners("sa@p.iam.gserviceaccount.com", description, {}) == expected


def test_owners_table_overrides_description_and_accepts_employee_ids() -> None:
    email = "sa@p.iam.gserviceaccount.com"
    assert service_account_owners(email, "owner: x@example.com", {email: "Y@Example.com"}) == (
        ("owner", "y@example.com"),
    )
    assert service_account_owners(email, "", {email: "E1007"}) == (("owner_employee_id", "E1007"),)


def test_service_account_becomes_a_service_account_with_owner_hints_and_an_account_credential() -> None:
    ci, reporting = _service_accounts()
    account, credential = translate_service_account("gcp", PROJECT, ci, {}, NOW)
    assert account.account_id == "ci-deployer@acme-prod.iam.gserviceaccount.com"
    assert account.kind is AccountKind.SERVICE and account.enabled
    assert account.emails == ()
    assert account.attribute_values("owner") == ("grace@example.com", "ops-lead@example.com")
    assert account.attribute_values("unique_id") == ("104567890123456789012",)
    assert credential.kind is CredentialKind.ACCOUNT
    assert credential.credential_id == account.account_id and credential.active
    disabled_account, disabled_cred = translate_service_account("gcp", PROJECT, reporting, {}, NOW)
    assert not disabled_account.enabled and not disabled_cred.active


def test_keys_carry_creation_time_and_are_inactive_when_disabled_or_expired() -> None:
    fresh, expired, disabled = (
        translate_key("gcp", PROJECT, "ci-deployer@acme-prod.iam.gserviceaccount.com", k, NOW)
        for k in _keys()
    )
    assert fresh.kind is CredentialKind.SERVICE_ACCOUNT_KEY
    assert fresh.credential_id.endswith("/keys/1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c")
    assert fresh.created_at == datetime(2026, 8, 15, 9, 30, tzinfo=UTC)
    assert fresh.active
    assert not expired.active and "expires 2026-01-10" in expired.detail
    assert not disabled.active and "disabled" in disabled.detail


def test_last_authentication_activities_are_indexed_by_key_id_and_service_account() -> None:
    keys = last_auth_by_key(json.loads(_fixture("activities_keys.json"))["activities"])
    assert keys == {
        "1f2e3d4c5b6a79881f2e3d4c5b6a79881f2e3d4c": datetime(2026, 11, 20, 7, 0, 0, 123456, tzinfo=UTC)
    }
    sas = last_auth_by_service_account(json.loads(_fixture("activities_service_accounts.json"))["activities"])
    when = datetime(2026, 11, 21, 7, 0, tzinfo=UTC)
    assert sas["ci-deployer@acme-prod.iam.gserviceaccount.com"] == when
    assert sas["104567890123456789012"] == when
