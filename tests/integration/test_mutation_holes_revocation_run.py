"""``RevocationEngine._run`` (one revoke pass) in process, on SQLite, with the fake JSON-file
connector: the real pipeline and the real engine (mutation survivors of ``_run``).

What no other in-process test pinned down: every field of the report on each way a pass ends
(dry run, refused, applied, the revocation lock held by someone else, stopped part-way), the
payload and actor of the ``refused`` audit event, the holder name and the waiting message of the
revocation lock, the per-pass ``max_actions``/``max_people`` overrides, and plan files (a stale
one is refused, a fresh one applies only its own actions).
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from offboard_audit.core.plan_file import PlanFile, plan_json, read_plan_json
from offboard_audit.engine.journal import ApplyReport
from offboard_audit.engine.locks import LockNotAcquired, acquire
from offboard_audit.engine.revocation import PassInterrupted
from offboard_audit.storage.actions import iter_events, load_actions
from tests.support.fake_connector import FakeRevoker
from tests.support.revocation import NOW, Env

E1_CREDENTIALS = ["alice", "AK1", "group/g-admins"]  # alice's planned actions, in plan order
REVOCABLE = {"alice", "AK1", "group/g-admins", "bob", "AK2"}


def statuses(outcomes: Any) -> list[tuple[str, str]]:
    return [(o.credential_id, o.status) for o in outcomes]


def refused_events(env: Env) -> list[tuple[str, dict[str, Any]]]:
    return [(e.actor, json.loads(e.payload_json)) for e in iter_events(env.store) if e.kind == "refused"]


def leave_ak2_unknown(env: Env) -> None:
    """bob's pass changes AK2 but cannot re-read it: its outcome is ``unknown`` until the next
    pass recovers it (reads work again afterwards)."""
    env.world.update(lambda st: st.setdefault("block", {}).update({"AK2": "after"}))

    def reads_fail(credential_id: str, when: str) -> None:
        env.world.update(lambda st: st.setdefault("unreadable", {}).update({"AK2": "endpoint unreachable"}))

    first = env.engine(revoker=FakeRevoker(env.world.state_path, wait=reads_fail)).revoke(
        NOW, apply=True, person="E2"
    )
    assert statuses(first.outcomes) == [("bob", "applied"), ("AK2", "unknown")]
    env.world.update(lambda st: st["unreadable"].clear())


# --- dry run --------------------------------------------------------------------------------


def test_a_dry_run_over_the_people_cap_reports_the_refusal_the_plan_and_the_limit(env: Env) -> None:
    env.audit()
    expected_plan_id = env.engine().plan(NOW).plan_id

    report = env.engine().revoke(NOW, apply=False, max_people=1)

    assert report.refused == (
        "blast-radius cap: the plan touches 2 people, more than the limit of 1 "
        "(policy.max_people_per_run or --max); nothing was applied"
    )
    assert report.dry_run is True
    assert report.limit == 1
    assert report.plan is not None and report.plan.plan_id == expected_plan_id
    assert len(report.plan.actions) == 5
    assert {o.credential_id for o in report.outcomes} == REVOCABLE
    assert {o.status for o in report.outcomes} == {"dry-run"}
    # A dry run writes nothing, not even the refusal.
    assert list(iter_events(env.store)) == [] and env.world.changes() == []


# --- refused --------------------------------------------------------------------------------


def test_a_max_actions_below_the_policy_refuses_the_pass_and_logs_reason_plan_id_and_count(env: Env) -> None:
    # The policy allows 1000 actions (default); this pass allows 4 and the plan has 5.
    env.audit()
    expected_plan_id = env.engine().plan(NOW).plan_id
    reason = (
        "blast-radius cap: the plan has 5 actions, more than the limit of 4 "
        "(policy.max_actions_per_run or --max-actions); nothing was applied"
    )

    report = env.engine(actor="cli:alice").revoke(NOW, apply=True, max_actions=4)

    assert report.refused == reason
    assert report.outcomes == () and report.dry_run is False
    assert report.plan is not None and report.plan.plan_id == expected_plan_id
    assert refused_events(env) == [
        ("cli:alice", {"reason": reason, "plan_id": expected_plan_id, "actions": 5})
    ]
    assert env.world.changes() == [] and load_actions(env.store) == []


def test_a_refused_pass_still_reports_what_it_recovered_and_the_people_limit_of_the_pass(env: Env) -> None:
    env.audit()
    leave_ak2_unknown(env)

    # alice's three actions are left; this pass allows 2 actions (and 3 people).
    report = env.engine(actor="cli:alice").revoke(NOW, apply=True, max_people=3, max_actions=2)

    assert report.refused == (
        "blast-radius cap: the plan has 3 actions, more than the limit of 2 "
        "(policy.max_actions_per_run or --max-actions); nothing was applied"
    )
    assert statuses(report.recovered) == [("AK2", "applied")]
    assert report.outcomes == ()
    assert report.limit == 3
    assert report.plan is not None and [a.credential_id for a in report.plan.actions] == E1_CREDENTIALS
    assert [p["actions"] for _, p in refused_events(env)] == [3]
    assert {c for _, c in env.world.changes()} == {"bob", "AK2"}


# --- applied --------------------------------------------------------------------------------


def test_an_applied_pass_reports_the_people_limit_of_the_pass_else_of_the_policy(env: Env) -> None:
    env.reload({"max_people_per_run": 4})
    env.audit()

    lowered = env.engine(actor="cli:alice").revoke(NOW, apply=True, person="E2", max_people=2)
    assert lowered.refused is None and lowered.dry_run is False
    assert statuses(lowered.outcomes) == [("bob", "applied"), ("AK2", "applied")]
    assert lowered.limit == 2

    policy = env.engine(actor="cli:alice").revoke(NOW, apply=True, person="E1")
    assert policy.refused is None
    assert statuses(policy.outcomes) == [(c, "applied") for c in E1_CREDENTIALS]
    assert policy.limit == 4


# --- plan files -----------------------------------------------------------------------------


def test_a_fresh_plan_file_applies_exactly_its_own_actions(env: Env) -> None:
    env.audit()
    # bob's plan, saved and read back as `revoke --plan FILE` does; the pass itself is unscoped.
    plan_file = read_plan_json(plan_json(env.engine().plan(NOW, person="E2")))

    report = env.engine(actor="cli:alice").revoke(NOW, apply=True, plan_file=plan_file)

    assert report.refused is None
    assert statuses(report.outcomes) == [("bob", "applied"), ("AK2", "applied")]
    assert report.plan is not None and [a.credential_id for a in report.plan.actions] == ["bob", "AK2"]
    assert sorted(c for _, c in env.world.changes()) == ["AK2", "bob"]
    assert refused_events(env) == []


def stale_plan_file(env: Env) -> PlanFile:
    """bob's plan made at NOW; then bob gets a new key and an audit an hour later sees it."""
    env.audit()
    body = plan_json(env.engine().plan(NOW, person="E2"))
    env.world.update(
        lambda st: st["credentials"].append({"account_id": "bob", "id": "AK3", "kind": "access_key"})
    )
    env.audit(NOW + timedelta(hours=1))
    return read_plan_json(body)


def stale_reason(plan_id: str) -> str:
    return (
        f"plan {plan_id} is stale: the findings changed since it was made at "
        "2026-03-01T12:00:00+00:00; make a new plan"
    )


def test_a_stale_plan_file_is_refused_with_its_message_and_nothing_is_applied(env: Env) -> None:
    plan_file = stale_plan_file(env)
    later = NOW + timedelta(hours=1)

    report = env.engine(actor="cli:alice").revoke(later, apply=True, plan_file=plan_file)

    assert report.refused == stale_reason(plan_file.plan_id)
    assert report.outcomes == ()
    assert [(actor, p["reason"], p["actions"]) for actor, p in refused_events(env)] == [
        ("cli:alice", stale_reason(plan_file.plan_id), 2)
    ]
    assert env.world.changes() == [] and load_actions(env.store) == []


def test_a_dry_run_of_a_stale_plan_file_says_it_is_stale(env: Env) -> None:
    plan_file = stale_plan_file(env)
    later = NOW + timedelta(hours=1)

    report = env.engine(later).revoke(later, apply=False, plan_file=plan_file)

    assert report.refused == stale_reason(plan_file.plan_id)
    assert report.dry_run is True


# --- the revocation lock --------------------------------------------------------------------


def test_the_lock_held_by_another_with_a_zero_timeout_gives_up_at_once_naming_the_holder(env: Env) -> None:
    env.audit()
    told: list[str] = []
    with acquire(env.store, "cli:bob", 0) as held:

        def reporter(message: str) -> None:
            # Nothing is to be reported; should a wait begin anyway, free the lock so that the
            # pass goes on (and the test fails) at once rather than after a long wait.
            told.append(message)
            held.release()

        engine = env.engine(actor="cli:alice", lock_timeout=0, reporter=reporter)
        report = engine.revoke(NOW, apply=True, max_people=3)

    assert told == []
    assert isinstance(report, ApplyReport)
    assert report.refused is not None
    assert report.refused.startswith("the revocation lock is held by cli:bob@")
    assert report.refused.endswith("; try again later")
    assert report.outcomes == () and report.recovered == ()
    assert report.plan is None and report.dry_run is False
    assert report.limit == 3
    assert env.world.changes() == [] and list(iter_events(env.store)) == []


def test_a_pass_waiting_for_the_lock_tells_the_reporter_who_holds_it_and_goes_on_once_freed(env: Env) -> None:
    env.audit()
    told: list[str] = []
    with acquire(env.store, "cli:bob", 0) as held:

        def reporter(message: str) -> None:
            told.append(message)
            if message.startswith("waiting for the revocation lock"):
                held.release()  # bob's pass ends while alice's waits

        report = env.engine(actor="cli:alice", lock_timeout=5, reporter=reporter).revoke(NOW, apply=True)

    assert told[0].startswith("waiting for the revocation lock (held by cli:bob@")
    assert told[0].endswith(")")
    assert report.refused is None
    assert {(o.credential_id, o.status) for o in report.outcomes} == {(c, "applied") for c in REVOCABLE}


def test_the_revocation_lock_is_held_in_the_name_of_the_engine_s_actor(env: Env) -> None:
    env.audit()
    env.world.update(lambda st: st.setdefault("block", {}).update({"AK2": "before"}))
    holders: list[str | None] = []

    def meanwhile(credential_id: str, when: str) -> None:
        try:
            with acquire(env.store, "cli:bob", 0):
                holders.append("cli:bob got the lock")
        except LockNotAcquired as exc:
            holders.append(exc.holder)

    revoker = FakeRevoker(env.world.state_path, wait=meanwhile)
    report = env.engine(actor="cli:alice", revoker=revoker).revoke(NOW, apply=True, person="E2")

    assert report.refused is None
    assert len(holders) == 1 and holders[0] is not None
    assert holders[0].startswith("cli:alice@")


# --- stopped part-way -----------------------------------------------------------------------


def test_an_interrupt_mid_pass_raises_pass_interrupted_with_the_full_report_and_the_cause(env: Env) -> None:
    env.audit()
    leave_ak2_unknown(env)  # recovered by the next pass
    env.world.update(lambda st: st.setdefault("block", {}).update({"AK1": "before"}))
    ctrl_c = KeyboardInterrupt("operator pressed Ctrl-C")

    def interrupt(credential_id: str, when: str) -> None:
        raise ctrl_c

    engine = env.engine(actor="cli:alice", revoker=FakeRevoker(env.world.state_path, wait=interrupt))
    try:
        engine.revoke(NOW, apply=True, person="E1", max_people=3)
    except PassInterrupted as exc:
        stopped = exc
    except KeyboardInterrupt:
        pytest.fail("the interrupt escaped the pass without its report")
    else:
        pytest.fail("the pass was not interrupted")

    assert str(stopped) == "stopped part-way: KeyboardInterrupt: operator pressed Ctrl-C"
    assert stopped.cause is ctrl_c and stopped.__cause__ is ctrl_c
    report = stopped.report
    assert isinstance(report, ApplyReport)
    assert report.refused is None and report.dry_run is False
    assert statuses(report.outcomes) == [("alice", "applied")]
    assert statuses(report.recovered) == [("AK2", "applied")]
    assert report.plan is not None and [a.credential_id for a in report.plan.actions] == E1_CREDENTIALS
    assert report.limit == 3
    assert ("deactivate_key", "AK1") not in env.world.changes()
