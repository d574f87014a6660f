"""``remove_from_organization`` (and the revoker's user lookup) through the engine's steps against
the local fake GitHub: the exact state each read records (it goes into the audit chain), the exact
errors an operator sees, the identity re-check right before the login-keyed write, the owners and
outside-collaborator listings over several pages, and a membership whose ``user`` is null.

Written for the survivors of a mutation run over ``connectors/github/actions.py`` and
``connectors/github/revoker.py``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from connectors.github.demo_fake import GitHubFakeState
from offboard_audit.core.actions import ActionTarget, ResourceState
from offboard_audit.core.records import SourceData
from offboard_audit.core.stored import ActionStatus
from offboard_audit.engine.steps import apply_step, read_state
from tests.connectors.github.test_revoker import seed, target
from tests.support.github import NOW, ORG, Failure, GitHubWorld, MeteredGitHubServer, Sleeps

REMOVE = "remove_from_organization"
READ_FAILED = "could not read the state before acting: "


def member(data: SourceData, username: str) -> ActionTarget:
    return target(data, username, "membership")


def collaborator(data: SourceData, username: str) -> ActionTarget:
    return target(data, username, "outside-collaborator")


# --- what a read records ---------------------------------------------------------------------


def test_a_member_read_records_login_role_and_state_and_takes_the_id_from_the_membership(
    github_world: GitHubWorld,
) -> None:
    users = seed(github_world)
    data = github_world.source().collect()
    github_world.server.reset_calls()
    step = apply_step(github_world.revoker(), REMOVE, member(data, "BobL"))
    assert step.status is ActionStatus.APPLIED, step.error
    assert step.before == ResourceState(
        exists=True,
        active=True,
        data=(("login", "BobL"), ("role", "member"), ("state", "active")),
        identity=str(users["bob"].id),
    )
    calls = github_world.server.calls
    # The membership names its user: the two reads of it make no user lookup (only the re-read
    # after the removal, when there is no membership any more, does); and a plain member (not
    # an owner) never needs the owners listing.
    assert calls["GET /users/BobL"] == 1
    assert calls["GET /orgs/acme/members"] == 0
    assert calls["GET /orgs/acme/memberships/BobL"] == 3


def test_a_user_who_left_the_organisation_reads_as_not_found_with_login_and_identity(
    github_world: GitHubWorld,
) -> None:
    users = seed(github_world)
    data = github_world.source().collect()
    del github_world.state.members[users["bob"].id]
    step = apply_step(github_world.revoker(), REMOVE, member(data, "BobL"))
    assert step.status is ActionStatus.NOOP
    assert step.message == "not found: nothing to revoke"
    assert step.before == ResourceState(
        exists=False, active=False, data=(("login", "BobL"),), identity=str(users["bob"].id)
    )
    assert github_world.server.count("DELETE") == 0


@pytest.mark.parametrize(
    ("username", "kind"), [("BobL", "membership"), ("carl-contract", "outside-collaborator")]
)
def test_a_login_no_user_has_any_more_reads_as_gone_with_no_identity(
    github_world: GitHubWorld, username: str, kind: str
) -> None:
    users = seed(github_world)
    data = github_world.source().collect()
    t = target(data, username, kind)
    who = users["bob"] if kind == "membership" else users["carl"]
    github_world.state.rename(who, f"{username}-renamed")
    revoker = github_world.revoker()
    assert read_state(revoker, REMOVE, t) == ResourceState(exists=False, active=False)
    step = apply_step(revoker, REMOVE, t)
    assert step.status is ActionStatus.TARGET_CHANGED
    assert step.before == ResourceState(exists=False, active=False)
    assert step.error == f"github account {username!r} (identity {who.id}) no longer exists"
    assert github_world.server.count("DELETE") == 0


def test_an_outside_collaborator_read_records_login_and_relation(github_world: GitHubWorld) -> None:
    users = seed(github_world)
    data = github_world.source().collect()
    t = collaborator(data, "carl-contract")
    revoker = github_world.revoker()
    step = apply_step(revoker, REMOVE, t)
    assert step.status is ActionStatus.APPLIED, step.error
    expected_data = (("login", "carl-contract"), ("relation", "outside_collaborator"))
    carl = str(users["carl"].id)
    assert step.before == ResourceState(exists=True, active=True, data=expected_data, identity=carl)
    assert step.after == ResourceState(exists=False, active=False, data=expected_data, identity=carl)
    again = apply_step(revoker, REMOVE, t)
    assert again.status is ActionStatus.NOOP and again.message == "not found: nothing to revoke"


# --- errors the operator sees ----------------------------------------------------------------


def test_a_credential_id_that_is_no_membership_is_refused_with_its_name(github_world: GitHubWorld) -> None:
    seed(github_world)
    data = github_world.source().collect()
    t = replace(member(data, "BobL"), credential_id="team/7")
    github_world.server.reset_calls()
    step = apply_step(github_world.revoker(), REMOVE, t)
    assert step.status is ActionStatus.FAILED
    assert step.error == READ_FAILED + "'team/7' is not an organisation membership"
    assert github_world.server.count("DELETE") == 0


def test_the_last_owner_refusal_says_why_and_what_to_do(github_world: GitHubWorld) -> None:
    seed(github_world)
    data = github_world.source().collect()
    step = apply_step(github_world.revoker(), REMOVE, member(data, "Alice-Admin"))
    assert step.status is ActionStatus.FAILED
    assert step.error == READ_FAILED + (
        "refusing to remove 'Alice-Admin': the last owner of acme (an organisation with no owner "
        "cannot be administered); make someone else an owner first"
    )


@pytest.mark.parametrize(
    ("username", "kind", "path", "call"),
    [
        ("BobL", "membership", "/orgs/acme/memberships/BobL", "GET /orgs/acme/memberships/BobL"),
        ("Alice-Admin", "membership", "/orgs/acme/members", "GET /orgs/acme/members?role=admin"),
        ("carl-contract", "outside-collaborator", "/users/carl-contract", "GET /users/carl-contract"),
        (
            "carl-contract",
            "outside-collaborator",
            "/orgs/acme/outside_collaborators",
            "GET /orgs/acme/outside_collaborators",
        ),
    ],
)
def test_a_failed_read_names_the_call_that_failed(
    github_world: GitHubWorld, username: str, kind: str, path: str, call: str
) -> None:
    seed(github_world)
    data = github_world.source().collect()
    github_world.server.fail("GET", path, Failure(422, "Validation Failed"))
    step = apply_step(github_world.revoker(), REMOVE, target(data, username, kind))
    assert step.status is ActionStatus.FAILED
    assert step.error == f"{READ_FAILED}{REMOVE} {kind}: reading its state: {call}: 422 Validation Failed"
    assert github_world.server.count("DELETE") == 0


@pytest.mark.parametrize(
    ("username", "kind", "call"),
    [
        ("BobL", "membership", "DELETE /orgs/acme/memberships/BobL"),
        ("carl-contract", "outside-collaborator", "DELETE /orgs/acme/outside_collaborators/carl-contract"),
    ],
)
def test_a_failed_removal_names_the_call_that_failed(
    github_world: GitHubWorld, username: str, kind: str, call: str
) -> None:
    seed(github_world)
    data = github_world.source().collect()
    github_world.server.fail("DELETE", call.split(" ", 1)[1], Failure(422, "Validation Failed"))
    step = apply_step(github_world.revoker(), REMOVE, target(data, username, kind))
    # The re-read after the failed call still shows the membership: failed, retried next time.
    assert step.status is ActionStatus.FAILED
    assert step.error == f"{REMOVE} {kind}: {call}: 422 Validation Failed"


# --- the identity re-check right before the write ----------------------------------------------


def test_a_login_taken_by_someone_else_between_the_read_and_the_write_is_not_removed(
    github_world: GitHubWorld,
) -> None:
    users = seed(github_world)
    data = github_world.source().collect()
    s = github_world.state
    bob = users["bob"]
    taken: list[int] = []

    def rename_and_take(_before: ResourceState) -> None:
        # After the engine's read and intent, before the write: BobL is now another user.
        s.rename(bob, "bob-renamed")
        taken.append(s.add_member("BobL").id)

    step = apply_step(github_world.revoker(), REMOVE, member(data, "BobL"), on_intent=rename_and_take)
    impostor = taken[0]
    assert step.status is ActionStatus.TARGET_CHANGED
    assert step.error == (
        f"github account 'BobL' now has identity {impostor}, not {bob.id} as planned: "
        "the name was reused by another account"
    )
    assert github_world.server.count("DELETE") == 0
    assert impostor in s.members and bob.id in s.members


# --- listings over several pages ------------------------------------------------------------


def test_the_owners_listing_is_read_over_every_page_of_a_hundred(github_world: GitHubWorld) -> None:
    users = seed(github_world)
    # 100 more owners: alice is not the last one, and the listing takes two pages of 100.
    for i in range(100):
        github_world.state.add_member(f"owner-{i:03d}", role="admin")
    data = github_world.source().collect()
    github_world.server.reset_calls()
    step = apply_step(github_world.revoker(), REMOVE, member(data, "Alice-Admin"))
    assert step.status is ActionStatus.APPLIED, step.error
    assert users["alice"].id not in github_world.state.members
    listed = [q for k, q in github_world.server.queries if k == "GET /orgs/acme/members"]
    # Read, then again right before the write: two pages each, 100 a page (GitHub's maximum).
    assert listed[0] == {"role": ["admin"], "per_page": ["100"]}
    assert len(listed) == 4


def test_the_outside_collaborators_listing_is_read_over_every_page_of_a_hundred(
    github_world: GitHubWorld,
) -> None:
    s = github_world.state
    s.add_member("Alice-Admin", role="admin")
    for i in range(100):
        s.add_outside_collaborator(f"contractor-{i:03d}")
    # The highest id: on the second page.
    carl = s.add_outside_collaborator("carl-contract")
    data = github_world.source().collect()
    github_world.server.reset_calls()
    step = apply_step(github_world.revoker(), REMOVE, collaborator(data, "carl-contract"))
    assert step.status is ActionStatus.APPLIED, step.error
    assert carl.id not in s.outside
    listed = [q for k, q in github_world.server.queries if k == "GET /orgs/acme/outside_collaborators"]
    assert listed[0] == {"per_page": ["100"]}
    # Read and re-read before the write: two pages each; the re-read to verify: one (carl is gone).
    assert len(listed) == 5


# --- a membership that names no user --------------------------------------------------------


class NoUserMembershipServer(MeteredGitHubServer):
    """GitHub's membership schema allows ``"user": null``: this fake answers so."""

    def get_membership(self, login: str, **kw: Any) -> tuple[int, dict[str, str], Any]:
        status, headers, body = super().get_membership(login, **kw)
        return status, headers, {**body, "user": None}


@pytest.fixture
def no_user_world() -> Iterator[GitHubWorld]:
    state = GitHubFakeState(ORG)
    server = NoUserMembershipServer(state)
    server.start()
    try:
        yield GitHubWorld(state, server, Sleeps(), lambda: NOW)
    finally:
        server.stop()


def test_a_membership_without_a_user_takes_the_identity_from_the_user_lookup(
    no_user_world: GitHubWorld,
) -> None:
    users = seed(no_user_world)
    data = no_user_world.source().collect()
    no_user_world.server.reset_calls()
    step = apply_step(no_user_world.revoker(), REMOVE, member(data, "BobL"))
    assert step.status is ActionStatus.APPLIED, step.error
    assert step.before is not None and step.before.identity == str(users["bob"].id)
    assert users["bob"].id not in no_user_world.state.members
    assert no_user_world.server.calls["GET /users/BobL"] >= 1
