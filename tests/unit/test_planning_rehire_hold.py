"""The rehire hold of :func:`build_plan` (``people_now``): a finding whose person HR no longer
lists as departed is held with a reason that says what HR says now, and nothing is planned."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from offboard_audit.core.planning import build_plan
from offboard_audit.core.policy import PolicyConfig
from offboard_audit.core.records import PersonStatus
from tests.unit.test_planning import DEFS, NOW, finding, keys, person


def test_a_rehired_persons_finding_is_held_with_what_hr_says_now() -> None:
    rehired = replace(person("e1"), status=PersonStatus.ACTIVE, terminated_at=None)
    plan = build_plan([finding("alice", "K1")], DEFS, PolicyConfig(), NOW, people_now=[rehired])
    assert plan.actions == ()
    assert [h.reason for h in plan.held] == [
        "e1 is no longer departed in HR (now active): nothing is revoked or deleted"
    ]


def test_a_postponed_termination_is_held_with_its_new_date() -> None:
    later = NOW + timedelta(days=30)
    postponed = replace(person("e1"), terminated_at=later)
    plan = build_plan([finding("alice", "K1")], DEFS, PolicyConfig(), NOW, people_now=[postponed])
    assert plan.actions == ()
    assert [h.reason for h in plan.held] == [
        f"e1 is no longer departed in HR (now terminated, terminated_at {later.isoformat()}): "
        "nothing is revoked or deleted"
    ]


def test_a_person_still_departed_or_unknown_now_is_planned_as_before() -> None:
    still = person("e1")
    other_source = replace(person("e1"), source="hr2", status=PersonStatus.ACTIVE, terminated_at=None)
    for people_now in ([still], [other_source], [], None):
        plan = build_plan([finding("alice", "K1")], DEFS, PolicyConfig(), NOW, people_now=people_now)
        assert keys(plan) == [("e1", "K1", "deactivate_key")], people_now
