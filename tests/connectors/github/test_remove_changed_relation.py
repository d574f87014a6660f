"""``remove_from_organization`` removes the person from the organisation whichever way they are
in it now: a member converted to an outside collaborator since the audit (or an outside
collaborator who became a member) is still in, so the read must not say "not found: nothing to
revoke" while they keep their access. Against the local fake GitHub, through the engine's steps."""

from __future__ import annotations

from offboard_audit.core.stored import ActionStatus
from offboard_audit.engine.steps import apply_step
from tests.connectors.github.test_revoker import seed, target
from tests.support.github import GitHubWorld

REMOVE = "remove_from_organization"


def test_a_member_converted_to_an_outside_collaborator_since_the_audit_is_removed_as_one(
    github_world: GitHubWorld,
) -> None:
    users = seed(github_world)
    t = target(github_world.source().collect(), "BobL", "membership")
    s = github_world.state
    bob = users["bob"]
    with s.lock:  # "convert to outside collaborator": no membership, repository access kept
        del s.members[bob.id]
        s.outside.add(bob.id)
    step = apply_step(github_world.revoker(), REMOVE, t)
    assert step.status is ActionStatus.APPLIED, step
    assert step.before is not None and step.before.value("relation") == "outside_collaborator"
    assert bob.id not in s.outside and bob.id not in s.members
    assert github_world.server.count("DELETE /orgs/acme/outside_collaborators/BobL") == 1


def test_an_outside_collaborator_who_became_a_member_since_the_audit_is_removed_as_one(
    github_world: GitHubWorld,
) -> None:
    users = seed(github_world)
    t = target(github_world.source().collect(), "carl-contract", "outside-collaborator")
    s = github_world.state
    carl = users["carl"]
    with s.lock:
        s.outside.discard(carl.id)
        s.members[carl.id] = "member"
    step = apply_step(github_world.revoker(), REMOVE, t)
    assert step.status is ActionStatus.APPLIED, step
    assert step.before is not None and step.before.value("role") == "member"
    assert carl.id not in s.members and carl.id not in s.outside
    assert github_world.server.count("DELETE /orgs/acme/memberships/carl-contract") == 1


def test_a_converted_last_owner_is_still_never_removed(github_world: GitHubWorld) -> None:
    # The owner rule holds whichever relation was planned.
    users = seed(github_world)
    s = github_world.state
    carl = users["carl"]
    t = target(github_world.source().collect(), "carl-contract", "outside-collaborator")
    with s.lock:
        s.outside.discard(carl.id)
        s.members.clear()
        s.members[carl.id] = "admin"
    step = apply_step(github_world.revoker(), REMOVE, t)
    assert step.status is ActionStatus.FAILED, step
    assert step.error is not None and "the last owner of acme" in step.error
    assert s.members == {carl.id: "admin"}
    assert github_world.server.count("DELETE") == 0
