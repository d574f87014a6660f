"""Organization and folder IAM policies: read by the source, written by the revoker.

A role granted on an organization or a folder is inherited by every project below it; a
departed person bound only there must be found and removable. Everything goes through the
real client libraries against the local fakes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from connectors.gcp_iam import GcpIamRevoker, GcpIamSource
from connectors.gcp_iam.demo_fake import FakePolicyHolder
from connectors.gcp_iam.translate import binding_credential_id
from offboard_audit.core.actions import ActionTarget
from offboard_audit.core.records import CredentialKind, Person, PersonStatus
from offboard_audit.engine.steps import apply_step, read_state, undo_step
from tests.support.gcp import FakeGcp, GcpFakeState

LEFT = datetime(2026, 8, 1, tzinfo=UTC)
ORG = "organizations/5"
FOLDER = "folders/10"
SUBFOLDER = "folders/11"
ORG_ADMIN = "roles/resourcemanager.organizationAdmin"


def seed_hierarchy(state: GcpFakeState) -> None:
    """organizations/5 > folders/10 > folders/11; grace left and is bound at the org and a sub-folder."""
    state.add_folder(FOLDER, parent=ORG)
    state.add_folder(SUBFOLDER, parent=FOLDER)
    state.add_project("top", parent=ORG)
    state.add_project("nested", parent=FOLDER)
    state.add_project("deep", parent=SUBFOLDER)
    state.bind(ORG, ORG_ADMIN, "user:alice@example.com")
    state.bind(ORG, "roles/viewer", "user:grace@example.com")
    state.bind(ORG, "roles/viewer", "group:eng@example.com")
    state.bind(SUBFOLDER, "roles/editor", "user:grace@example.com")
    state.bind(FOLDER, "roles/browser", "user:bob@example.com")
    state.bind("deep", "roles/viewer", "user:bob@example.com")


def grace() -> Person:
    return Person("E1007", "grace@example.com", "Grace", PersonStatus.TERMINATED, LEFT, aliases=("grace",))


def binding_target(scope: str, role: str, member: str) -> ActionTarget:
    email = member.split(":", 1)[1]
    return ActionTarget(
        source="gcp",
        system="gcp_iam",
        account_id=f"{scope}/user:{email}",
        username=member,
        credential_id=binding_credential_id(scope, role, member),
        credential_kind=CredentialKind.IAM_BINDING,
        scope=scope,
        account_uid=f"user:{email}",
    )


# --- reading -----------------------------------------------------------------------------


def test_an_organization_level_binding_is_reported_with_the_organization_scope(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    seed_hierarchy(gcp_fake.state)
    data = gcp_source(organization=ORG).collect()
    assert data.failed_scopes == ()
    assert set(data.scopes) == {"top", "nested", "deep", ORG, FOLDER, SUBFOLDER}
    creds = {c.credential_id: c for c in data.credentials}
    org_cred = creds["organizations/5/roles/viewer/user:grace@example.com"]
    assert org_cred.scope == ORG and org_cred.kind is CredentialKind.IAM_BINDING and org_cred.active
    assert org_cred.account_id == "organizations/5/user:grace@example.com"
    assert "inherited by every project below" in org_cred.detail
    accounts = {a.account_id: a for a in data.accounts}
    org_account = accounts["organizations/5/user:grace@example.com"]
    assert org_account.scope == ORG and org_account.emails == ("grace@example.com",)


def test_a_folder_level_binding_is_reported_with_the_folder_scope_including_sub_folders(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    seed_hierarchy(gcp_fake.state)
    # Configured with the top folder only: its sub-folder's policy is read as well.
    data = gcp_source(folders=[FOLDER]).collect()
    assert set(data.scopes) == {"nested", "deep", FOLDER, SUBFOLDER}
    by_id = {c.credential_id: c for c in data.credentials}
    sub = by_id["folders/11/roles/editor/user:grace@example.com"]
    assert sub.scope == SUBFOLDER and sub.account_id == "folders/11/user:grace@example.com"
    assert by_id["folders/10/roles/browser/user:bob@example.com"].scope == FOLDER
    # The organization above the configured folder is not read.
    assert not any(c.scope == ORG for c in data.credentials)
    assert gcp_fake.state.calls[("rm.GetIamPolicy", ORG)] == 0


def test_collect_for_includes_that_persons_organization_and_folder_bindings(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    seed_hierarchy(gcp_fake.state)
    data = gcp_source(organization=ORG).collect_for(grace())
    assert sorted(c.credential_id for c in data.credentials) == [
        "folders/11/roles/editor/user:grace@example.com",
        "organizations/5/roles/viewer/user:grace@example.com",
    ]
    assert sorted(a.account_id for a in data.accounts) == [
        "folders/11/user:grace@example.com",
        "organizations/5/user:grace@example.com",
    ]


def test_a_failing_folder_policy_is_a_failed_scope_while_projects_still_report(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    seed_hierarchy(gcp_fake.state)
    gcp_fake.state.policy_failures[SUBFOLDER] = "PERMISSION_DENIED"
    data = gcp_source(organization=ORG).collect()
    (failure,) = data.failed_scopes
    assert failure.scope == SUBFOLDER and "getIamPolicy" in failure.error
    assert "PermissionDenied" in failure.error or "Forbidden" in failure.error
    # Never an empty result for it: nothing is reported in the failed scope ...
    assert not any(c.scope == SUBFOLDER for c in data.credentials)
    # ... and every project, including the one below the failed folder, still reports.
    assert "projects/deep/roles/viewer/user:bob@example.com" in {c.credential_id for c in data.credentials}
    assert any(c.scope == ORG for c in data.credentials)
    assert SUBFOLDER in data.scopes


def test_a_failing_organization_policy_is_a_failed_scope(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    seed_hierarchy(gcp_fake.state)
    gcp_fake.state.policy_failures[ORG] = "PERMISSION_DENIED"
    data = gcp_source(organization=ORG).collect()
    assert [f.scope for f in data.failed_scopes] == [ORG]
    assert {c.scope for c in data.credentials} >= {SUBFOLDER, "deep"}


def test_calls_per_organization_and_folder_do_not_grow_with_the_number_of_people(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    state = gcp_fake.state
    state.add_folder("folders/21", parent="organizations/1")
    state.add_folder("folders/22", parent="organizations/2")
    state.add_project("p-small", parent="folders/21")
    state.add_project("p-large", parent="folders/22")
    for i in range(3):
        state.bind("organizations/1", f"roles/role{i}", f"user:person{i}@example.com")
        state.bind("folders/21", f"roles/role{i}", f"user:person{i}@example.com")
    for i in range(400):
        state.bind("organizations/2", f"roles/role{i % 7}", f"user:person{i}@example.com")
        state.bind("folders/22", f"roles/role{i % 7}", f"user:person{i}@example.com")
    small = gcp_source(organization="organizations/1").collect()
    large = gcp_source(organization="organizations/2").collect()
    assert len([c for c in large.credentials if c.scope == "organizations/2"]) == 400
    assert len([c for c in small.credentials if c.scope == "organizations/1"]) == 3
    for resource in ("organizations/1", "organizations/2", "folders/21", "folders/22"):
        assert state.calls[("rm.GetIamPolicy", resource)] == 1, resource
    assert state.calls_for("organizations/1") == state.calls_for("organizations/2")
    assert state.calls_for("folders/21") == state.calls_for("folders/22")


def test_projects_only_configuration_reads_no_organization_or_folder_policy(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    seed_hierarchy(gcp_fake.state)
    data = gcp_source(projects=["deep"]).collect()
    assert data.scopes == ("deep",)
    assert not [k for k in gcp_fake.state.calls if k[1].startswith(("organizations/", "folders/"))]


# --- revoking ----------------------------------------------------------------------------


def test_remove_and_undo_on_an_organization_binding_retry_an_etag_conflict(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    seed_hierarchy(gcp_fake.state)
    state = gcp_fake.state

    def someone_else_grants(org: FakePolicyHolder) -> None:
        org.bindings.append({"role": "roles/browser", "members": ["user:new-hire@example.com"]})

    state.before_set_policy[ORG] = [someone_else_grants]
    revoker = gcp_revoker(organization=ORG)
    target = binding_target(ORG, "roles/viewer", "user:grace@example.com")
    prior = read_state(revoker, "remove_binding", target)
    assert prior.exists and prior.value("resource") == ORG
    result = apply_step(revoker, "remove_binding", target)
    assert result.status == "applied" and result.after and not result.after.exists
    assert state.calls[("rm.SetIamPolicy", ORG)] == 2  # one 409, one success
    assert state.members(ORG, "roles/viewer") == ["group:eng@example.com"]
    assert state.members(ORG, "roles/browser") == [
        "user:new-hire@example.com"
    ]  # the concurrent change survives
    # A second apply writes nothing.
    assert apply_step(revoker, "remove_binding", target).status == "noop"
    assert state.calls[("rm.SetIamPolicy", ORG)] == 2

    state.before_set_policy[ORG] = [someone_else_grants]
    undone = undo_step(revoker, "remove_binding", target, prior)
    assert undone.status == "restored" and undone.after and undone.after.exists
    assert state.calls[("rm.SetIamPolicy", ORG)] == 4  # again one 409, one success
    assert sorted(state.members(ORG, "roles/viewer")) == ["group:eng@example.com", "user:grace@example.com"]
    assert state.members(ORG, "roles/browser") == ["user:new-hire@example.com"] * 2


def test_remove_and_undo_on_a_folder_binding_touch_only_that_folder(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    seed_hierarchy(gcp_fake.state)
    state = gcp_fake.state
    state.bind(FOLDER, "roles/editor", "user:grace@example.com")
    revoker = gcp_revoker(organization=ORG)
    target = binding_target(SUBFOLDER, "roles/editor", "user:grace@example.com")
    prior = read_state(revoker, "remove_binding", target)
    assert apply_step(revoker, "remove_binding", target).status == "applied"
    assert state.members(SUBFOLDER, "roles/editor") == []
    assert state.members(FOLDER, "roles/editor") == ["user:grace@example.com"]
    assert state.calls[("rm.SetIamPolicy", FOLDER)] == 0
    assert undo_step(revoker, "remove_binding", target, prior).status == "restored"
    assert state.members(SUBFOLDER, "roles/editor") == ["user:grace@example.com"]


def test_the_last_organization_admin_is_never_removed(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    seed_hierarchy(gcp_fake.state)
    revoker = gcp_revoker(organization=ORG)
    refused = apply_step(revoker, "remove_binding", binding_target(ORG, ORG_ADMIN, "user:alice@example.com"))
    assert refused.status == "failed"
    assert "last roles/resourcemanager.organizationAdmin member" in (refused.error or "")
    assert gcp_fake.state.members(ORG, ORG_ADMIN) == ["user:alice@example.com"]
    assert gcp_fake.state.calls[("rm.SetIamPolicy", ORG)] == 0
    # With a second admin, the departed one can go.
    gcp_fake.state.bind(ORG, ORG_ADMIN, "user:carol@example.com")
    target = binding_target(ORG, ORG_ADMIN, "user:alice@example.com")
    assert apply_step(revoker, "remove_binding", target).status == "applied"
    assert gcp_fake.state.members(ORG, ORG_ADMIN) == ["user:carol@example.com"]


def test_protected_principals_are_refused_on_organization_bindings_before_any_call(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    seed_hierarchy(gcp_fake.state)
    revoker = gcp_revoker(organization=ORG, protected_principals=["grace@*"])
    gcp_fake.state.reset_calls()
    refused = apply_step(
        revoker, "remove_binding", binding_target(ORG, "roles/viewer", "user:grace@example.com")
    )
    assert refused.status == "failed" and "protected" in (refused.error or "")
    assert sum(gcp_fake.state.calls.values()) == 0
    assert "user:grace@example.com" in gcp_fake.state.members(ORG, "roles/viewer")


def test_a_binding_id_whose_resource_differs_from_the_target_scope_is_refused(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    seed_hierarchy(gcp_fake.state)
    revoker = gcp_revoker(organization=ORG)
    target = binding_target(ORG, "roles/viewer", "user:grace@example.com")
    refused = apply_step(revoker, "remove_binding", replace(target, scope=FOLDER))
    assert refused.status == "failed" and "is not in scope folders/10" in (refused.error or "")
    assert "user:grace@example.com" in gcp_fake.state.members(ORG, "roles/viewer")
