"""The blast-radius cap counts people and actions separately (issue 17, item 4)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from offboard_audit.config import load_config
from offboard_audit.core.actions import Stage
from offboard_audit.core.caps import cap_refusal, person_key
from offboard_audit.core.errors import ConfigError
from offboard_audit.core.plan_records import PlannedAction
from offboard_audit.core.records import CredentialKind, Rule


def action(person: str | None, cred: str, account: str = "acct") -> PlannedAction:
    return PlannedAction(
        source="sys",
        system="fake",
        scope="",
        account_id=account,
        username=account,
        credential_id=cred,
        credential_kind=CredentialKind.GROUP_MEMBERSHIP,
        detail="",
        account_uid="uid",
        finding_id=f"f-{person}-{cred}",
        rule=Rule.CREDENTIAL_AFTER_TERMINATION,
        severity="high",
        person=person,
        person_name="",
        terminated_at=datetime(2026, 1, 1, tzinfo=UTC),
        action="remove_group",
        stage=Stage.DISABLE,
        reversible=True,
        permissions=(),
        description="",
    )


def test_many_actions_of_one_person_are_one_person():
    plan = [action("E1", f"group/{i}") for i in range(42)]
    assert cap_refusal(plan, max_people=25, max_actions=1000) is None
    assert cap_refusal(plan, max_people=25, max_actions=41) is not None


def test_people_are_counted_at_the_limit_and_one_over_it():
    plan = [action(f"E{i}", "k") for i in range(3)]
    assert cap_refusal(plan, max_people=3, max_actions=10) is None
    reason = cap_refusal(plan, max_people=2, max_actions=10)
    assert reason is not None and "3 people" in reason and "limit of 2" in reason


def test_actions_without_a_person_count_per_account():
    plan = [action(None, "k1", "svc-a"), action(None, "k2", "svc-a"), action(None, "k1", "svc-b")]
    assert len({person_key(a) for a in plan}) == 2
    assert cap_refusal(plan, max_people=1, max_actions=10) is not None


def write(tmp_path, policy: str):
    cfg = tmp_path / "offboard-audit.toml"
    cfg.write_text(f'[policy]\n{policy}\n[[sources]]\nname = "hr"\ntype = "hr_csv"\npath = "hr.csv"\n')
    return load_config(cfg, env={})


def test_the_old_key_sets_the_people_limit_and_both_keys_at_once_are_an_error(tmp_path):
    assert write(tmp_path, "max_revocations_per_run = 7").policy.max_people_per_run == 7
    assert write(tmp_path, "max_people_per_run = 9").policy.max_people_per_run == 9
    defaults = write(tmp_path, "").policy
    assert (defaults.max_people_per_run, defaults.max_actions_per_run) == (25, 1000)
    with pytest.raises(ConfigError, match="old name of max_people_per_run"):
        write(tmp_path, "max_revocations_per_run = 7\nmax_people_per_run = 9")


def test_actions_are_counted_at_the_limit_and_one_over_it():
    plan = [action("E1", f"group/{i}") for i in range(3)]
    assert cap_refusal(plan, max_people=25, max_actions=3) is None
    assert cap_refusal(plan, max_people=25, max_actions=2) == (
        "blast-radius cap: the plan has 3 actions, more than the limit of 2 "
        "(policy.max_actions_per_run or --max-actions); nothing was applied"
    )


def test_the_people_refusal_names_the_setting_and_the_flag_and_says_nothing_was_applied():
    # The operator reads this to know which knob to turn; it is checked before the action count.
    plan = [action(f"E{i}", "k") for i in range(3)]
    assert cap_refusal(plan, max_people=2, max_actions=1) == (
        "blast-radius cap: the plan touches 3 people, more than the limit of 2 "
        "(policy.max_people_per_run or --max); nothing was applied"
    )
