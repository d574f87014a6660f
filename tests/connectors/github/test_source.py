"""The github source's passes against the local fake GitHub, through githubkit's typed models:
Link paging, rate limits waited out (never slept), a failed list failing the organisation, SAML
mapping, the detail pass only for the asked-for accounts, call counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.github.demo_fake import FakeUser
from offboard_audit.core.errors import SourceError
from offboard_audit.core.matching import match_all
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Account, CredentialKind, Person, PersonStatus
from tests.support.github import NOW, Failure, GitHubWorld

ORG_MEMBERS = "GET /orgs/acme/members"
LEFT = datetime(2026, 9, 1, tzinfo=UTC)


def seed(world: GitHubWorld) -> dict[str, FakeUser]:
    s = world.state
    users = {
        "alice": s.add_member("Alice-Admin", role="admin", name_id="alice@example.com"),
        "bob": s.add_member("BobL", name_id="bob@example.com"),
        "grace": s.add_member("GraceH"),
        "mallory": s.add_member("mallory-x"),
        "bot": s.add_member("release-bot", bot=True),
        "erin": s.add_member("erin99", name_id="E1005"),
        "frank": s.add_member("frank-ol", name_id="frank@example.com"),
    }
    users["carl"] = s.add_outside_collaborator("carl-contract")
    users["dana"] = s.add_outside_collaborator("dana-c")
    users["zed"] = s.add_outside_collaborator("zed-c")
    invitee = s.add_user("newbie")
    s.invite(users["alice"], login="newbie", created_at=NOW - timedelta(days=2))
    s.invite(users["alice"], email="Carol.G@corp.example.com", created_at=NOW - timedelta(days=200))
    users["newbie"] = invitee
    s.authorize(users["bob"], authorized_at=LEFT - timedelta(days=90), accessed_at=LEFT + timedelta(days=10))
    s.authorize(
        users["bob"], "SSH key", fingerprint="SHA256:bobkey", authorized_at=LEFT - timedelta(days=400)
    )
    s.authorize(users["alice"], accessed_at=NOW - timedelta(hours=1))
    s.authorize(users["grace"], expires_at=NOW - timedelta(days=1))
    s.authorize(users["frank"], "OAuth app token")
    return users


def test_bulk_pass_reads_every_list_page_by_page_following_link_headers(github_world: GitHubWorld) -> None:
    users = seed(github_world)
    data = github_world.source(page_size=3).collect()
    calls = github_world.server.calls
    assert calls[ORG_MEMBERS] == 3 + 1  # 7 members in pages of 3, plus the admins (one page)
    assert calls["GET /orgs/acme/outside_collaborators"] == 1
    assert calls["GET /orgs/acme/invitations"] == 1
    assert calls["GET /orgs/acme/credential-authorizations"] == 2  # 5 authorizations
    assert calls["POST /graphql"] == 1
    assert calls["GET /users/newbie"] == 1  # the invitee who is neither member nor collaborator
    assert github_world.server.total() == 10
    # The later pages were the URLs GitHub's Link header gave, not guessed page numbers.
    pages = [q for k, q in github_world.server.queries if k == ORG_MEMBERS and "role" not in q]
    assert [q.get("page") for q in pages] == [None, ["2"], ["3"]]
    assert {a.username for a in data.accounts} == {
        "Alice-Admin", "BobL", "GraceH", "mallory-x", "release-bot", "erin99", "frank-ol",
        "carl-contract", "dana-c", "zed-c", "newbie", "carol.g@corp.example.com",
    }  # fmt: skip
    assert data.failed_scopes == () and data.warnings == () and data.scopes == ("acme",)
    by_name = {a.username: a for a in data.accounts}
    alice = by_name["Alice-Admin"]
    assert alice.account_id == alice.uid == str(users["alice"].id)
    assert alice.attribute_values("role") == ("admin",) and alice.scope == "acme"
    assert by_name["BobL"].attribute_values("role") == ("member",)
    assert by_name["carl-contract"].attribute_values("relation") == ("outside_collaborator",)
    assert by_name["release-bot"].kind.value == "service"
    email_invitee = by_name["carol.g@corp.example.com"]
    assert email_invitee.account_id == email_invitee.uid == "email:carol.g@corp.example.com"


def test_bulk_pass_credentials_carry_their_last_use_and_expiry(github_world: GitHubWorld) -> None:
    users = seed(github_world)
    data = github_world.source().collect()
    creds = {(c.account_id, c.credential_id): c for c in data.credentials}
    bob = str(users["bob"].id)
    (token, ssh) = sorted((c for c in data.credentials if c.account_id == bob and c.kind is CredentialKind.SSO_AUTHORIZATION), key=lambda c: c.credential_id)  # fmt: skip
    assert token.last_used_at == LEFT + timedelta(days=10) and token.active
    assert ssh.detail.startswith("SSH key SHA256:bobkey;") and ssh.last_used_at is None
    grace_token = next(c for c in data.credentials if c.account_id == str(users["grace"].id) and c.kind is CredentialKind.SSO_AUTHORIZATION)  # fmt: skip
    assert not grace_token.active  # expired yesterday: it opens nothing
    assert creds[(bob, "membership")].kind is CredentialKind.ACCOUNT
    assert creds[(str(users["carl"].id), "outside-collaborator")].kind is CredentialKind.ACCOUNT
    invitations = sorted(c.credential_id for c in data.credentials if c.kind is CredentialKind.INVITATION)
    assert len(invitations) == 2 and all(i.startswith("invitation/") for i in invitations)
    assert sum(1 for c in data.credentials if c.kind is CredentialKind.SSO_AUTHORIZATION) == 5


def test_a_403_secondary_rate_limit_with_retry_after_is_waited_out_then_the_list_completes(
    github_world: GitHubWorld,
) -> None:
    seed(github_world)
    github_world.server.fail(
        "GET",
        "/orgs/acme/outside_collaborators",
        Failure(403, "You have exceeded a secondary rate limit.", {"Retry-After": "30"}),
    )
    data = github_world.source().collect()
    assert github_world.sleeps.waits == [30.0]
    assert github_world.server.calls["GET /orgs/acme/outside_collaborators"] == 2
    assert sum(1 for a in data.accounts if a.attribute_values("relation") == ("outside_collaborator",)) == 3


def test_a_403_naming_the_secondary_limit_without_headers_waits_a_minute_then_doubles(
    github_world: GitHubWorld,
) -> None:
    seed(github_world)
    limit = Failure(403, "You have exceeded a secondary rate limit. Please wait a few minutes.")
    github_world.server.fail("GET", "/orgs/acme/invitations", limit, limit)
    data = github_world.source().collect()
    assert github_world.sleeps.waits == [60.0, 120.0]
    assert github_world.server.calls["GET /orgs/acme/invitations"] == 3
    assert sum(1 for c in data.credentials if c.kind is CredentialKind.INVITATION) == 2


def test_a_spent_primary_limit_resetting_after_max_wait_fails_the_source_at_once(
    github_world: GitHubWorld,
) -> None:
    seed(github_world)
    reset = int(NOW.timestamp()) + 3600
    github_world.server.fail(
        "GET",
        "/orgs/acme/members",
        Failure(
            403, "API rate limit exceeded", {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
        ),
    )
    with pytest.raises(SourceError) as err:
        github_world.source().collect()
    assert "rate limited until 2026-11-01T13:00:01+00:00, longer than max_wait (0:05:00)" in str(err.value)
    assert github_world.sleeps.waits == []


def test_a_spent_primary_budget_is_waited_for_before_the_next_call(github_world: GitHubWorld) -> None:
    seed(github_world)
    reset = int(NOW.timestamp()) + 90
    # A successful answer that spends the last call of the hour: the next call waits for the reset.
    github_world.server.fail(
        "GET",
        "/orgs/acme/invitations",
        Failure(
            403, "API rate limit exceeded", {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset)}
        ),
    )
    github_world.source(max_wait="2m").collect()
    assert github_world.sleeps.waits == [91.0]
    assert github_world.server.calls["GET /orgs/acme/invitations"] == 2


def test_a_server_error_that_persists_fails_the_source_never_an_empty_list(github_world: GitHubWorld) -> None:
    seed(github_world)
    github_world.server.fail("GET", "/orgs/acme/outside_collaborators", *[Failure(502, "Bad Gateway")] * 3)
    with pytest.raises(SourceError) as err:
        github_world.source(max_retries=2).collect()
    assert (
        "outside: GET /orgs/acme/outside_collaborators: 502 Bad Gateway (still failing after 2 retries"
        in str(err.value)
    )
    assert github_world.sleeps.waits == [1.0, 2.0]


def test_a_403_that_is_no_rate_limit_fails_at_once_naming_the_call(github_world: GitHubWorld) -> None:
    seed(github_world)
    github_world.server.fail(
        "GET", "/orgs/acme/credential-authorizations", Failure(403, "Must have admin rights")
    )
    with pytest.raises(SourceError) as err:
        github_world.source().collect()
    assert "GET /orgs/acme/credential-authorizations: 403 Must have admin rights" in str(err.value)
    assert github_world.sleeps.waits == []


def test_an_answer_github_would_not_send_fails_the_list(github_world: GitHubWorld) -> None:
    seed(github_world)
    original = github_world.state.simple_user

    def without_node_id(user: FakeUser) -> dict[str, object]:
        payload = original(user)
        del payload["node_id"]  # required by GitHub's description of SimpleUser
        return payload

    github_world.state.simple_user = without_node_id  # type: ignore[method-assign]
    with pytest.raises(SourceError, match="does not match GitHub's description"):
        github_world.source().collect()


def test_an_organisation_without_saml_warns_and_reads_no_authorizations(github_world: GitHubWorld) -> None:
    seed(github_world)
    github_world.state.saml = False
    data = github_world.source().collect()
    assert github_world.server.calls["GET /orgs/acme/credential-authorizations"] == 0
    assert data.warnings == (
        "organisation acme has no SAML identity provider: no SAML identities or credential authorizations "
        "to read (set saml = false to silence this)",
    )
    assert not any(c.kind is CredentialKind.SSO_AUTHORIZATION for c in data.credentials)


def people() -> list[Person]:
    def p(eid: str, email: str, name: str, left: datetime | None = None) -> Person:
        status = PersonStatus.TERMINATED if left else PersonStatus.ACTIVE
        return Person(eid, email, name, status, left, source="hr")

    return [
        p("E1001", "alice@example.com", "Alice Admin"),
        p("E1002", "bob@example.com", "Bob Leaver", LEFT),
        p("E1005", "erin@example.com", "Erin Rehired"),
        p("E1007", "grace@example.com", "Grace Departed", LEFT),
    ]


def test_saml_name_ids_and_the_owners_map_link_logins_to_people_case_insensitively(
    github_world: GitHubWorld,
) -> None:
    seed(github_world)
    from connectors.github import PLUGIN

    # The owners map names the login in another case than GitHub spells it.
    data = github_world.source(owners={"graceh": "Grace@Example.com"}).collect()
    links = {
        ln.account.username: ln for ln in match_all(data.accounts, {"gh": PLUGIN.match}, people(), ["alice"])
    }
    assert links["BobL"].person is not None and links["BobL"].person.employee_id == "E1002"
    assert links["BobL"].matched_by == "email"
    assert links["GraceH"].person is not None and links["GraceH"].person.employee_id == "E1007"
    # A nameId that is an employee id links by employee id.
    assert links["erin99"].person is not None and links["erin99"].matched_by == "employee_id"
    assert links["mallory-x"].people == ()


def test_graphql_identities_are_read_100_a_page(github_world: GitHubWorld) -> None:
    for i in range(230):
        github_world.state.add_member(f"user{i}", name_id=f"user{i}@example.com")
    data = github_world.source().collect()
    assert github_world.server.calls["POST /graphql"] == 3
    assert sum(1 for a in data.accounts if a.emails) == 230


# --- detail pass ----------------------------------------------------------------------------


def leaver_accounts(data_accounts: tuple[Account, ...], logins: set[str]) -> list[Account]:
    return [a for a in data_accounts if a.username in logins]


def test_detail_reads_fine_grained_tokens_of_the_asked_accounts_only_ten_owners_a_call(
    github_world: GitHubWorld,
) -> None:
    github_world.app_token = True
    s = github_world.state
    members = [s.add_member(f"dev{i:02d}") for i in range(30)]
    for m in members:
        s.grant(m, token_name=f"tok-{m.login}", last_used_at=NOW - timedelta(days=1))
    source = github_world.source()
    data = source.collect()
    asked = leaver_accounts(data.accounts, {f"dev{i:02d}" for i in range(12)})
    github_world.server.reset_calls()
    detail = source.detail(asked)
    assert github_world.server.calls["GET /orgs/acme/personal-access-tokens"] == 2  # 12 owners: 10 + 2
    assert github_world.server.total() == 2  # nothing else: the bulk lists are not read again
    pats = [c for c in detail.credentials if c.kind is CredentialKind.PERSONAL_ACCESS_TOKEN]
    assert sorted(c.account_id for c in pats) == sorted(a.account_id for a in asked)
    assert all(c.last_used_at == NOW - timedelta(days=1) and c.active for c in pats)
    # The bulk credentials of the asked accounts come back with them (the detail replaces them).
    assert sum(1 for c in detail.credentials if c.credential_id == "membership") == 12
    assert {a.account_id for a in detail.accounts} == {a.account_id for a in asked}


def test_detail_with_token_auth_warns_that_fine_grained_tokens_need_an_app(github_world: GitHubWorld) -> None:
    users = seed(github_world)
    source = github_world.source()
    data = source.collect()
    github_world.server.reset_calls()
    detail = source.detail(leaver_accounts(data.accounts, {"BobL"}))
    assert github_world.server.total() == 0
    assert detail.warnings == (
        "fine-grained personal access tokens were not read: only a GitHub App can list them "
        "(configure app_id, private_key_env and installation_id)",
    )
    assert {c.credential_id for c in detail.credentials} == {"membership"} | {
        f"sso/{a.credential_id}"
        for a in github_world.state.authorizations.values()
        if a.user_id == users["bob"].id
    }


def test_a_failed_token_list_returns_none_of_the_asked_accounts_data(github_world: GitHubWorld) -> None:
    github_world.app_token = True
    seed(github_world)
    source = github_world.source()
    data = source.collect()
    github_world.server.fail("GET", "/orgs/acme/personal-access-tokens", Failure(404, "Not Found"))
    detail = source.detail(leaver_accounts(data.accounts, {"BobL"}))
    assert detail.accounts == () and detail.credentials == ()
    assert [f.scope for f in detail.failed_scopes] == ["acme"]
    assert "fine-grained tokens: GET /orgs/acme/personal-access-tokens (owners BobL): 404 Not Found" in (
        detail.failed_scopes[0].error
    )


def test_audit_log_gives_the_membership_its_last_use_one_call_per_asked_account(
    github_world: GitHubWorld,
) -> None:
    users = seed(github_world)
    s = github_world.state
    s.log(users["bob"], "repo.download_zip", LEFT - timedelta(days=3), repo="api")
    s.log(users["bob"], "git.clone", LEFT + timedelta(days=5), repo="api")
    s.log(users["alice"], "org.update_member", LEFT + timedelta(days=6))
    source = github_world.source(audit_log=True)
    data = source.collect()
    github_world.server.reset_calls()
    detail = source.detail(leaver_accounts(data.accounts, {"BobL", "GraceH"}))
    assert github_world.server.calls["GET /orgs/acme/audit-log"] == 2
    membership = {c.account_id: c for c in detail.credentials if c.credential_id == "membership"}
    bob = membership[str(users["bob"].id)]
    assert bob.last_used_at == LEFT + timedelta(days=5)
    assert (
        bob.detail == "member of acme (member); last audit-log event git.clone at 2026-09-06T00:00:00+00:00"
    )
    assert membership[str(users["grace"].id)].last_used_at is None
    assert detail.enrichment_failures == ()


def test_an_unreadable_audit_log_is_an_enrichment_failure_not_a_missing_value(
    github_world: GitHubWorld,
) -> None:
    users = seed(github_world)
    source = github_world.source(audit_log=True)
    data = source.collect()
    github_world.server.fail("GET", "/orgs/acme/audit-log", Failure(404, "Not Found"))
    detail = source.detail(leaver_accounts(data.accounts, {"BobL"}))
    assert [f.scope for f in detail.enrichment_failures] == ["acme"]
    assert (
        "audit log: GET /orgs/acme/audit-log?phrase=actor:BobL: 404 Not Found"
        in detail.enrichment_failures[0].error
    )
    assert detail.failed_scopes == ()
    membership = next(c for c in detail.credentials if c.credential_id == "membership")
    assert membership.account_id == str(users["bob"].id) and membership.last_used_at is None


def test_an_audit_log_event_of_another_user_id_under_the_login_is_an_enrichment_failure(
    github_world: GitHubWorld,
) -> None:
    users = seed(github_world)
    s = github_world.state
    # The login's earlier holder: the fake finds events by the actor's login, as GitHub does by the
    # login at the time of the event, so a second user with the same login stands for them.
    earlier = s.add_user("bobl")
    s.log(earlier, "git.clone", LEFT + timedelta(days=20), repo="api")
    s.log(users["bob"], "repo.download_zip", LEFT - timedelta(days=3), repo="api")
    source = github_world.source(audit_log=True)
    data = source.collect()
    detail = source.detail(leaver_accounts(data.accounts, {"BobL", "GraceH"}))
    assert [f.scope for f in detail.enrichment_failures] == ["acme"]
    assert detail.enrichment_failures[0].error == (
        f"audit log: GET /orgs/acme/audit-log?phrase=actor:BobL: the newest event is of user id {earlier.id}, "
        f"not {users['bob'].id} (the login was held by another account): the last use is unknown"
    )
    assert detail.failed_scopes == ()
    membership = {c.account_id: c for c in detail.credentials if c.credential_id == "membership"}
    assert membership[str(users["bob"].id)].last_used_at is None
    assert membership[str(users["grace"].id)].last_used_at is None


def test_collect_for_reads_only_what_may_belong_to_the_person(github_world: GitHubWorld) -> None:
    seed(github_world)
    bob = people()[1]
    data = github_world.source().collect_for(bob)
    assert [a.username for a in data.accounts] == ["BobL"]
    assert {c.kind for c in data.credentials} == {CredentialKind.ACCOUNT, CredentialKind.SSO_AUTHORIZATION}


def test_github_app_auth_exchanges_its_jwt_for_an_installation_token_and_lists_tokens(
    github_world: GitHubWorld,
) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from connectors.github import PLUGIN

    users = seed(github_world)
    github_world.state.grant(users["bob"], last_used_at=LEFT + timedelta(days=1))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    github_world.app_token = True
    options = github_world.options()  # app_id 42, installation 7, private key from GH_APP_KEY
    ctx = SourceContext(base_dir=Path.cwd(), env={"GH_APP_KEY": pem})  # no injected client
    source = PLUGIN.make_source(options, ctx)
    data = source.collect()
    # githubkit caches the installation token; the five lists starting together may each fetch one.
    exchanged = github_world.server.calls["POST /app/installations/7/access_tokens"]
    assert 1 <= exchanged <= 5
    detail = source.detail(leaver_accounts(data.accounts, {"BobL"}))
    assert github_world.server.calls["POST /app/installations/7/access_tokens"] == exchanged
    (pat,) = [c for c in detail.credentials if c.kind is CredentialKind.PERSONAL_ACCESS_TOKEN]
    assert pat.last_used_at == LEFT + timedelta(days=1) and detail.warnings == ()


def test_a_missing_token_variable_fails_the_source_naming_it(github_world: GitHubWorld) -> None:
    from connectors.github import PLUGIN

    source = PLUGIN.make_source(github_world.options(), SourceContext(base_dir=Path.cwd(), env={}))
    with pytest.raises(SourceError, match="environment variable GH_TOKEN is not set"):
        source.collect()
