"""An invitation the leaver accepted is not a cancelled one: once accepted it has left GitHub's
pending list because the invitee is a member now, so ``cancel_invitation`` must not read it as
"nothing to revoke" (before the apply) or as cancelled and verified (accepted between the read and
the ``DELETE``, which then answers 404). Against the local fake GitHub, through the engine's steps."""

from __future__ import annotations

from connectors.github.demo_fake import FakeUser
from offboard_audit.core.actions import ActionTarget, ResourceState
from offboard_audit.core.stored import ActionStatus
from offboard_audit.engine.steps import apply_step
from tests.connectors.github.test_revoker import seed, target
from tests.support.github import GitHubWorld

INVITE = "cancel_invitation"


def _accept(world: GitHubWorld, t: ActionTarget, user: FakeUser) -> None:
    """What GitHub does when the invitee accepts: the invitation leaves the pending list and the
    user becomes a member."""
    s = world.state
    with s.lock:
        del s.invitations[int(t.credential_id.split("/")[1])]
        s.members[user.id] = "member"


def test_an_invitation_accepted_before_the_apply_is_not_read_as_nothing_to_revoke(
    github_world: GitHubWorld,
) -> None:
    users = seed(github_world)
    t = target(github_world.source().collect(), "newbie", "invitation/")
    _accept(github_world, t, users["newbie"])
    step = apply_step(github_world.revoker(), INVITE, t)
    assert step.status is ActionStatus.FAILED, step
    assert step.error is not None and "accepted" in step.error and "member of acme" in step.error
    assert users["newbie"].id in github_world.state.members


def test_an_invitation_accepted_between_the_read_and_the_delete_is_not_reported_cancelled(
    github_world: GitHubWorld,
) -> None:
    users = seed(github_world)
    t = target(github_world.source().collect(), "newbie", "invitation/")

    def accept(_before: ResourceState) -> None:
        _accept(github_world, t, users["newbie"])

    step = apply_step(github_world.revoker(), INVITE, t, on_intent=accept)
    assert step.status is ActionStatus.FAILED, step
    assert step.after is not None and step.after.active
    assert github_world.server.count("DELETE /orgs/acme/invitations/") == 1
    assert users["newbie"].id in github_world.state.members


def test_an_invitation_cancelled_by_someone_else_still_reads_as_nothing_to_revoke(
    github_world: GitHubWorld,
) -> None:
    users = seed(github_world)
    t = target(github_world.source().collect(), "newbie", "invitation/")
    del github_world.state.invitations[int(t.credential_id.split("/")[1])]
    step = apply_step(github_world.revoker(), INVITE, t)
    assert step.status is ActionStatus.NOOP, step
    assert users["newbie"].id not in github_world.state.members
