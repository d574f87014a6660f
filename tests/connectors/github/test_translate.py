"""Fixtures (raw payloads as GitHub sends them, parsed by githubkit's typed models) -> records:
ids, identity, last use, expiry, odd cases; and a fine-grained token used after its owner left
is critical through the core's rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from githubkit.compat import type_validate_python
from githubkit_schemas.ghec_v2026_03_10.models import (
    AuditLogEvent,
    CredentialAuthorization,
    DeployKey,
    OrganizationInvitation,
    OrganizationProgrammaticAccessGrant,
)

from connectors.github import translate as tr
from offboard_audit.core.evaluate import evaluate
from offboard_audit.core.records import (
    AccountKind,
    CredentialKind,
    ExposureHow,
    Link,
    Person,
    PersonStatus,
    Rule,
    Severity,
)

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2026, 11, 1, tzinfo=UTC)
BOB = tr.OrgUser(1002, "BobL", tr.MEMBER, "member")


def load(name: str, model: Any) -> list[Any]:
    return [type_validate_python(model, item) for item in json.loads((FIXTURES / name).read_text())]


def test_sso_authorizations_carry_last_use_expiry_and_what_they_are() -> None:
    token, ssh, expired, oauth = (
        tr.sso_credential("gh", "acme", "1002", a, NOW)
        for a in load("credential-authorizations.json", CredentialAuthorization)
    )
    assert (token.credential_id, token.kind, token.active) == (
        "sso/161195",
        CredentialKind.SSO_AUTHORIZATION,
        True,
    )
    assert token.last_used_at == datetime(2026, 10, 21, 17, 0, tzinfo=UTC)
    assert token.created_at == datetime(2026, 3, 12, 9, 14, 5, tzinfo=UTC)
    assert token.detail == (
        "personal access token ...71c3fc11 'laptop'; SAML-authorized 2026-03-12T09:14:05+00:00; scopes repo, read:org"
    )
    assert ssh.detail == "SSH key jklmnop12345678 'work laptop'; SAML-authorized 2024-08-01T10:00:00+00:00"
    assert ssh.last_used_at is None and ssh.active
    assert not expired.active and expired.detail.endswith("expires 2026-07-01T00:00:00+00:00")
    assert oauth.active and oauth.detail.startswith("OAuth app token; SAML-authorized")


def test_fine_grained_grants_expired_or_not() -> None:
    live, old = (
        tr.pat_credential("gh", "acme", "1002", g, NOW)
        for g in load("pat-grants.json", OrganizationProgrammaticAccessGrant)
    )
    assert (live.credential_id, live.kind, live.active) == (
        "pat/25381",
        CredentialKind.PERSONAL_ACCESS_TOKEN,
        True,
    )
    assert live.last_used_at == datetime(2026, 10, 15, 8, 30, tzinfo=UTC)
    assert live.detail == (
        "fine-grained token 'deploy script' (token id 98716); all repositories; expires 2027-04-01T10:00:00+00:00"
    )
    assert not old.active and old.last_used_at is None


def test_a_fine_grained_token_used_after_its_owner_left_is_critical() -> None:
    grants = load("pat-grants.json", OrganizationProgrammaticAccessGrant)
    creds = [tr.pat_credential("gh", "acme", "1002", g, NOW) for g in grants]
    account = tr.user_account("gh", "acme", BOB, "bob@example.com", None)
    bob = Person(
        "E1002", "bob@example.com", "Bob Leaver", PersonStatus.TERMINATED, datetime(2026, 9, 30, tzinfo=UTC)
    )
    findings = evaluate([Link(account, (bob,), "email")], {("gh", "1002"): creds}, NOW)
    assert [(f.rule, f.severity, f.credential.credential_id if f.credential else None) for f in findings] == [
        (Rule.USED_AFTER_TERMINATION, Severity.CRITICAL, "pat/25381")
    ]  # the expired grant opens nothing and raises nothing


def test_invitations_to_an_address_and_a_failed_one() -> None:
    to_email, failed = load("invitations.json", OrganizationInvitation)
    account = tr.email_invitation_account("gh", "acme", to_email)
    assert (account.account_id, account.uid, account.username) == (
        "email:carol.g@corp.example.com",
        "email:carol.g@corp.example.com",
        "carol.g@corp.example.com",
    )
    assert account.emails == ("carol.g@corp.example.com",)
    cred = tr.invitation_credential("gh", "acme", account.account_id, to_email)
    assert (cred.credential_id, cred.kind, cred.active) == (
        "invitation/4711",
        CredentialKind.INVITATION,
        True,
    )
    assert (
        cred.detail == "invited to acme as direct_member by alice-dev on 2026-06-10T12:00:00+00:00; 2 team(s)"
    )
    dead = tr.invitation_credential("gh", "acme", "1099", failed)
    assert not dead.active and dead.detail.endswith("failed 2026-10-31T12:00:00+00:00: Invitation expired")


def test_accounts_carry_the_user_id_as_identity_and_owner_hints() -> None:
    account = tr.user_account(
        "gh", "acme", tr.OrgUser(7, "Zed", tr.MEMBER, "admin", bot=True), "E77", "Zed@Example.com"
    )
    assert (account.account_id, account.uid, account.kind) == ("7", "7", AccountKind.SERVICE)
    assert account.emails == ("zed@example.com",)  # the nameId is no email here, the owner is
    assert account.attribute_values("saml_name_id") == ("E77",) and account.attribute_values("role") == (
        "admin",
    )
    collab = tr.membership_credential("gh", "acme", tr.OrgUser(8, "c", tr.OUTSIDE_COLLABORATOR))
    assert (collab.credential_id, collab.kind) == ("outside-collaborator", CredentialKind.ACCOUNT)


def test_saml_identities_by_user_id_and_case_insensitive_login() -> None:
    raw = json.loads((FIXTURES / "saml-identities.json").read_text())
    nodes = raw["organization"]["samlIdentityProvider"]["externalIdentities"]["nodes"]
    assert tr.saml_name_ids(nodes) == {
        "id:1002": "bob@example.com",
        "login:bobl": "bob@example.com",
        "login:erin99": "E1005",
    }  # the identity linked to no user is left out


def test_audit_events_time_and_deploy_key_events() -> None:
    (event,) = load("audit-log.json", AuditLogEvent)
    assert tr.audit_event_time(event) == datetime(2026, 10, 6, 9, 0, tzinfo=UTC)
    added, legacy = load("deploy-keys.json", DeployKey)
    e = tr.deploy_key_event("gh", "acme/infra", added, tr.adder_actor("cgone", 1003))
    assert (e.event_id, e.how, e.at, e.scope) == (
        "deploy-key:acme/infra/1",
        ExposureHow.CREATED,
        datetime(2026, 5, 16, 9, 0, tzinfo=UTC),
        "acme/infra",
    )
    assert (e.target.kind, e.target.object_id, e.target.owner, e.target.fingerprint) == (
        CredentialKind.DEPLOY_KEY,
        "acme/infra/keys/1",
        "acme/infra",
        "1",
    )
    assert e.actor.account_id == "1003" and tr.adder_actor("Gone", None).identity == "login:gone"
    assert tr.deploy_key_state_detail(added, ["a", "b"]) == (
        "deploy key 'deploy-prod' (read-write), last used 2026-10-30T02:00:00+00:00; repository admins: a, b"
    )
    assert tr.unset(legacy.added_by) is None
