"""``disable_service_account``'s read (``DisableServiceAccount.read_object``), pinned exactly.

That read decides "already disabled" (noop), "disabled and verified" (applied) and "gone"
(the account no longer exists), and the state it returns is what the audit log records
(``state_json``) and what an undo compares with. Every expected state is written out in full
here: ``exists``, ``active``, every ``data`` pair (the account's name as the revoker named it,
with ``-`` for a target without a project, and ``disabled`` as "true"/"false") and the
identity. Real client libraries against the in-process fake GCP servers.
"""

from __future__ import annotations

from collections.abc import Callable

from connectors.gcp_iam import GcpIamRevoker
from offboard_audit.core.actions import ActionTarget, ResourceState, state_json
from offboard_audit.engine.steps import apply_step, read_state, undo_step
from tests.support import gcp as gcp_support
from tests.support.gcp import FakeGcp

ACTION = "disable_service_account"
EMAIL = "ci-deployer@acme-prod.iam.gserviceaccount.com"


def sa_target(uid: str, project: str = "acme-prod") -> ActionTarget:
    return gcp_support.sa_target(EMAIL, uid, project)


def enabled(uid: str, name: str = f"projects/acme-prod/serviceAccounts/{EMAIL}") -> ResourceState:
    return ResourceState(exists=True, active=True, data=(("name", name), ("disabled", "false")), identity=uid)


def disabled(uid: str, name: str = f"projects/acme-prod/serviceAccounts/{EMAIL}") -> ResourceState:
    return ResourceState(exists=True, active=False, data=(("name", name), ("disabled", "true")), identity=uid)


def gone(name: str = f"projects/acme-prod/serviceAccounts/{EMAIL}") -> ResourceState:
    return ResourceState(exists=False, active=False, data=(("name", name),), identity=None)


def test_read_of_an_enabled_account_is_active_with_its_project_name_and_disabled_false(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    gcp_fake.state.add_project("acme-prod")
    ci = gcp_fake.state.add_service_account("acme-prod", "ci-deployer")
    assert ci.email == EMAIL
    revoker = gcp_revoker(projects=["acme-prod"])
    state = read_state(revoker, ACTION, sa_target(ci.unique_id))
    assert state == ResourceState(
        exists=True,
        active=True,
        data=(
            ("name", "projects/acme-prod/serviceAccounts/ci-deployer@acme-prod.iam.gserviceaccount.com"),
            ("disabled", "false"),
        ),
        identity=ci.unique_id,
    )
    assert state.value("name") == f"projects/acme-prod/serviceAccounts/{EMAIL}"
    assert state.value("disabled") == "false"


def test_read_of_a_disabled_account_is_inactive_with_disabled_true(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    gcp_fake.state.add_project("acme-prod")
    ci = gcp_fake.state.add_service_account("acme-prod", "ci-deployer", disabled=True)
    revoker = gcp_revoker(projects=["acme-prod"])
    state = read_state(revoker, ACTION, sa_target(ci.unique_id))
    assert state == ResourceState(
        exists=True,
        active=False,
        data=(
            ("name", "projects/acme-prod/serviceAccounts/ci-deployer@acme-prod.iam.gserviceaccount.com"),
            ("disabled", "true"),
        ),
        identity=ci.unique_id,
    )
    assert state.value("disabled") == "true"


def test_read_of_a_deleted_account_is_gone_not_active_and_carries_only_its_name(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    gcp_fake.state.add_project("acme-prod")
    ci = gcp_fake.state.add_service_account("acme-prod", "ci-deployer")
    gcp_fake.state.delete_service_account(ci.email)
    revoker = gcp_revoker(projects=["acme-prod"])
    state = read_state(revoker, ACTION, sa_target(ci.unique_id))
    assert state == ResourceState(
        exists=False,
        active=False,
        data=(("name", "projects/acme-prod/serviceAccounts/ci-deployer@acme-prod.iam.gserviceaccount.com"),),
        identity=None,
    )
    assert state.exists is False and state.active is False
    assert state.value("name") == f"projects/acme-prod/serviceAccounts/{EMAIL}"
    assert state.value("disabled") is None


def test_read_without_a_project_names_the_account_under_dash_whether_present_or_gone(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    gcp_fake.state.add_project("acme-prod")
    ci = gcp_fake.state.add_service_account("acme-prod", "ci-deployer")
    revoker = gcp_revoker(projects=["acme-prod"])
    target = sa_target(ci.unique_id, project="")
    dash_name = "projects/-/serviceAccounts/ci-deployer@acme-prod.iam.gserviceaccount.com"
    assert read_state(revoker, ACTION, target) == ResourceState(
        exists=True,
        active=True,
        data=(("name", dash_name), ("disabled", "false")),
        identity=ci.unique_id,
    )
    gcp_fake.state.delete_service_account(ci.email)
    assert read_state(revoker, ACTION, target) == ResourceState(
        exists=False, active=False, data=(("name", dash_name),), identity=None
    )


def test_apply_records_the_enabled_state_before_and_the_disabled_state_after(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    gcp_fake.state.add_project("acme-prod")
    ci = gcp_fake.state.add_service_account("acme-prod", "ci-deployer")
    revoker = gcp_revoker(projects=["acme-prod"])
    intents: list[ResourceState] = []
    step = apply_step(revoker, ACTION, sa_target(ci.unique_id), on_intent=intents.append)
    assert step.status == "applied" and step.error is None
    assert step.before == enabled(ci.unique_id)
    assert step.after == disabled(ci.unique_id)
    assert ci.disabled
    # What the intent event (the audit log) records as the state before.
    assert intents == [enabled(ci.unique_id)]
    assert state_json(intents[0]) == {
        "exists": True,
        "active": True,
        "data": {
            "name": "projects/acme-prod/serviceAccounts/ci-deployer@acme-prod.iam.gserviceaccount.com",
            "disabled": "false",
        },
        "identity": ci.unique_id,
    }
    assert state_json(step.after) == {
        "exists": True,
        "active": False,
        "data": {
            "name": "projects/acme-prod/serviceAccounts/ci-deployer@acme-prod.iam.gserviceaccount.com",
            "disabled": "true",
        },
        "identity": ci.unique_id,
    }


def test_apply_to_an_already_disabled_account_is_a_noop_already_revoked_without_a_write(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    gcp_fake.state.add_project("acme-prod")
    ci = gcp_fake.state.add_service_account("acme-prod", "ci-deployer", disabled=True)
    revoker = gcp_revoker(projects=["acme-prod"])
    gcp_fake.state.reset_calls()
    step = apply_step(revoker, ACTION, sa_target(ci.unique_id))
    assert step.status == "noop" and step.message == "already revoked"
    assert step.before == disabled(ci.unique_id) and step.after == disabled(ci.unique_id)
    assert gcp_fake.state.calls[("iam.DisableServiceAccount", "acme-prod")] == 0


def test_apply_to_a_deleted_account_is_target_changed_and_records_the_gone_state(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    gcp_fake.state.add_project("acme-prod")
    ci = gcp_fake.state.add_service_account("acme-prod", "ci-deployer")
    gcp_fake.state.delete_service_account(ci.email)
    revoker = gcp_revoker(projects=["acme-prod"])
    step = apply_step(revoker, ACTION, sa_target(ci.unique_id))
    assert step.status == "target-changed"
    assert step.error == f"gcp_iam account '{EMAIL}' (identity {ci.unique_id}) no longer exists"
    assert step.before == gone()
    assert state_json(step.before) == {
        "exists": False,
        "active": False,
        "data": {"name": "projects/acme-prod/serviceAccounts/ci-deployer@acme-prod.iam.gserviceaccount.com"},
        "identity": None,
    }


def test_undo_reads_the_disabled_state_then_verifies_the_exact_prior_enabled_state(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    gcp_fake.state.add_project("acme-prod")
    ci = gcp_fake.state.add_service_account("acme-prod", "ci-deployer")
    revoker = gcp_revoker(projects=["acme-prod"])
    target = sa_target(ci.unique_id)
    prior = read_state(revoker, ACTION, target)
    assert prior == enabled(ci.unique_id)
    assert apply_step(revoker, ACTION, target).status == "applied"
    undone = undo_step(revoker, ACTION, target, prior)
    assert undone.status == "restored" and undone.error is None
    assert undone.before == disabled(ci.unique_id)
    assert undone.after == enabled(ci.unique_id) == prior
    assert not ci.disabled
