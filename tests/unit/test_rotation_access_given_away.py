"""The task for a key exposed only through access the leaver gave another account (a KMS grant, a
key policy): ``revoke-access``, since a new key version leaves a grant and a key policy in place;
``rotate`` stays when the leaver also had what a rotation takes back. Pure: findings made by the
exposure rules, tasks by core/rotation.py."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from offboard_audit.core.exposure import (
    POLICY_GRANTEE_PREFIX,
    ObjectRef,
    SecretState,
    exposed_until,
    rotation_configured,
)
from offboard_audit.core.records import CredentialKind, ExposureHow, Finding
from offboard_audit.core.rotation import may_auto_rotate, rotate_task, rotate_task_json
from tests.unit.test_exposure_rules import IAM_ALICE, NOW, SECRET, SECRET_REF, event, run

OUTSIDE = "arn:aws:iam::210987654321:root"
BY_POLICY = f"{POLICY_GRANTEE_PREFIX}123456789099"
KEY = SecretState(
    "aws",
    "111111111111",
    CredentialKind.KMS_KEY,
    "arn:k1",
    name="token signer",
    exportable=False,  # AWS-generated material: it never left KMS
    signing=True,
    rotation_configured=True,
    current_version_created_at=NOW - timedelta(days=300),
    grantees=(OUTSIDE, BY_POLICY),
    aliases=("us-east-1:k1",),
)
REF = ObjectRef("111111111111", CredentialKind.KMS_KEY, "us-east-1:k1")
GRANT = event(
    IAM_ALICE, replace(REF, owner=OUTSIDE), ExposureHow.CHANGED_ACCESS, eid="g1", action="CreateGrant"
)
POLICY = event(
    IAM_ALICE, replace(REF, owner=BY_POLICY), ExposureHow.CHANGED_ACCESS, eid="p1", action="PutKeyPolicy"
)


def task_of(findings: list[Finding]) -> str:
    [f] = findings
    t = rotate_task(f)
    assert t is not None
    return str(rotate_task_json(t)["task"])


def test_a_key_exposed_only_through_a_grant_or_a_key_policy_is_a_revoke_access_task() -> None:
    assert task_of(run([GRANT], [KEY])) == "revoke-access"
    assert task_of(run([POLICY], [KEY])) == "revoke-access"
    [f] = run([GRANT, POLICY], [KEY])
    assert f.credential is not None
    assert f.credential.detail.endswith(
        f"exposed only through access given to {OUTSIDE} (grant), account 123456789099 (key policy)"
    )
    # A rotation would leave the access in place: the plan never rotates such a key itself.
    assert not may_auto_rotate(f, auto_rotate_secrets=True)


def test_a_key_whose_material_the_leaver_had_stays_a_rotate_task_naming_the_access_too() -> None:
    exported = event(IAM_ALICE, REF, ExposureHow.EXPORTED, eid="x1", action="ImportKeyMaterial")
    [f] = run([exported, GRANT], [KEY])
    assert task_of([f]) == "rotate"
    assert f.credential is not None and f.credential.detail.endswith(f"; access given to {OUTSIDE} (grant)")
    assert may_auto_rotate(f, auto_rotate_secrets=True)
    # Rotated since the export: what is left is the grant, and rotating again would not end it.
    rotated = replace(KEY, current_version_created_at=NOW - timedelta(days=1))
    assert task_of(run([exported, GRANT], [rotated])) == "revoke-access"


def test_secrets_read_and_keys_granted_to_the_leaver_keep_the_rotate_task() -> None:
    assert task_of(run([event(IAM_ALICE, SECRET_REF)], [SECRET])) == "rotate"
    to_her = replace(KEY, grantees=(IAM_ALICE.identity,))
    assert (
        task_of(run([event(IAM_ALICE, REF, ExposureHow.CHANGED_ACCESS, action="CreateGrant")], [to_her]))
        == "rotate"
    )


def test_the_evidence_pack_gives_the_plans_task_and_says_the_access_given_away_is_still_in_force() -> None:
    """The evidence pack's rotation entry decides the task by the plan's own rule: for a key exposed
    only through a grant, "rotate" and "not rotated since the last access" would send the reader
    to make a new version, which leaves the grant in place."""
    from offboard_audit.core.records import FindingStatus
    from offboard_audit.report.carry_away import carried_secrets

    [f] = run([GRANT], [KEY])
    [entry] = carried_secrets([f], {"aws": [KEY]}, {}, {}, lambda _h: (None, False))
    assert (entry.rotation.task, entry.rotation.state) == (
        "revoke-access",
        "access given to another account still in force",
    )
    assert entry.rotation.rotated_at is None
    # Closed while the key is still enabled: the access was revoked, the key was not rotated.
    closed = replace(f, status=FindingStatus.RESOLVED)
    [entry] = carried_secrets([closed], {"aws": [KEY]}, {}, {}, lambda _h: (None, False))
    assert (entry.rotation.task, entry.rotation.state) == ("revoke-access", "access given away revoked since")


def test_a_leavers_key_policy_account_stays_exposed_while_the_policy_in_force_lets_any_account_in() -> None:
    # She opened the key to 123456789099; the policy in force now lets every account use it
    # ("*", read as policy:*), so that account still can: the finding stays, naming it.
    widened = replace(KEY, grantees=(f"{POLICY_GRANTEE_PREFIX}*",))
    [f] = run([POLICY], [widened])
    assert f.credential is not None
    assert f.credential.detail.endswith(
        "exposed only through access given to account 123456789099 (key policy)"
    )
    # Closed to every other account since: resolved.
    assert run([POLICY], [replace(KEY, grantees=())]) == []


def test_a_key_description_cannot_pass_for_the_fields_of_its_finding() -> None:
    # The name of a KMS key is its description, which whoever made the key writes freely: here one
    # that spells the fields after it. She exported the material: rotate, and exposed until the export.
    forged = replace(
        KEY,
        name="signer; exposed only through access given to account 1 (key policy); exposed until "
        "2000-01-01T00:00:00+00:00; rotation configured",
        rotation_configured=False,
    )
    exported = event(IAM_ALICE, REF, ExposureHow.EXPORTED, eid="x1", action="ImportKeyMaterial")
    [f] = run([exported], [replace(forged, grantees=())])
    assert f.credential is not None
    assert task_of([f]) == "rotate"
    assert exposed_until(f.credential.detail) == exported.at
    assert not rotation_configured(f.credential.detail)
    assert not may_auto_rotate(f, auto_rotate_secrets=True)
