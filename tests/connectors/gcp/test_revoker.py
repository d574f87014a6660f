"""The gcp_iam revoker against local fake endpoints, through the real client libraries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from connectors.gcp_iam import PLUGIN, GcpIamRevoker
from connectors.gcp_iam.demo_fake import FakeProject
from connectors.gcp_iam.translate import binding_credential_id, principal_uid
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.protocols import Revoker
from offboard_audit.core.records import ActionTarget, CredentialKind, ResourceState, Stage
from tests.support.gcp import FakeGcp

CREATED = datetime(2025, 1, 1, tzinfo=UTC)
CONDITION = {
    "title": "until-2027",
    "description": "temporary access",
    "expression": 'request.time < timestamp("2027-01-01T00:00:00Z")',
}


def binding_target(project: str, role: str, member: str, expression: str = "") -> ActionTarget:
    return ActionTarget(
        source="gcp",
        system="gcp_iam",
        account_id=f"projects/{project}/{member}",
        username=member,
        credential_id=binding_credential_id(project, role, member, expression),
        credential_kind=CredentialKind.IAM_BINDING,
        scope=project,
        account_uid=principal_uid(member),
    )


def key_target(email: str, key_name: str, uid: str, project: str = "acme-prod") -> ActionTarget:
    return ActionTarget(
        source="gcp",
        system="gcp_iam",
        account_id=email,
        username=email,
        credential_id=key_name,
        credential_kind=CredentialKind.SERVICE_ACCOUNT_KEY,
        scope=project,
        account_uid=uid,
    )


def sa_target(email: str, uid: str, project: str = "acme-prod") -> ActionTarget:
    return ActionTarget(
        source="gcp",
        system="gcp_iam",
        account_id=email,
        username=email,
        credential_id=email,
        credential_kind=CredentialKind.ACCOUNT,
        scope=project,
        account_uid=uid,
    )


@pytest.fixture
def acme(gcp_fake: FakeGcp) -> FakeGcp:
    state = gcp_fake.state
    state.add_project("acme-prod")
    state.bind("acme-prod", "roles/owner", "user:alice@example.com")
    state.bind("acme-prod", "roles/editor", "user:grace@example.com")
    state.bind("acme-prod", "roles/editor", "user:bob@example.com")
    state.bind(
        "acme-prod", "projects/acme-prod/roles/deployer", "user:grace@example.com", condition=CONDITION
    )
    return gcp_fake


def test_actions_are_declared_with_exact_permissions() -> None:
    actions = GcpIamRevoker.actions
    assert PLUGIN.revoker_actions is actions
    assert set(actions) == {"remove_binding", "disable_key", "disable_service_account", "delete_key"}
    assert actions["remove_binding"].permissions == (
        "resourcemanager.projects.getIamPolicy",
        "resourcemanager.projects.setIamPolicy",
        "resourcemanager.organizations.getIamPolicy",
        "resourcemanager.organizations.setIamPolicy",
        "resourcemanager.folders.getIamPolicy",
        "resourcemanager.folders.setIamPolicy",
    )
    assert "iam.serviceAccountKeys.disable" in actions["disable_key"].permissions
    assert "iam.serviceAccounts.disable" in actions["disable_service_account"].permissions
    assert all(a.reversible == (a.stage is Stage.DISABLE) for a in actions.values())
    assert {a.credential_kind for a in actions.values()} == {
        CredentialKind.IAM_BINDING,
        CredentialKind.SERVICE_ACCOUNT_KEY,
        CredentialKind.ACCOUNT,
    }


def test_remove_binding_removes_only_that_member_and_is_idempotent(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    revoker = gcp_revoker(projects=["acme-prod"])
    assert isinstance(revoker, Revoker)
    target = binding_target("acme-prod", "roles/editor", "user:grace@example.com")
    first = revoker.apply("remove_binding", target)
    assert first.changed and first.verified
    assert first.before.exists and not first.after.exists
    assert acme.state.members("acme-prod", "roles/editor") == ["user:bob@example.com"]
    # The conditional binding of the same person is a different credential and stays.
    assert acme.state.members("acme-prod", "projects/acme-prod/roles/deployer") == ["user:grace@example.com"]
    writes = acme.state.calls[("rm.SetIamPolicy", "acme-prod")]
    second = revoker.apply("remove_binding", target)
    assert not second.changed and second.verified
    assert acme.state.calls[("rm.SetIamPolicy", "acme-prod")] == writes  # nothing written the second time


def test_undo_re_adds_the_member(acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]) -> None:
    revoker = gcp_revoker(projects=["acme-prod"])
    target = binding_target("acme-prod", "roles/editor", "user:grace@example.com")
    prior = revoker.read_state("remove_binding", target)
    revoker.apply("remove_binding", target)
    result = revoker.undo("remove_binding", target, prior)
    assert result.changed and result.verified and result.after.exists
    assert sorted(acme.state.members("acme-prod", "roles/editor")) == [
        "user:bob@example.com",
        "user:grace@example.com",
    ]
    assert not revoker.undo("remove_binding", target, prior).changed


def test_conditional_binding_is_removed_and_undo_restores_the_condition(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    revoker = gcp_revoker(projects=["acme-prod"])
    role = "projects/acme-prod/roles/deployer"
    target = binding_target("acme-prod", role, "user:grace@example.com", CONDITION["expression"])
    prior = revoker.read_state("remove_binding", target)
    assert prior.value("condition_expression") == CONDITION["expression"]
    assert revoker.apply("remove_binding", target).verified
    # The binding had no other member: it is gone.
    assert not [b for b in acme.state.projects["acme-prod"].bindings if b["role"] == role]
    assert revoker.undo("remove_binding", target, prior).verified
    (restored,) = [b for b in acme.state.projects["acme-prod"].bindings if b["role"] == role]
    assert restored["members"] == ["user:grace@example.com"]
    assert restored["condition"] == CONDITION


def test_etag_conflict_is_retried_and_the_concurrent_change_survives(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    def someone_else_grants(project: FakeProject) -> None:
        project.bindings.append({"role": "roles/viewer", "members": ["user:new-hire@example.com"]})

    acme.state.before_set_policy["acme-prod"] = [someone_else_grants]
    revoker = gcp_revoker(projects=["acme-prod"])
    result = revoker.apply(
        "remove_binding", binding_target("acme-prod", "roles/editor", "user:grace@example.com")
    )
    assert result.changed and result.verified
    assert acme.state.calls[("rm.SetIamPolicy", "acme-prod")] == 2  # one 409, one success
    assert acme.state.members("acme-prod", "roles/viewer") == ["user:new-hire@example.com"]
    assert acme.state.members("acme-prod", "roles/editor") == ["user:bob@example.com"]


def test_endless_conflicts_give_up_without_writing(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    def bump(project: FakeProject) -> None:
        project.bindings.append(
            {"role": "roles/viewer", "members": [f"user:n{project.revision}@example.com"]}
        )

    acme.state.before_set_policy["acme-prod"] = [bump] * 10
    revoker = gcp_revoker(projects=["acme-prod"], max_policy_retries=3)
    with pytest.raises(RevokeError, match="gave up after 3 attempts"):
        revoker.apply("remove_binding", binding_target("acme-prod", "roles/editor", "user:grace@example.com"))
    assert acme.state.calls[("rm.SetIamPolicy", "acme-prod")] == 3
    assert "user:grace@example.com" in acme.state.members("acme-prod", "roles/editor")
    assert len(acme.state.members("acme-prod", "roles/viewer")) == 3  # every concurrent change kept


def test_the_last_owner_is_never_removed(acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]) -> None:
    revoker = gcp_revoker(projects=["acme-prod"])
    with pytest.raises(RevokeError, match="last roles/owner member of projects/acme-prod"):
        revoker.apply("remove_binding", binding_target("acme-prod", "roles/owner", "user:alice@example.com"))
    assert acme.state.members("acme-prod", "roles/owner") == ["user:alice@example.com"]


def test_protected_principals_are_refused_before_any_call(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    ci = acme.state.add_service_account("acme-prod", "ci-deployer")
    key = acme.state.add_key(ci.email, created=CREATED)
    revoker = gcp_revoker(
        projects=["acme-prod"], protected_principals=["ci-*@acme-prod.iam.gserviceaccount.com", "bob@*"]
    )
    acme.state.reset_calls()
    with pytest.raises(RevokeError, match="protected"):
        revoker.apply("disable_key", key_target(ci.email, key.name, ci.unique_id))
    with pytest.raises(RevokeError, match="protected"):
        revoker.apply("disable_service_account", sa_target(ci.email, ci.unique_id))
    with pytest.raises(RevokeError, match="protected"):
        revoker.apply("remove_binding", binding_target("acme-prod", "roles/editor", "user:bob@example.com"))
    # Google-managed service agents are protected without configuration.
    agent = "service-123@gcp-sa-cloudbuild.iam.gserviceaccount.com"
    with pytest.raises(RevokeError, match="protected"):
        revoker.apply("disable_service_account", sa_target(agent, "1"))
    assert sum(acme.state.calls.values()) == 0
    assert not key.disabled and not ci.disabled


def test_disable_key_verifies_by_re_reading_and_undo_enables(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    ci = acme.state.add_service_account("acme-prod", "ci-deployer")
    key = acme.state.add_key(ci.email, created=CREATED)
    other = acme.state.add_key(ci.email, created=CREATED)
    revoker = gcp_revoker(projects=["acme-prod"])
    target = key_target(ci.email, key.name, ci.unique_id)
    prior = revoker.read_state("disable_key", target)
    assert prior.exists and prior.active
    result = revoker.apply("disable_key", target)
    assert result.changed and result.verified and not result.after.active
    assert key.disabled and not other.disabled
    again = revoker.apply("disable_key", target)
    assert not again.changed and again.verified
    assert acme.state.calls[("iam.DisableServiceAccountKey", "acme-prod")] == 1
    undone = revoker.undo("disable_key", target, prior)
    assert undone.changed and undone.verified and not key.disabled


def test_undo_does_not_enable_a_key_that_was_already_disabled(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    ci = acme.state.add_service_account("acme-prod", "ci-deployer")
    key = acme.state.add_key(ci.email, created=CREATED, disabled=True)
    revoker = gcp_revoker(projects=["acme-prod"])
    target = key_target(ci.email, key.name, ci.unique_id)
    prior = revoker.read_state("disable_key", target)
    assert not revoker.apply("disable_key", target).changed
    assert not revoker.undo("disable_key", target, prior).changed
    assert key.disabled


def test_a_key_that_no_longer_exists_is_reported_not_found(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    ci = acme.state.add_service_account("acme-prod", "ci-deployer")
    name = f"projects/acme-prod/serviceAccounts/{ci.email}/keys/{'f' * 40}"
    revoker = gcp_revoker(projects=["acme-prod"])
    state = revoker.read_state("disable_key", key_target(ci.email, name, ci.unique_id))
    assert state == ResourceState(exists=False, active=False, data=(("name", name),), identity=ci.unique_id)
    result = revoker.apply("disable_key", key_target(ci.email, name, ci.unique_id))
    assert not result.changed and result.verified and "not found" in result.message
    assert acme.state.calls[("iam.DisableServiceAccountKey", "acme-prod")] == 0


def test_disable_service_account_and_undo(acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]) -> None:
    ci = acme.state.add_service_account("acme-prod", "ci-deployer")
    revoker = gcp_revoker(projects=["acme-prod"])
    target = sa_target(ci.email, ci.unique_id)
    prior = revoker.read_state("disable_service_account", target)
    result = revoker.apply("disable_service_account", target)
    assert result.changed and result.verified and ci.disabled
    assert not revoker.apply("disable_service_account", target).changed
    assert revoker.undo("disable_service_account", target, prior).verified
    assert not ci.disabled


def test_delete_key_is_irreversible(acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]) -> None:
    ci = acme.state.add_service_account("acme-prod", "ci-deployer")
    key = acme.state.add_key(ci.email, created=CREATED)
    revoker = gcp_revoker(projects=["acme-prod"])
    target = key_target(ci.email, key.name, ci.unique_id)
    prior = revoker.read_state("delete_key", target)
    result = revoker.apply("delete_key", target)
    assert result.changed and result.verified and key.key_id not in ci.keys
    with pytest.raises(RevokeError, match="irreversible"):
        revoker.undo("delete_key", target, prior)


def test_an_action_on_the_wrong_credential_kind_is_refused(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    revoker = gcp_revoker(projects=["acme-prod"])
    with pytest.raises(RevokeError, match="acts on service_account_key"):
        revoker.apply("disable_key", binding_target("acme-prod", "roles/editor", "user:grace@example.com"))
    with pytest.raises(RevokeError, match="unknown gcp_iam action"):
        revoker.apply("nuke", sa_target("x@acme-prod.iam.gserviceaccount.com", "1"))
