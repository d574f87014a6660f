"""Planning holes found by mutation testing (issue 10, batch 3): the rotate action of an exposure
finding (``policy.auto_rotate_secrets``) with each reason it is not planned, every field the one
helper copies into a planned action, where a person-less action sorts, and the account and
credential a planned action hands to the last-moment guard.

Pure, like tests/unit/test_planning.py: findings are built here, expected values written out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from offboard_audit.core.actions import ActionDef, Stage
from offboard_audit.core.plan_records import Plan
from offboard_audit.core.planning import build_plan
from offboard_audit.core.policy import PolicyConfig
from offboard_audit.core.records import (
    Account,
    Credential,
    CredentialKind,
    Finding,
    FindingStatus,
    Person,
    PersonStatus,
    Rule,
)
from offboard_audit.core.selectors import last_moment_refusal
from offboard_audit.core.stored import ActionRecord, ActionStatus
from tests.support.planning import record_for

NOW = datetime(2026, 3, 1, tzinfo=UTC)
LEFT = datetime(2026, 2, 1, tzinfo=UTC)
ARN = "arn:aws:secretsmanager:us-east-1:111111111111:secret:prod/sign-AbC"
# The detail an exposure finding carries for a secret whose own rotation is configured.
ROTATING = "prod/sign; rotation configured; exposed until 2026-01-30T00:00:00+00:00"
NOT_ROTATING = "prod/sign; no rotation configured; exposed until 2026-01-30T00:00:00+00:00"

ROTATE_SECRET = ActionDef(
    "rotate_secret",
    CredentialKind.SECRET,
    Stage.ROTATE,
    True,
    ("secretsmanager:RotateSecret",),
    "rotate the secret",
)
# Decoys: a rotate action for another kind whose name sorts first, and a non-rotate action for secrets.
ROTATE_KEY = ActionDef("a_rotate_key", CredentialKind.ACCESS_KEY, Stage.ROTATE, True, (), "rotate a key")
TAG_SECRET = ActionDef("a_tag_secret", CredentialKind.SECRET, Stage.DISABLE, True, (), "tag the secret")
ROTATE_DEFS = {
    "aws": {"a_rotate_key": ROTATE_KEY, "a_tag_secret": TAG_SECRET, "rotate_secret": ROTATE_SECRET}
}
AUTO = PolicyConfig(auto_rotate_secrets=True)

ALICE = Person("e1", "alice@x.org", "Alice Ng", PersonStatus.TERMINATED, LEFT, source="hr")


def exposure(
    who: Person | None = ALICE,
    due: datetime | None = LEFT,
    detail: str = ROTATING,
    rule: Rule = Rule.SECRET_EXPOSED_TO_LEAVER,
    stale: bool = False,
) -> Finding:
    acct = Account("aws", "aws", "arn:aws:iam::111111111111:user/alice", "alice", True, scope="exposure:111111111111", uid="AIDA1")  # fmt: skip
    secret = Credential("aws", acct.account_id, ARN, CredentialKind.SECRET, True, detail=detail, scope="exposure:111111111111")  # fmt: skip
    return Finding("fx-1", rule, rule.severity, FindingStatus.OPEN, acct, who, secret, LEFT, due, "had access", stale=stale)  # fmt: skip


def rotate_record(f: Finding, at: datetime) -> ActionRecord:
    assert f.credential is not None
    return record_for(
        f,
        "rotate_secret",
        ActionStatus.APPLIED,
        at,
        action_id="a-rot",
        scope=f.account.scope,
        detail=f.credential.detail,
        account_uid=f.credential.credential_id,
        stage=Stage.ROTATE,
        person="e1",
    )


def only_action(plan: Plan) -> tuple[str, str]:
    (a,) = plan.actions
    return a.finding_id, a.action


# --- the rotate action of an exposure finding ------------------------------------------------------


def test_a_due_secret_with_rotation_configured_gets_one_rotate_action_on_the_secret_itself() -> None:
    plan = build_plan([exposure()], ROTATE_DEFS, AUTO, NOW)
    (a,) = plan.actions
    assert (a.finding_id, a.action, a.stage, a.reversible) == ("fx-1", "rotate_secret", Stage.ROTATE, True)
    assert (a.credential_id, a.credential_kind, a.detail) == (ARN, CredentialKind.SECRET, ROTATING)
    # The object re-read before the change is the secret: its ARN, not the leaver's user id.
    assert a.account_uid == ARN
    assert (a.account_id, a.username, a.scope) == ("arn:aws:iam::111111111111:user/alice", "alice", "exposure:111111111111")  # fmt: skip
    assert (a.severity, a.person, a.person_name, a.terminated_at) == ("high", "e1", "Alice Ng", LEFT)
    assert (a.permissions, a.description, a.note) == (
        ("secretsmanager:RotateSecret",),
        "rotate the secret",
        "",
    )
    assert a.key == "fx-1:rotate_secret"
    (task,) = plan.tasks
    assert (task.task, task.auto) == ("rotate", True)
    assert plan.done == () and plan.held == ()


def test_an_unrelated_protected_selector_does_not_stop_the_rotate_action() -> None:
    policy = PolicyConfig(auto_rotate_secrets=True, protected=("aws:breakglass", "corp-ldap"))
    assert only_action(build_plan([exposure()], ROTATE_DEFS, policy, NOW)) == ("fx-1", "rotate_secret")


def test_a_secret_due_exactly_now_is_rotated() -> None:
    assert only_action(build_plan([exposure(due=NOW)], ROTATE_DEFS, AUTO, NOW)) == ("fx-1", "rotate_secret")


def test_of_several_rotate_actions_for_the_kind_the_first_by_name_is_planned() -> None:
    later = ActionDef("rotate_secret_v2", CredentialKind.SECRET, Stage.ROTATE, True, (), "rotate again")
    defs = {"aws": {"rotate_secret_v2": later, "rotate_secret": ROTATE_SECRET}}
    assert only_action(build_plan([exposure()], defs, AUTO, NOW)) == ("fx-1", "rotate_secret")


@pytest.mark.parametrize(
    ("finding", "policy", "defs"),
    [
        pytest.param(exposure(), PolicyConfig(), ROTATE_DEFS, id="auto_rotate_secrets-off"),
        pytest.param(exposure(detail=NOT_ROTATING), AUTO, ROTATE_DEFS, id="rotation-not-configured"),
        pytest.param(exposure(stale=True), AUTO, ROTATE_DEFS, id="stale"),
        pytest.param(
            exposure(rule=Rule.PERSISTENCE_LEFT_BY_LEAVER), AUTO, ROTATE_DEFS, id="persistence-rule"
        ),
        pytest.param(exposure(due=NOW + timedelta(hours=1)), AUTO, ROTATE_DEFS, id="not-due-yet"),
        pytest.param(exposure(due=None), AUTO, ROTATE_DEFS, id="never-due"),
        pytest.param(
            exposure(),
            PolicyConfig(auto_rotate_secrets=True, protected=("aws:alice",)),
            ROTATE_DEFS,
            id="account-protected",
        ),
        pytest.param(
            exposure(),
            PolicyConfig(auto_rotate_secrets=True, protected=("aws:alice:arn:aws:secretsmanager:*",)),
            ROTATE_DEFS,
            id="secret-protected-by-a-credential-selector",
        ),
        pytest.param(
            exposure(), AUTO, {"other": {"rotate_secret": ROTATE_SECRET}}, id="source-has-no-revoker"
        ),
        pytest.param(
            exposure(),
            AUTO,
            {"aws": {"a_rotate_key": ROTATE_KEY, "a_tag_secret": TAG_SECRET}},
            id="no-rotate-action-for-secrets",
        ),
    ],
)
def test_a_secret_is_not_rotated_automatically_and_its_task_says_so(
    finding: Finding, policy: PolicyConfig, defs: dict[str, dict[str, ActionDef]]
) -> None:
    plan = build_plan([finding], defs, policy, NOW)
    assert plan.actions == () and plan.done == ()
    (task,) = plan.tasks
    assert task.auto is False


def test_an_exposure_finding_without_a_person_is_never_rotated() -> None:
    plan = build_plan([exposure(who=None)], ROTATE_DEFS, AUTO, NOW)
    assert plan.actions == () and plan.tasks == () and plan.done == ()


def test_a_rotation_already_applied_is_done_not_planned_again() -> None:
    f = exposure()
    plan = build_plan([f], ROTATE_DEFS, AUTO, NOW, history=[rotate_record(f, NOW - timedelta(hours=2))])
    assert plan.actions == ()
    assert plan.done == ("fx-1:rotate_secret",)


@pytest.mark.parametrize(
    ("seen_after", "planned"),
    [(timedelta(hours=1), True), (timedelta(0), False), (-timedelta(hours=1), False)],
)
def test_a_rotation_is_planned_again_only_when_the_secret_was_seen_active_after_it(
    seen_after: timedelta, planned: bool
) -> None:
    f = exposure()
    applied = NOW - timedelta(hours=2)
    plan = build_plan(
        [f],
        ROTATE_DEFS,
        AUTO,
        NOW,
        history=[rotate_record(f, applied)],
        observed_at={"fx-1": applied + seen_after},
    )
    assert [a.key for a in plan.actions] == (["fx-1:rotate_secret"] if planned else [])
    assert plan.done == (() if planned else ("fx-1:rotate_secret",))


# --- every field of a planned revocation --------------------------------------------------------

LOCK = ActionDef("lock", CredentialKind.ACCOUNT, Stage.DISABLE, True, ("perm:lock",), "lock the login")
DEACTIVATE = ActionDef("deactivate_key", CredentialKind.ACCESS_KEY, Stage.DISABLE, True, ("perm:deact",), "deactivate the key")  # fmt: skip
DEFS = {"sys": {"lock": LOCK, "deactivate_key": DEACTIVATE}}


def finding(account: str, cred: str, kind: CredentialKind, who: Person | None) -> Finding:
    acct = Account("sys", "ldap", f"uid={account}", account, True, scope="dc=x", uid=f"uuid-{account}")
    c = Credential("sys", acct.account_id, cred, kind, True, detail=f"detail of {cred}")
    rule = Rule.CREDENTIAL_AFTER_TERMINATION
    return Finding(f"f-{cred}", rule, rule.severity, FindingStatus.OPEN, acct, who, c, LEFT, LEFT, "left")


def test_a_planned_action_carries_the_findings_severity_and_person_and_the_action_description() -> None:
    (a,) = build_plan(
        [finding("alice", "K1", CredentialKind.ACCESS_KEY, ALICE)], DEFS, PolicyConfig(), NOW
    ).actions
    assert (a.severity, a.person, a.person_name, a.terminated_at) == ("high", "e1", "Alice Ng", LEFT)
    assert (a.action, a.permissions, a.description, a.note) == ("deactivate_key", ("perm:deact",), "deactivate the key", "")  # fmt: skip
    assert (a.account_uid, a.scope, a.detail) == ("uuid-alice", "dc=x", "detail of K1")


def test_an_action_without_a_person_is_planned_with_none_and_sorted_after_everyone_elses() -> None:
    findings = [
        finding("svc", "svc", CredentialKind.ACCOUNT, None),
        finding("alice", "alice", CredentialKind.ACCOUNT, ALICE),
    ]
    plan = build_plan(findings, DEFS, PolicyConfig(), NOW)
    assert [(a.person, a.username) for a in plan.actions] == [("e1", "alice"), (None, "svc")]
    orphan = plan.actions[1]
    assert (orphan.person_name, orphan.terminated_at) == ("", None)


def test_a_planned_actions_account_and_credential_are_its_target_as_found() -> None:
    (a,) = build_plan(
        [finding("alice", "K1", CredentialKind.ACCESS_KEY, ALICE)], DEFS, PolicyConfig(), NOW
    ).actions
    assert a.account() == Account("sys", "ldap", "uid=alice", "alice", True, scope="dc=x", uid="uuid-alice")
    # The credential's scope is the action's (the account's scope when it has one).
    assert a.credential() == Credential(
        "sys", "uid=alice", "K1", CredentialKind.ACCESS_KEY, True, detail="detail of K1", scope="dc=x"
    )


def test_the_last_moment_guard_matches_a_scoped_credential_selector_against_a_planned_action() -> None:
    (a,) = build_plan(
        [finding("alice", "K1", CredentialKind.ACCESS_KEY, ALICE)], DEFS, PolicyConfig(), NOW
    ).actions
    hit = "ldap:dc=x:alice:k1"
    assert (
        last_moment_refusal((hit,), (), a.account(), a.credential(), NOW)
        == f"protected by policy.protected {hit!r}"
    )
    assert last_moment_refusal(("ldap:dc=y:alice:k1",), (), a.account(), a.credential(), NOW) is None
