"""The gcp_iam revoker's actions against local fake endpoints, through the real client libraries
and the engine's steps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from connectors.gcp_iam import PLUGIN, GcpIamRevoker
from connectors.gcp_iam.demo_fake import FakeProject
from connectors.gcp_iam.translate import binding_credential_id, principal_uid
from offboard_audit.core.actions import ActionTarget, ResourceState, Stage
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.protocols import Revoker
from offboard_audit.core.records import CredentialKind
from offboard_audit.engine.steps import apply_step, read_state, undo_step
from tests.support.gcp import FakeGcp, key_target, sa_target

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
    first = apply_step(revoker, "remove_binding", target)
    assert first.status == "applied" and first.before and first.after
    assert first.before.exists and not first.after.exists
    assert acme.state.members("acme-prod", "roles/editor") == ["user:bob@example.com"]
    # The conditional binding of the same person is a different credential and stays.
    assert acme.state.members("acme-prod", "projects/acme-prod/roles/deployer") == ["user:grace@example.com"]
    writes = acme.state.calls[("rm.SetIamPolicy", "acme-prod")]
    assert apply_step(revoker, "remove_binding", target).status == "noop"
    assert acme.state.calls[("rm.SetIamPolicy", "acme-prod")] == writes  # nothing written the second time


def test_undo_re_adds_the_member(acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]) -> None:
    revoker = gcp_revoker(projects=["acme-prod"])
    target = binding_target("acme-prod", "roles/editor", "user:grace@example.com")
    prior = read_state(revoker, "remove_binding", target)
    assert apply_step(revoker, "remove_binding", target).status == "applied"
    result = undo_step(revoker, "remove_binding", target, prior)
    assert result.status == "restored" and result.after and result.after.exists
    assert sorted(acme.state.members("acme-prod", "roles/editor")) == [
        "user:bob@example.com",
        "user:grace@example.com",
    ]
    assert undo_step(revoker, "remove_binding", target, prior).status == "unchanged"


def test_conditional_binding_is_removed_and_undo_restores_the_condition(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    revoker = gcp_revoker(projects=["acme-prod"])
    role = "projects/acme-prod/roles/deployer"
    target = binding_target("acme-prod", role, "user:grace@example.com", CONDITION["expression"])
    prior = read_state(revoker, "remove_binding", target)
    assert prior.value("condition_expression") == CONDITION["expression"]
    assert apply_step(revoker, "remove_binding", target).status == "applied"
    # The binding had no other member: it is gone.
    assert not [b for b in acme.state.projects["acme-prod"].bindings if b["role"] == role]
    assert undo_step(revoker, "remove_binding", target, prior).status == "restored"
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
    result = apply_step(
        revoker, "remove_binding", binding_target("acme-prod", "roles/editor", "user:grace@example.com")
    )
    assert result.status == "applied"
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
    target = binding_target("acme-prod", "roles/editor", "user:grace@example.com")
    result = apply_step(revoker, "remove_binding", target)
    assert result.status == "failed" and "gave up after 3 attempts" in (result.error or "")
    assert acme.state.calls[("rm.SetIamPolicy", "acme-prod")] == 3
    assert "user:grace@example.com" in acme.state.members("acme-prod", "roles/editor")
    assert len(acme.state.members("acme-prod", "roles/viewer")) == 3  # every concurrent change kept


def test_the_last_owner_is_never_removed(acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]) -> None:
    revoker = gcp_revoker(projects=["acme-prod"])
    result = apply_step(
        revoker, "remove_binding", binding_target("acme-prod", "roles/owner", "user:alice@example.com")
    )
    assert result.status == "failed" and "last roles/owner member of projects/acme-prod" in (
        result.error or ""
    )
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
    agent = "service-123@gcp-sa-cloudbuild.iam.gserviceaccount.com"
    for action, target in (
        ("disable_key", key_target(ci.email, key.name, ci.unique_id)),
        ("disable_service_account", sa_target(ci.email, ci.unique_id)),
        ("remove_binding", binding_target("acme-prod", "roles/editor", "user:bob@example.com")),
        # Google-managed service agents are protected without configuration.
        ("disable_service_account", sa_target(agent, "1")),
    ):
        spec = revoker.specs[action]
        # Each of the spec's calls refuses by itself, not only the engine's first read.
        with pytest.raises(RevokeError, match="protected"):
            spec.read(target)
        with pytest.raises(RevokeError, match="protected"):
            spec.change(target, ResourceState(exists=True, active=True, identity=target.account_uid))
        assert spec.restore is not None
        with pytest.raises(RevokeError, match="protected"):
            spec.restore(
                target, ResourceState(exists=True, active=False), ResourceState(exists=True, active=True)
            )
    assert sum(acme.state.calls.values()) == 0
    assert not key.disabled and not ci.disabled


def test_a_service_account_protected_in_its_member_form_keeps_its_keys_and_stays_enabled(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    # protected_principals is matched against the member (docs/configuration.md): for a service
    # account that is serviceAccount:EMAIL, the form an IAM policy names it by. The account's
    # keys and the account itself were disabled all the same.
    ci = acme.state.add_service_account("acme-prod", "ci-deployer")
    key = acme.state.add_key(ci.email, created=CREATED)
    protected = f"serviceAccount:{ci.email.upper()}"
    revoker = gcp_revoker(projects=["acme-prod"], protected_principals=[protected])
    acme.state.reset_calls()
    for action, target in (
        ("disable_key", key_target(ci.email, key.name, ci.unique_id)),
        ("disable_service_account", sa_target(ci.email, ci.unique_id)),
    ):
        result = apply_step(revoker, action, target)
        assert result.status == "failed" and "is protected" in (result.error or ""), action
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
    prior = read_state(revoker, "disable_key", target)
    assert prior.exists and prior.active
    result = apply_step(revoker, "disable_key", target)
    assert result.status == "applied" and result.after and not result.after.active
    assert key.disabled and not other.disabled
    assert apply_step(revoker, "disable_key", target).status == "noop"
    assert acme.state.calls[("iam.DisableServiceAccountKey", "acme-prod")] == 1
    assert undo_step(revoker, "disable_key", target, prior).status == "restored"
    assert not key.disabled


def test_undo_does_not_enable_a_key_that_was_already_disabled(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    ci = acme.state.add_service_account("acme-prod", "ci-deployer")
    key = acme.state.add_key(ci.email, created=CREATED, disabled=True)
    revoker = gcp_revoker(projects=["acme-prod"])
    target = key_target(ci.email, key.name, ci.unique_id)
    prior = read_state(revoker, "disable_key", target)
    assert apply_step(revoker, "disable_key", target).status == "noop"
    assert undo_step(revoker, "disable_key", target, prior).status == "unchanged"
    assert key.disabled
    assert acme.state.calls[("iam.EnableServiceAccountKey", "acme-prod")] == 0


def test_a_key_that_no_longer_exists_is_reported_not_found(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    ci = acme.state.add_service_account("acme-prod", "ci-deployer")
    name = f"projects/acme-prod/serviceAccounts/{ci.email}/keys/{'f' * 40}"
    revoker = gcp_revoker(projects=["acme-prod"])
    state = read_state(revoker, "disable_key", key_target(ci.email, name, ci.unique_id))
    assert state == ResourceState(exists=False, active=False, data=(("name", name),), identity=ci.unique_id)
    result = apply_step(revoker, "disable_key", key_target(ci.email, name, ci.unique_id))
    assert result.status == "noop" and "not found" in result.message
    assert acme.state.calls[("iam.DisableServiceAccountKey", "acme-prod")] == 0


def test_disable_service_account_and_undo(acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]) -> None:
    ci = acme.state.add_service_account("acme-prod", "ci-deployer")
    revoker = gcp_revoker(projects=["acme-prod"])
    target = sa_target(ci.email, ci.unique_id)
    prior = read_state(revoker, "disable_service_account", target)
    assert apply_step(revoker, "disable_service_account", target).status == "applied"
    assert ci.disabled
    assert apply_step(revoker, "disable_service_account", target).status == "noop"
    assert undo_step(revoker, "disable_service_account", target, prior).status == "restored"
    assert not ci.disabled


def test_delete_key_is_irreversible(acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]) -> None:
    ci = acme.state.add_service_account("acme-prod", "ci-deployer")
    key = acme.state.add_key(ci.email, created=CREATED)
    revoker = gcp_revoker(projects=["acme-prod"])
    target = key_target(ci.email, key.name, ci.unique_id)
    prior = read_state(revoker, "delete_key", target)
    assert apply_step(revoker, "delete_key", target).status == "applied"
    assert key.key_id not in ci.keys
    assert revoker.specs["delete_key"].restore is None
    undone = undo_step(revoker, "delete_key", target, prior)
    assert undone.status == "failed" and "irreversible" in (undone.error or "")


def test_delete_key_deletes_a_disabled_key_because_for_a_deletion_active_means_still_there(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    ci = acme.state.add_service_account("acme-prod", "ci-deployer")
    key = acme.state.add_key(ci.email, created=CREATED, disabled=True)
    revoker = gcp_revoker(projects=["acme-prod"])
    target = key_target(ci.email, key.name, ci.unique_id)
    assert read_state(revoker, "delete_key", target).active
    assert apply_step(revoker, "delete_key", target).status == "applied"
    assert key.key_id not in ci.keys
    gone = read_state(revoker, "delete_key", target)
    assert not gone.exists and not gone.active


def test_an_action_on_the_wrong_credential_kind_is_refused(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    revoker = gcp_revoker(projects=["acme-prod"])
    wrong = apply_step(
        revoker, "disable_key", binding_target("acme-prod", "roles/editor", "user:grace@example.com")
    )
    assert wrong.status == "failed" and "applies to service_account_key" in (wrong.error or "")
    unknown = apply_step(revoker, "nuke", sa_target("x@acme-prod.iam.gserviceaccount.com", "1"))
    assert unknown.status == "failed" and "has no action 'nuke'" in (unknown.error or "")
