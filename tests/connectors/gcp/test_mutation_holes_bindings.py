"""remove_binding, pinned exactly: the state the engine sees (``state_of``), the policy each
revoke and undo writes (or does not write), and the guard's refusals with their messages.

Written against mutation survivors of ``connectors/gcp_iam/actions.py``: every expected state
and policy is spelled out here, not derived from the code under test. The real client
libraries talk to the in-process fake Resource Manager (``tests/support/gcp.py``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest

from connectors.gcp_iam import GcpIamRevoker
from offboard_audit.core.actions import ActionTarget, ResourceState
from offboard_audit.core.errors import RevokeError
from offboard_audit.engine.steps import apply_step, read_state, undo_step
from tests.support.gcp import FakeGcp, planned_binding_target

EXPRESSION = 'request.time < timestamp("2027-01-01T00:00:00Z")'
DEPLOYER = "projects/acme-prod/roles/deployer"
ORG = "organizations/5"
FOLDER = "folders/10"


def etag(raw: bytes) -> str:
    """The fake's etag ``etag-<resource>-<revision>`` (each seeding grant is a revision) as read."""
    return base64.b64encode(raw).decode("ascii")


# acme-prod after its creation (revision 1) and the fixture's three grants.
ACME_ETAG = etag(b"etag-acme-prod-4")


def target_for(scope: str, role: str, member: str, expression: str = "") -> ActionTarget:
    """The binding credential the audit would plan for: account = resource/principal."""
    return planned_binding_target(scope, role, member, expression)


@pytest.fixture
def acme(gcp_fake: FakeGcp) -> FakeGcp:
    state = gcp_fake.state
    state.add_project("acme-prod")
    state.bind("acme-prod", "roles/owner", "user:alice@example.com")
    state.bind("acme-prod", "roles/editor", "user:grace@example.com")
    state.bind("acme-prod", "roles/editor", "user:bob@example.com")
    return gcp_fake


def policy(fake: FakeGcp, resource: str) -> dict[str, Any]:
    holder = fake.state.policy_holder(resource)
    return {"version": holder.version, "bindings": holder.bindings}


def revision(fake: FakeGcp, resource: str) -> int:
    """Bumped by every write (and every seeding grant): the etag's counter."""
    return fake.state.policy_holder(resource).revision


# --- state_of: exactly what the engine reads ---------------------------------------------------


def test_state_of_a_bound_project_member_names_project_role_member_and_etag(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    revoker = gcp_revoker(projects=["acme-prod"])
    target = target_for("acme-prod", "roles/editor", "user:grace@example.com")
    assert read_state(revoker, "remove_binding", target) == ResourceState(
        exists=True,
        active=True,
        data=(
            ("project", "acme-prod"),
            ("role", "roles/editor"),
            ("member", "user:grace@example.com"),
            ("etag", ACME_ETAG),
        ),
        identity="user:grace@example.com",
    )


def test_state_of_an_unbound_member_is_exactly_false_not_none(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    revoker = gcp_revoker(projects=["acme-prod"])
    target = target_for("acme-prod", "roles/viewer", "user:grace@example.com")
    state = read_state(revoker, "remove_binding", target)
    assert state.exists is False and state.active is False
    assert state == ResourceState(
        exists=False,
        active=False,
        data=(
            ("project", "acme-prod"),
            ("role", "roles/viewer"),
            ("member", "user:grace@example.com"),
            ("etag", ACME_ETAG),
        ),
        identity="user:grace@example.com",
    )


@pytest.mark.parametrize(
    ("scope", "expected_etag"),
    [(ORG, etag(b"etag-organizations/5-2")), (FOLDER, etag(b"etag-folders/10-2"))],
    ids=["organization", "folder"],
)
def test_state_of_an_organization_or_folder_binding_names_the_resource_not_a_project(
    gcp_fake: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker], scope: str, expected_etag: str
) -> None:
    gcp_fake.state.add_folder(FOLDER, parent=ORG)
    gcp_fake.state.bind(scope, "roles/viewer", "user:grace@example.com")
    revoker = gcp_revoker(organization=ORG)
    state = read_state(revoker, "remove_binding", target_for(scope, "roles/viewer", "user:grace@example.com"))
    assert state == ResourceState(
        exists=True,
        active=True,
        data=(
            ("resource", scope),
            ("role", "roles/viewer"),
            ("member", "user:grace@example.com"),
            ("etag", expected_etag),
        ),
        identity="user:grace@example.com",
    )


def test_state_of_a_conditional_binding_keeps_the_resource_role_member_etag_and_adds_the_condition(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    condition = {"title": "until-2027", "description": "temporary access", "expression": EXPRESSION}
    acme.state.bind("acme-prod", DEPLOYER, "user:grace@example.com", condition=condition)
    revoker = gcp_revoker(projects=["acme-prod"])
    target = target_for("acme-prod", DEPLOYER, "user:grace@example.com", EXPRESSION)
    assert read_state(revoker, "remove_binding", target) == ResourceState(
        exists=True,
        active=True,
        data=(
            ("project", "acme-prod"),
            ("role", DEPLOYER),
            ("member", "user:grace@example.com"),
            ("etag", etag(b"etag-acme-prod-5")),  # one more grant
            ("condition_title", "until-2027"),
            ("condition_description", "temporary access"),
            ("condition_expression", EXPRESSION),
        ),
        identity="user:grace@example.com",
    )


# --- revoke / unrevoke: nothing written when there is nothing to change ---------------------


def test_revoke_writes_nothing_when_the_member_is_already_gone_at_write_time(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    """The engine read grace as bound; someone removed her before the read-modify-write: the
    policy (and its etag) must be left alone, not rewritten as it is."""
    revoker = gcp_revoker(projects=["acme-prod"])
    target = target_for("acme-prod", "roles/editor", "user:grace@example.com")
    before = read_state(revoker, "remove_binding", target)
    assert before.active
    acme.state.projects["acme-prod"].bindings[1]["members"].remove("user:grace@example.com")
    acme.state.reset_calls()
    unwritten = revision(acme, "acme-prod")
    revoker.specs["remove_binding"].change(target, before)
    assert acme.state.calls[("rm.SetIamPolicy", "acme-prod")] == 0
    assert revision(acme, "acme-prod") == unwritten
    assert policy(acme, "acme-prod") == {
        "version": 1,
        "bindings": [
            {"role": "roles/owner", "members": ["user:alice@example.com"]},
            {"role": "roles/editor", "members": ["user:bob@example.com"]},
        ],
    }


def test_undo_writes_nothing_when_the_member_is_already_back_at_write_time(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    """The engine read grace as removed; someone re-granted her before the undo's write: no
    second copy of the member and no rewrite of the policy."""
    revoker = gcp_revoker(projects=["acme-prod"])
    target = target_for("acme-prod", "roles/editor", "user:grace@example.com")
    prior = read_state(revoker, "remove_binding", target)
    assert apply_step(revoker, "remove_binding", target).status == "applied"
    current = read_state(revoker, "remove_binding", target)
    assert not current.active
    acme.state.bind("acme-prod", "roles/editor", "user:grace@example.com")
    acme.state.reset_calls()
    unwritten = revision(acme, "acme-prod")
    restore = revoker.specs["remove_binding"].restore
    assert restore is not None
    restore(target, current, prior)
    assert acme.state.calls[("rm.SetIamPolicy", "acme-prod")] == 0
    assert revision(acme, "acme-prod") == unwritten
    assert policy(acme, "acme-prod") == {
        "version": 1,
        "bindings": [
            {"role": "roles/owner", "members": ["user:alice@example.com"]},
            {"role": "roles/editor", "members": ["user:bob@example.com", "user:grace@example.com"]},
        ],
    }


# --- unrevoke of a conditional binding: the exact condition and policy version ----------------


@pytest.mark.parametrize(
    "condition",
    [
        {"title": "until-2027", "description": "", "expression": EXPRESSION},
        {"title": "", "description": "temporary access", "expression": EXPRESSION},
    ],
    ids=["no-description", "no-title"],
)
def test_undo_restores_a_condition_without_title_or_description_exactly_inventing_nothing(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker], condition: dict[str, str]
) -> None:
    acme.state.bind("acme-prod", DEPLOYER, "user:grace@example.com", condition=condition)
    revoker = gcp_revoker(projects=["acme-prod"])
    target = target_for("acme-prod", DEPLOYER, "user:grace@example.com", EXPRESSION)
    prior = read_state(revoker, "remove_binding", target)
    assert apply_step(revoker, "remove_binding", target).status == "applied"
    assert undo_step(revoker, "remove_binding", target, prior).status == "restored"
    assert policy(acme, "acme-prod") == {
        "version": 3,
        "bindings": [
            {"role": "roles/owner", "members": ["user:alice@example.com"]},
            {"role": "roles/editor", "members": ["user:grace@example.com", "user:bob@example.com"]},
            {"role": DEPLOYER, "members": ["user:grace@example.com"], "condition": condition},
        ],
    }


def test_undo_of_a_conditional_binding_writes_policy_version_3_even_onto_a_version_1_policy(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    condition = {"title": "until-2027", "description": "temporary access", "expression": EXPRESSION}
    acme.state.bind("acme-prod", DEPLOYER, "user:grace@example.com", condition=condition)
    revoker = gcp_revoker(projects=["acme-prod"])
    target = target_for("acme-prod", DEPLOYER, "user:grace@example.com", EXPRESSION)
    prior = read_state(revoker, "remove_binding", target)
    assert apply_step(revoker, "remove_binding", target).status == "applied"
    # No condition is left: someone rewrites the policy as version 1 before the undo.
    acme.state.projects["acme-prod"].version = 1
    assert undo_step(revoker, "remove_binding", target, prior).status == "restored"
    assert policy(acme, "acme-prod") == {
        "version": 3,
        "bindings": [
            {"role": "roles/owner", "members": ["user:alice@example.com"]},
            {"role": "roles/editor", "members": ["user:grace@example.com", "user:bob@example.com"]},
            {"role": DEPLOYER, "members": ["user:grace@example.com"], "condition": condition},
        ],
    }


# --- guard: which names a protected pattern is matched against, and the refusal message ---------


@pytest.mark.parametrize(
    ("pattern", "principal"),
    [
        # The binding's account id (resource/principal): everyone bound in acme-prod.
        ("projects/acme-prod/*", "projects/acme-prod/user:bob@example.com"),
        # The policy member, type prefix included.
        ("user:bob@*", "user:bob@example.com"),
        # The member's bare email.
        ("bob@*", "bob@example.com"),
    ],
    ids=["account-id", "member", "email"],
)
def test_remove_binding_refuses_a_protected_account_member_or_email_before_any_call_naming_the_action(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker], pattern: str, principal: str
) -> None:
    revoker = gcp_revoker(projects=["acme-prod"], protected_principals=[pattern])
    target = target_for("acme-prod", "roles/editor", "user:bob@example.com")
    acme.state.reset_calls()
    expected = f"{principal} is protected (matches {pattern!r}): refusing remove_binding"
    spec = revoker.specs["remove_binding"]
    with pytest.raises(RevokeError) as refused:
        spec.read(target)
    assert str(refused.value) == expected
    with pytest.raises(RevokeError) as refused:
        spec.change(target, ResourceState(exists=True, active=True, identity="user:bob@example.com"))
    assert str(refused.value) == expected
    result = apply_step(revoker, "remove_binding", target)
    assert result.status == "failed" and expected in (result.error or "")
    assert sum(acme.state.calls.values()) == 0
    assert acme.state.members("acme-prod", "roles/editor") == [
        "user:grace@example.com",
        "user:bob@example.com",
    ]
