"""The github revoker's actions through the engine's steps, against the local fake GitHub: each
applied and verified by a re-read, a second apply writes nothing, undo is honestly refused, the
last owner is never removed, a login renamed and taken by someone else is left alone."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from connectors.github import PLUGIN
from connectors.github.demo_fake import FakeUser
from offboard_audit.core.actions import ActionTarget, ResourceState, Stage
from offboard_audit.core.records import CredentialKind, SourceData
from offboard_audit.core.stored import ActionStatus
from offboard_audit.engine.steps import apply_step, undo_step
from tests.support.github import NOW, GitHubWorld


def seed(world: GitHubWorld) -> dict[str, FakeUser]:
    s = world.state
    users = {
        "alice": s.add_member("Alice-Admin", role="admin"),
        "bob": s.add_member("BobL"),
        "carl": s.add_outside_collaborator("carl-contract"),
    }
    s.authorize(users["bob"], accessed_at=NOW - timedelta(days=1))
    users["newbie"] = s.add_user("newbie")
    s.invite(users["alice"], login="newbie")
    s.invite(users["alice"], email="carol.g@corp.example.com")
    return users


def target(data: SourceData, username: str, credential_prefix: str) -> ActionTarget:
    account = next(a for a in data.accounts if a.username == username)
    cred = next(
        c
        for c in data.credentials
        if c.account_id == account.account_id and c.credential_id.startswith(credential_prefix)
    )
    return ActionTarget(
        source=account.source,
        system=account.system,
        account_id=account.account_id,
        username=account.username,
        credential_id=cred.credential_id,
        credential_kind=cred.kind,
        detail=cred.detail,
        scope=account.scope,
        account_uid=account.uid,
    )


def test_actions_are_declared_irreversible_with_membership_removal_last() -> None:
    defs = PLUGIN.revoker_actions
    assert {n: (d.credential_kind, d.stage, d.reversible) for n, d in defs.items()} == {
        "revoke_sso_authorization": (CredentialKind.SSO_AUTHORIZATION, Stage.DISABLE, False),
        "revoke_fine_grained_token": (CredentialKind.PERSONAL_ACCESS_TOKEN, Stage.DISABLE, False),
        "cancel_invitation": (CredentialKind.INVITATION, Stage.DISABLE, False),
        "remove_from_organization": (CredentialKind.ACCOUNT, Stage.DELETE, False),
    }
    assert defs["remove_from_organization"].permissions == (
        "GET /users/{username}",
        "GET /orgs/{org}/memberships/{username}",
        "GET /orgs/{org}/members?role=admin",
        "GET /orgs/{org}/outside_collaborators",
        "DELETE /orgs/{org}/memberships/{username}",
        "DELETE /orgs/{org}/outside_collaborators/{username}",
        "token scope admin:org (an organisation owner); GitHub App: Members (write)",
    )
    assert "can only be re-invited" in defs["remove_from_organization"].description


def test_revoke_sso_authorization_is_verified_by_a_reread_and_a_noop_the_second_time(
    github_world: GitHubWorld,
) -> None:
    users = seed(github_world)
    data = github_world.source().collect()
    revoker = github_world.revoker()
    t = target(data, "BobL", "sso/")
    github_world.server.reset_calls()
    step = apply_step(revoker, "revoke_sso_authorization", t)
    assert step.status is ActionStatus.APPLIED, step.error
    assert step.before == ResourceState(
        True,
        True,
        (
            ("login", "BobL"),
            ("credential_id", t.credential_id[4:]),
            ("credential_type", "personal access token"),
        ),
        identity=str(users["bob"].id),
    )
    assert step.after is not None and not step.after.exists and step.after.identity == str(users["bob"].id)
    assert not [a for a in github_world.state.authorizations.values() if a.user_id == users["bob"].id]
    calls = github_world.server.calls
    assert calls[f"DELETE /orgs/acme/credential-authorizations/{t.credential_id[4:]}"] == 1
    assert calls["GET /users/BobL"] == 2 and calls["GET /orgs/acme/credential-authorizations"] == 2
    assert github_world.server.total() == 5
    github_world.server.reset_calls()
    again = apply_step(revoker, "revoke_sso_authorization", t)
    assert again.status is ActionStatus.NOOP
    assert github_world.server.count("DELETE") == 0


def test_revoke_fine_grained_token_posts_revoke_and_verifies(github_world: GitHubWorld) -> None:
    github_world.app_token = True
    users = seed(github_world)
    grant = github_world.state.grant(users["bob"], last_used_at=NOW - timedelta(days=2))
    source = github_world.source()
    data = source.collect()
    detail = source.detail([a for a in data.accounts if a.username == "BobL"])
    t = target(detail, "BobL", "pat/")
    assert t.credential_id == f"pat/{grant.id}"
    step = apply_step(github_world.revoker(), "revoke_fine_grained_token", t)
    assert step.status is ActionStatus.APPLIED, step.error
    assert grant.id not in github_world.state.grants
    assert github_world.server.calls[f"POST /orgs/acme/personal-access-tokens/{grant.id}"] == 1


def test_cancel_invitation_of_a_login_and_of_an_email(github_world: GitHubWorld) -> None:
    seed(github_world)
    data = github_world.source().collect()
    revoker = github_world.revoker()
    for username in ("newbie", "carol.g@corp.example.com"):
        t = target(data, username, "invitation/")
        step = apply_step(revoker, "cancel_invitation", t)
        assert step.status is ActionStatus.APPLIED, (username, step.error)
        assert int(t.credential_id.split("/")[1]) not in github_world.state.invitations
    assert github_world.state.invitations == {}
    assert github_world.server.count("DELETE /orgs/acme/invitations/") == 2


def test_remove_from_organization_removes_a_member_and_an_outside_collaborator(
    github_world: GitHubWorld,
) -> None:
    users = seed(github_world)
    data = github_world.source().collect()
    revoker = github_world.revoker()
    github_world.server.reset_calls()
    step = apply_step(revoker, "remove_from_organization", target(data, "BobL", "membership"))
    assert step.status is ActionStatus.APPLIED, step.error
    assert step.before is not None and step.before.value("role") == "member"
    assert users["bob"].id not in github_world.state.members
    # Read, then right before the write the membership is read again (the write names a login).
    assert github_world.server.calls["GET /orgs/acme/memberships/BobL"] == 3
    assert github_world.server.calls["DELETE /orgs/acme/memberships/BobL"] == 1
    step = apply_step(
        revoker, "remove_from_organization", target(data, "carl-contract", "outside-collaborator")
    )
    assert step.status is ActionStatus.APPLIED, step.error
    assert users["carl"].id not in github_world.state.outside
    assert github_world.server.calls["DELETE /orgs/acme/outside_collaborators/carl-contract"] == 1


def test_the_last_owner_is_never_removed(github_world: GitHubWorld) -> None:
    users = seed(github_world)
    data = github_world.source().collect()
    revoker = github_world.revoker()
    t = target(data, "Alice-Admin", "membership")
    step = apply_step(revoker, "remove_from_organization", t)
    assert step.status is ActionStatus.FAILED
    assert step.error is not None and "refusing to remove 'Alice-Admin': the last owner of acme" in step.error
    assert github_world.server.count("DELETE") == 0
    assert github_world.state.members[users["alice"].id] == "admin"
    # With a second owner she can go.
    github_world.state.add_member("second-owner", role="admin")
    assert apply_step(revoker, "remove_from_organization", t).status is ActionStatus.APPLIED


def test_a_login_renamed_and_taken_by_someone_else_is_left_alone(github_world: GitHubWorld) -> None:
    users = seed(github_world)
    data = github_world.source().collect()
    s = github_world.state
    s.rename(users["bob"], "bob-renamed")
    impostor = s.add_member("BobL")
    s.authorize(impostor)
    revoker = github_world.revoker()
    github_world.server.reset_calls()
    for action, prefix in (("remove_from_organization", "membership"), ("revoke_sso_authorization", "sso/")):
        step = apply_step(revoker, action, target(data, "BobL", prefix))
        assert step.status is ActionStatus.TARGET_CHANGED, action
        assert (
            step.error is not None and f"now has identity {impostor.id}, not {users['bob'].id}" in step.error
        )
    assert github_world.server.count("DELETE") == 0
    assert impostor.id in s.members and users["bob"].id in s.members


def test_a_protected_login_is_refused_before_any_call(github_world: GitHubWorld) -> None:
    seed(github_world)
    data = github_world.source().collect()
    revoker = github_world.revoker(protected_logins=["bobl"])
    github_world.server.reset_calls()
    step = apply_step(revoker, "revoke_sso_authorization", target(data, "BobL", "sso/"))
    assert step.status is ActionStatus.FAILED
    assert step.error is not None and "refusing to touch protected GitHub login 'BobL'" in step.error
    assert github_world.server.total() == 0


def test_a_target_of_another_organisation_is_refused_before_any_call(github_world: GitHubWorld) -> None:
    seed(github_world)
    data = github_world.source().collect()
    other = replace(target(data, "BobL", "membership"), scope="other-org")
    github_world.server.reset_calls()
    step = apply_step(github_world.revoker(), "remove_from_organization", other)
    assert step.status is ActionStatus.FAILED and step.error is not None
    assert "belongs to organisation 'other-org', not 'acme'" in step.error
    assert github_world.server.total() == 0


def test_undo_is_honest_every_action_is_irreversible(github_world: GitHubWorld) -> None:
    seed(github_world)
    data = github_world.source().collect()
    revoker = github_world.revoker()
    t = target(data, "BobL", "membership")
    applied = apply_step(revoker, "remove_from_organization", t)
    assert applied.status is ActionStatus.APPLIED and applied.before is not None
    github_world.server.reset_calls()
    undone = undo_step(revoker, "remove_from_organization", t, applied.before)
    assert undone.status is ActionStatus.FAILED and undone.error is not None
    assert "remove_from_organization is irreversible" in undone.error and "re-invited" in undone.error
    assert github_world.server.total() == 0
    assert all(spec.restore is None for spec in revoker.specs.values())
