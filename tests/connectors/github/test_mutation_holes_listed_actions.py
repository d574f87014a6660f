"""The github actions read from a listing (SSO authorization, fine-grained token grant,
invitation), through the engine's steps against the local fake GitHub: the exact requests each
listing makes (one filtered page of 100, then GitHub's next page), the exact state each records
(what the audit chain stores, ``exists``/``active`` included), and the exact error text an
operator reads when a call fails, a credential id is malformed or an invitation moved."""

from __future__ import annotations

from dataclasses import replace

import pytest

from connectors.github.demo_fake import FakeUser
from offboard_audit.core.actions import ActionTarget, ResourceState
from offboard_audit.core.records import SourceData
from offboard_audit.core.stored import ActionStatus
from offboard_audit.engine.steps import apply_step
from tests.connectors.github.test_revoker import seed, target
from tests.support.github import Failure, GitHubWorld

SSO = "revoke_sso_authorization"
PAT = "revoke_fine_grained_token"
INVITE = "cancel_invitation"
DENIED = Failure(403, "Resource not accessible by integration")


def pat_world(world: GitHubWorld, grants: int = 1) -> tuple[dict[str, FakeUser], SourceData]:
    """The seeded organisation with ``grants`` fine-grained token grants of BobL's (GitHub App
    auth, which the grant calls need), and the detail that lists them."""
    world.app_token = True
    users = seed(world)
    for n in range(grants):
        world.state.grant(users["bob"], token_name=f"ci-{n}")
    source = world.source()
    data = source.collect()
    return users, source.detail([a for a in data.accounts if a.username == "BobL"])


def last_of(data: SourceData, username: str, prefix: str) -> ActionTarget:
    """The target of ``username``'s credential with the highest id (the last one listed)."""
    first = target(data, username, prefix)
    ids = [
        int(c.credential_id[len(prefix) :])
        for c in data.credentials
        if c.account_id == first.account_id and c.credential_id.startswith(prefix)
    ]
    return replace(first, credential_id=f"{prefix}{max(ids)}")


def listing_queries(world: GitHubWorld, path: str) -> list[dict[str, list[str]]]:
    return [q for key, q in world.server.queries if key == f"GET {path}"]


# --- the listings' requests and the state they record -------------------------------------------


def test_sso_authorization_is_read_from_one_page_of_100_filtered_by_login(github_world: GitHubWorld) -> None:
    users = seed(github_world)
    data = github_world.source().collect()
    t = target(data, "BobL", "sso/")
    github_world.server.reset_calls()
    step = apply_step(github_world.revoker(), SSO, t)
    assert step.status is ActionStatus.APPLIED, step.error
    # Read before and re-read after: each one request, for BobL only, 100 a page.
    assert (
        listing_queries(github_world, "/orgs/acme/credential-authorizations")
        == [{"per_page": ["100"], "login": ["BobL"]}] * 2
    )
    cred = t.credential_id.removeprefix("sso/")
    assert step.after == ResourceState(
        exists=False,
        active=False,
        data=(("login", "BobL"), ("credential_id", cred)),
        identity=str(users["bob"].id),
    )


def test_fine_grained_token_is_read_filtered_by_owner_and_records_the_token_id_and_name(
    github_world: GitHubWorld,
) -> None:
    users, detail = pat_world(github_world)
    grant = next(iter(github_world.state.grants.values()))
    t = target(detail, "BobL", "pat/")
    github_world.server.reset_calls()
    step = apply_step(github_world.revoker(), PAT, t)
    assert step.status is ActionStatus.APPLIED, step.error
    assert (
        listing_queries(github_world, "/orgs/acme/personal-access-tokens")
        == [{"per_page": ["100"], "owner[]": ["BobL"]}] * 2
    )
    assert step.before == ResourceState(
        exists=True,
        active=True,
        data=(
            ("login", "BobL"),
            ("pat_id", str(grant.id)),
            ("token_id", str(grant.token_id)),
            ("token_name", "ci-0"),
        ),
        identity=str(users["bob"].id),
    )


def test_invitation_is_read_from_pages_of_100_and_records_its_id_invitee_and_role(
    github_world: GitHubWorld,
) -> None:
    users = seed(github_world)
    data = github_world.source().collect()
    t = target(data, "newbie", "invitation/")
    inv_id = t.credential_id.removeprefix("invitation/")
    github_world.server.reset_calls()
    step = apply_step(github_world.revoker(), INVITE, t)
    assert step.status is ActionStatus.APPLIED, step.error
    assert listing_queries(github_world, "/orgs/acme/invitations") == [{"per_page": ["100"]}] * 2
    assert step.before == ResourceState(
        exists=True,
        active=True,
        data=(("invitation_id", inv_id), ("invitee", "newbie"), ("role", "direct_member")),
        identity=str(users["newbie"].id),
    )
    # Gone from the listing: only the id is recorded (the invitee is no longer listed).
    assert step.after == ResourceState(
        exists=False, active=False, data=(("invitation_id", inv_id),), identity=str(users["newbie"].id)
    )


# --- a listing longer than one page: the next page is followed and parsed ------------------------


def test_sso_authorization_on_the_second_page_is_found_and_revoked(github_world: GitHubWorld) -> None:
    users = seed(github_world)
    for _ in range(100):
        github_world.state.authorize(users["bob"])
    data = github_world.source().collect()
    t = last_of(data, "BobL", "sso/")
    github_world.server.reset_calls()
    step = apply_step(github_world.revoker(), SSO, t)
    assert step.status is ActionStatus.APPLIED, step.error
    assert step.before is not None and step.before.exists and step.before.active
    # Two pages before; one after (100 left).
    assert listing_queries(github_world, "/orgs/acme/credential-authorizations") == [
        {"per_page": ["100"], "login": ["BobL"]},
        {"per_page": ["100"], "login": ["BobL"], "page": ["2"]},
        {"per_page": ["100"], "login": ["BobL"]},
    ]


def test_fine_grained_token_on_the_second_page_is_found_and_revoked(github_world: GitHubWorld) -> None:
    _users, detail = pat_world(github_world, grants=101)
    t = last_of(detail, "BobL", "pat/")
    github_world.server.reset_calls()
    step = apply_step(github_world.revoker(), PAT, t)
    assert step.status is ActionStatus.APPLIED, step.error
    assert step.before is not None and step.before.value("token_name") == "ci-100"
    assert listing_queries(github_world, "/orgs/acme/personal-access-tokens") == [
        {"per_page": ["100"], "owner[]": ["BobL"]},
        {"per_page": ["100"], "owner[]": ["BobL"], "page": ["2"]},
        {"per_page": ["100"], "owner[]": ["BobL"]},
    ]


def test_invitation_on_the_second_page_is_found_and_cancelled(github_world: GitHubWorld) -> None:
    users = seed(github_world)
    for n in range(100):
        github_world.state.invite(users["alice"], email=f"guest{n}@corp.example.com")
    last = github_world.state.invite(users["alice"], email="late@corp.example.com")
    data = github_world.source().collect()
    t = target(data, "late@corp.example.com", "invitation/")
    assert t.credential_id == f"invitation/{last.id}"
    github_world.server.reset_calls()
    step = apply_step(github_world.revoker(), INVITE, t)
    assert step.status is ActionStatus.APPLIED, step.error
    assert last.id not in github_world.state.invitations
    # 103 invitations before, 102 after: two pages each time.
    assert (
        listing_queries(github_world, "/orgs/acme/invitations")
        == [
            {"per_page": ["100"]},
            {"per_page": ["100"], "page": ["2"]},
        ]
        * 2
    )


# --- failed calls: the operator reads which action, which credential and which call --------------


def _target_of(world: GitHubWorld, action: str) -> ActionTarget:
    """The seeded credential ``action`` acts on: BobL's SSO authorization or fine-grained token,
    or newbie's invitation."""
    if action == PAT:
        _users, detail = pat_world(world)
        return target(detail, "BobL", "pat/")
    seed(world)
    username, prefix = {SSO: ("BobL", "sso/"), INVITE: ("newbie", "invitation/")}[action]
    return target(world.source().collect(), username, prefix)


@pytest.mark.parametrize(
    ("action", "path", "call"),
    [
        (SSO, "/orgs/acme/credential-authorizations", "GET /orgs/acme/credential-authorizations?login=BobL"),
        (PAT, "/orgs/acme/personal-access-tokens", "GET /orgs/acme/personal-access-tokens?owner[]=BobL"),
        (INVITE, "/orgs/acme/invitations", "GET /orgs/acme/invitations"),
    ],
    ids=["sso", "token", "invitation"],
)
def test_a_failed_listing_names_the_action_the_credential_and_the_call(
    github_world: GitHubWorld, action: str, path: str, call: str
) -> None:
    t = _target_of(github_world, action)
    github_world.server.fail("GET", path, DENIED)
    step = apply_step(github_world.revoker(), action, t)
    assert step.status is ActionStatus.FAILED
    assert step.error == (
        f"could not read the state before acting: {action} {t.credential_id}: "
        f"reading its state: {call}: 403 Resource not accessible by integration"
    )


@pytest.mark.parametrize(
    ("action", "method", "path"),
    [
        (SSO, "DELETE", "/orgs/acme/credential-authorizations/{id}"),
        (PAT, "POST", "/orgs/acme/personal-access-tokens/{id}"),
        (INVITE, "DELETE", "/orgs/acme/invitations/{id}"),
    ],
    ids=["sso", "token", "invitation"],
)
def test_a_failed_change_names_the_action_the_credential_and_the_call(
    github_world: GitHubWorld, action: str, method: str, path: str
) -> None:
    t = _target_of(github_world, action)
    called = path.format(id=t.credential_id.split("/", 1)[1])
    github_world.server.fail(method, called, DENIED)
    step = apply_step(github_world.revoker(), action, t)
    assert step.status is ActionStatus.FAILED
    assert step.error == (
        f"{action} {t.credential_id}: {method} {called}: 403 Resource not accessible by integration"
    )


# --- malformed credential ids are refused before any call ---------------------------------------


@pytest.mark.parametrize(
    ("action", "bad", "name"),
    [
        (SSO, "sso/12a", "sso"),
        (PAT, "pat/x", "pat"),
        (INVITE, "invitation/", "invitation"),
        (SSO, "pat/12", "sso"),
    ],
)
def test_a_malformed_credential_id_is_refused_with_its_kind_named(
    github_world: GitHubWorld, action: str, bad: str, name: str
) -> None:
    users = seed(github_world)
    data = github_world.source().collect()
    revoker = github_world.revoker()
    kind = revoker.actions[action].credential_kind
    t = replace(target(data, "BobL", "sso/"), credential_id=bad, credential_kind=kind)
    github_world.server.reset_calls()
    step = apply_step(revoker, action, t)
    assert step.status is ActionStatus.FAILED
    assert step.error == f"could not read the state before acting: {bad!r} is not a {name} credential id"
    assert github_world.server.total() == 0
    assert users["bob"].id in github_world.state.members


# --- the states of a missing user and of an object gone from its listing ------------------------


@pytest.mark.parametrize(("action", "prefix"), [(SSO, "sso/"), (PAT, "pat/")])
def test_a_user_no_longer_found_reads_as_nothing_there(
    github_world: GitHubWorld, action: str, prefix: str
) -> None:
    users, detail = pat_world(github_world)
    t = target(detail, "BobL", prefix)
    github_world.state.rename(users["bob"], "bob-renamed")
    github_world.server.reset_calls()
    step = apply_step(github_world.revoker(), action, t)
    assert step.status is ActionStatus.TARGET_CHANGED
    assert step.before == ResourceState(exists=False, active=False)
    assert step.error == f"github account 'BobL' (identity {users['bob'].id}) no longer exists"
    # Nothing listed, nothing written: the user's id was not found.
    assert github_world.server.total() == 1


@pytest.mark.parametrize(
    ("action", "prefix", "key"), [(SSO, "sso/", "credential_id"), (PAT, "pat/", "pat_id")]
)
def test_an_object_gone_from_its_listing_reads_as_not_existing_and_not_active(
    github_world: GitHubWorld, action: str, prefix: str, key: str
) -> None:
    users, detail = pat_world(github_world)
    t = target(detail, "BobL", prefix)
    revoker = github_world.revoker()
    assert apply_step(revoker, action, t).status is ActionStatus.APPLIED
    again = apply_step(revoker, action, t)
    assert again.status is ActionStatus.NOOP
    assert again.message == "not found: nothing to revoke"
    assert again.before == ResourceState(
        exists=False,
        active=False,
        data=(("login", "BobL"), (key, t.credential_id.removeprefix(prefix))),
        identity=str(users["bob"].id),
    )


def test_an_invitation_now_for_someone_else_is_refused_with_both_names(github_world: GitHubWorld) -> None:
    users = seed(github_world)
    data = github_world.source().collect()
    t = target(data, "newbie", "invitation/")
    inv = github_world.state.invitations[int(t.credential_id.removeprefix("invitation/"))]
    inv.login = "Someone-Else"
    step = apply_step(github_world.revoker(), INVITE, t)
    assert step.status is ActionStatus.FAILED
    assert step.error == (
        "could not read the state before acting: "
        f"invitation {inv.id} is for 'someone-else' now, not 'newbie': run the audit again"
    )
    assert inv.id in github_world.state.invitations
    assert users["newbie"].id in github_world.state.users


def test_an_invitation_listed_with_neither_login_nor_email_names_an_empty_invitee(
    github_world: GitHubWorld,
) -> None:
    seed(github_world)
    data = github_world.source().collect()
    t = target(data, "newbie", "invitation/")
    inv = github_world.state.invitations[int(t.credential_id.removeprefix("invitation/"))]
    inv.login = None
    step = apply_step(github_world.revoker(), INVITE, t)
    assert step.status is ActionStatus.FAILED
    assert step.error is not None
    assert step.error.endswith(f"invitation {inv.id} is for '' now, not 'newbie': run the audit again")
    assert inv.id in github_world.state.invitations
