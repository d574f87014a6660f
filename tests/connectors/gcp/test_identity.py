"""Identity (issue 10, item 1): the gcp_iam source reads every account's immutable identity and
the revoker acts only on the account a plan was made for.

A service account's identity is its ``uniqueId``: Google gives an account deleted and
recreated under the same email a new one. A binding's is the principal of the exact member
its credential id names, in exactly the resource (scope) it names. Everything goes through
the real client libraries against the local fakes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from connectors.gcp_iam import GcpIamRevoker, GcpIamSource
from connectors.gcp_iam.demo_fake import FakeServiceAccount
from connectors.gcp_iam.translate import binding_credential_id, principal_uid
from offboard_audit.core.actions import ActionTarget, ResourceState
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.records import CredentialKind, Person, PersonStatus
from offboard_audit.engine.steps import apply_step, read_state, undo_step
from tests.support.gcp import FakeGcp, GcpFakeState

LEFT = datetime(2026, 8, 1, tzinfo=UTC)
CREATED = LEFT + timedelta(days=14)


def grace() -> Person:
    return Person("E1007", "grace@example.com", "Grace", PersonStatus.TERMINATED, LEFT, aliases=("grace",))


def seed(state: GcpFakeState) -> FakeServiceAccount:
    state.add_project("acme-prod")
    state.add_project("acme-data")
    state.bind("acme-prod", "roles/owner", "user:alice@example.com")
    state.bind("acme-prod", "roles/editor", "user:grace@example.com")
    state.bind("acme-prod", "roles/viewer", "group:eng@example.com")
    state.bind("acme-data", "roles/editor", "user:grace@example.com")
    state.bind("acme-data", "roles/storage.admin", "deleted:user:carol@example.com?uid=42")
    ci = state.add_service_account("acme-prod", "ci-deployer", description="owner: grace@example.com")
    state.add_key(ci.email, created=CREATED, last_auth=CREATED + timedelta(days=1))
    return ci


def recreate(state: GcpFakeState, old: FakeServiceAccount, disabled: bool = False) -> FakeServiceAccount:
    """Delete ``old`` and create a new account under the same email, with one key of its own."""
    state.delete_service_account(old.email)
    new = state.add_service_account(
        old.project, old.email.split("@", 1)[0], description=old.description, disabled=disabled
    )
    state.add_key(new.email, created=CREATED + timedelta(days=30), disabled=disabled)
    return new


def user_keys(sa: FakeServiceAccount) -> list[str]:
    return [k.name for k in sa.keys.values() if not k.system_managed]


def binding_target(
    project: str, role: str, member: str, account_project: str | None = None, scope: str | None = None
) -> ActionTarget:
    principal = principal_uid(member)
    return ActionTarget(
        source="gcp",
        system="gcp_iam",
        account_id=f"projects/{account_project or project}/{principal}",
        username=principal,
        credential_id=binding_credential_id(project, role, member),
        credential_kind=CredentialKind.IAM_BINDING,
        scope=project if scope is None else scope,
        account_uid=principal,
    )


def key_target(sa: FakeServiceAccount, key_name: str, uid: str) -> ActionTarget:
    return ActionTarget(
        source="gcp",
        system="gcp_iam",
        account_id=sa.email,
        username=sa.email,
        credential_id=key_name,
        credential_kind=CredentialKind.SERVICE_ACCOUNT_KEY,
        scope=sa.project,
        account_uid=uid,
    )


def sa_target(sa: FakeServiceAccount, uid: str) -> ActionTarget:
    return ActionTarget(
        source="gcp",
        system="gcp_iam",
        account_id=sa.email,
        username=sa.email,
        credential_id=sa.email,
        credential_kind=CredentialKind.ACCOUNT,
        scope=sa.project,
        account_uid=uid,
    )


# --- the fake ------------------------------------------------------------------------------


def test_the_fake_gives_a_service_account_recreated_under_the_same_email_a_new_unique_id(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    old = seed(gcp_fake.state)
    new = recreate(gcp_fake.state, old)
    assert new.email == old.email and new.unique_id != old.unique_id
    # The real client sees the new one under the email, and the old id no longer resolves.
    clients = gcp_source(projects=["acme-prod"]).clients
    got = clients.iam.get_service_account(request={"name": f"projects/-/serviceAccounts/{old.email}"})
    assert got.unique_id == new.unique_id
    assert gcp_fake.state.find_service_account("-", old.unique_id) is None
    with pytest.raises(ValueError, match="already exists"):
        gcp_fake.state.add_service_account("acme-prod", "ci-deployer")


# --- reading -------------------------------------------------------------------------------


def test_bulk_pass_reads_unique_ids_and_binding_principals_as_account_uids(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    ci = seed(gcp_fake.state)
    data = gcp_source(projects=["acme-prod", "acme-data"]).collect()
    uids = {a.account_id: (a.uid, a.scope) for a in data.accounts}
    assert uids[ci.email] == (ci.unique_id, "acme-prod")
    assert uids["projects/acme-prod/user:grace@example.com"] == ("user:grace@example.com", "acme-prod")
    # The same person bound in another project is another account: same principal, other scope.
    assert uids["projects/acme-data/user:grace@example.com"] == ("user:grace@example.com", "acme-data")
    assert uids["projects/acme-prod/group:eng@example.com"] == ("group:eng@example.com", "acme-prod")
    # A principal bound only through its deleted: member keeps its principal as uid; the exact
    # member (with ?uid=) is in the credential id the revoker removes.
    assert uids["projects/acme-data/user:carol@example.com"] == ("user:carol@example.com", "acme-data")
    assert all(a.uid for a in data.accounts)


def test_detail_pass_reads_the_unique_id_of_the_account_whose_keys_it_lists(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    old = seed(gcp_fake.state)
    source = gcp_source(projects=["acme-prod"], key_last_auth=True)
    bulk_ci = next(a for a in source.collect().accounts if a.account_id == old.email)
    assert bulk_ci.uid == old.unique_id
    # Deleted and recreated between the bulk and the detail pass.
    new = recreate(gcp_fake.state, old)
    detail = source.detail([bulk_ci])
    (account,) = detail.accounts
    assert account.uid == new.unique_id
    keys = sorted(c.credential_id for c in detail.credentials if c.kind is CredentialKind.SERVICE_ACCOUNT_KEY)
    assert keys == sorted(user_keys(new))
    assert gcp_fake.state.calls[("iam.GetServiceAccount", "acme-prod")] == 1


def test_collect_for_carries_the_uids_of_that_persons_accounts(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    ci = seed(gcp_fake.state)
    for key_last_auth in (False, True):
        data = gcp_source(projects=["acme-prod", "acme-data"], key_last_auth=key_last_auth).collect_for(
            grace()
        )
        assert sorted((a.account_id, a.uid) for a in data.accounts) == [
            (ci.email, ci.unique_id),
            ("projects/acme-data/user:grace@example.com", "user:grace@example.com"),
            ("projects/acme-prod/user:grace@example.com", "user:grace@example.com"),
        ]


def test_every_read_state_reports_the_identity_it_read(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    ci = seed(gcp_fake.state)
    (key,) = user_keys(ci)
    revoker = gcp_revoker(projects=["acme-prod", "acme-data"])
    assert read_state(revoker, "disable_key", key_target(ci, key, ci.unique_id)).identity == ci.unique_id
    assert read_state(revoker, "delete_key", key_target(ci, key, ci.unique_id)).identity == ci.unique_id
    assert (
        read_state(revoker, "disable_service_account", sa_target(ci, ci.unique_id)).identity == ci.unique_id
    )
    binding = binding_target("acme-prod", "roles/editor", "user:grace@example.com")
    assert read_state(revoker, "remove_binding", binding).identity == "user:grace@example.com"
    deleted = binding_target("acme-data", "roles/storage.admin", "deleted:user:carol@example.com?uid=42")
    assert read_state(revoker, "remove_binding", deleted).identity == "user:carol@example.com"
    gcp_fake.state.delete_service_account(ci.email)
    assert read_state(revoker, "disable_service_account", sa_target(ci, ci.unique_id)).identity is None
    gone = read_state(revoker, "disable_key", key_target(ci, key, ci.unique_id))
    assert gone.identity is None and not gone.exists


# --- revoking ------------------------------------------------------------------------------


def test_key_and_service_account_actions_refuse_a_recreated_account_and_touch_nothing(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    state = gcp_fake.state
    old = seed(state)
    (old_key,) = user_keys(old)
    revoker = gcp_revoker(projects=["acme-prod"])
    new = recreate(state, old)
    (new_key,) = user_keys(new)
    state.reset_calls()
    for action, target in (
        ("disable_key", key_target(old, old_key, old.unique_id)),
        ("delete_key", key_target(old, old_key, old.unique_id)),
        # A key name that names the new account's key, planned for the old account.
        ("disable_key", key_target(old, new_key, old.unique_id)),
        ("delete_key", key_target(old, new_key, old.unique_id)),
        ("disable_service_account", sa_target(old, old.unique_id)),
    ):
        step = apply_step(revoker, action, target)
        assert step.status == "target-changed" and f"now has identity {new.unique_id}" in (step.error or "")
    writes = [m for (m, _p) in state.calls if not m.startswith(("iam.Get", "iam.List"))]
    assert writes == []
    assert not new.disabled and not new.keys[new_key.rsplit("/", 1)[1]].disabled


def test_undo_after_the_account_was_recreated_is_refused_and_leaves_the_new_account_alone(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    state = gcp_fake.state
    old = seed(state)
    revoker = gcp_revoker(projects=["acme-prod"])
    target = sa_target(old, old.unique_id)
    prior = read_state(revoker, "disable_service_account", target)
    assert apply_step(revoker, "disable_service_account", target).status == "applied"
    # Deleted and recreated, disabled, by someone else: undoing must not enable the new account.
    new = recreate(state, old, disabled=True)
    undone = undo_step(revoker, "disable_service_account", target, prior)
    assert undone.status == "target-changed" and "name was reused" in (undone.error or "")
    assert new.disabled
    assert state.calls[("iam.EnableServiceAccount", "acme-prod")] == 0


def test_a_recreate_between_the_identity_check_and_the_write_cannot_reach_the_new_account(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    state = gcp_fake.state
    old = seed(state)
    revoker = gcp_revoker(projects=["acme-prod"], timeout=2.0)
    replaced: list[FakeServiceAccount] = []
    # Runs inside the DisableServiceAccount call, after the engine checked the identity.
    state.before_iam_call["iam.DisableServiceAccount"] = [lambda: replaced.append(recreate(state, old))]
    step = apply_step(revoker, "disable_service_account", sa_target(old, old.unique_id))
    assert step.status == "failed" and "NotFound" in (step.error or "")
    (new,) = replaced
    assert not new.disabled


@pytest.mark.parametrize(
    "target",
    [
        # No scope at all: the credential id alone must never pick the resource.
        binding_target(
            "acme-data", "roles/editor", "user:grace@example.com", account_project="acme-prod", scope=""
        ),
        # Scope and credential name project B; the account is grace's account in project A.
        binding_target("acme-data", "roles/editor", "user:grace@example.com", account_project="acme-prod"),
    ],
    ids=["no-scope", "account-in-a"],
)
def test_a_binding_action_planned_for_project_a_never_touches_the_member_in_project_b(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker], target: ActionTarget
) -> None:
    state = gcp_fake.state
    seed(state)
    revoker = gcp_revoker(projects=["acme-prod", "acme-data"])
    state.reset_calls()
    spec = revoker.specs["remove_binding"]
    with pytest.raises(RevokeError, match=r"is not in scope|does not belong to account"):
        spec.read(target)
    with pytest.raises(RevokeError, match=r"is not in scope|does not belong to account"):
        spec.change(target, ResourceState(exists=True, active=True, identity=target.account_uid))
    step = apply_step(revoker, "remove_binding", target)
    assert step.status == "failed" and (
        "is not in scope" in (step.error or "") or "does not belong" in (step.error or "")
    )
    assert state.members("acme-data", "roles/editor") == ["user:grace@example.com"]
    assert state.members("acme-prod", "roles/editor") == ["user:grace@example.com"]
    assert sum(state.calls.values()) == 0
    # The action planned for project A removes the member there, and only there.
    planned = binding_target("acme-prod", "roles/editor", "user:grace@example.com")
    assert apply_step(revoker, "remove_binding", planned).status == "applied"
    assert state.members("acme-prod", "roles/editor") == []
    assert state.members("acme-data", "roles/editor") == ["user:grace@example.com"]


def test_a_binding_whose_recorded_identity_is_another_principal_is_refused_before_any_write(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    state = gcp_fake.state
    seed(state)
    revoker = gcp_revoker(projects=["acme-prod"])
    target = binding_target("acme-prod", "roles/editor", "user:grace@example.com")
    for uid in ("user:bob@example.com", ""):
        assert (
            apply_step(revoker, "remove_binding", replace(target, account_uid=uid)).status == "target-changed"
        )
    assert state.members("acme-prod", "roles/editor") == ["user:grace@example.com"]
    assert state.calls[("rm.SetIamPolicy", "acme-prod")] == 0


def test_a_removed_binding_keeps_its_identity_so_removal_verifies_and_undo_restores(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    state = gcp_fake.state
    seed(state)
    revoker = gcp_revoker(projects=["acme-data"])
    # carol's only binding in acme-data: after the removal no member of hers is left there.
    target = binding_target("acme-data", "roles/storage.admin", "deleted:user:carol@example.com?uid=42")
    prior = read_state(revoker, "remove_binding", target)
    assert apply_step(revoker, "remove_binding", target).status == "applied"
    after = read_state(revoker, "remove_binding", target)
    assert not after.exists and after.identity == "user:carol@example.com"
    assert undo_step(revoker, "remove_binding", target, prior).status == "restored"
    assert state.members("acme-data", "roles/storage.admin") == ["deleted:user:carol@example.com?uid=42"]
