"""``RevocationEngine`` around its passes, in process, on SQLite, with the fake JSON-file connector:
the reasons a pass gives (no audit yet, the blast-radius cap of ``--max-actions``, a plan file, a
lost lock, a revoker that cannot be built, a source without a revoker), what it reports while it
runs, what it hands back when it stops part-way, what it hands the planner, and how it settles
actions a dead process left in ``intent``. Found by a mutation run over
``offboard_audit/engine/revocation.py`` (docs/mutation-survivors.md).

The standard world's plan, in order: E1 alice (login ``alice``, key ``AK1``, group
``group/g-admins``), then E2 bob (login ``bob``, key ``AK2``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from offboard_audit.core.actions import ResourceState
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.plan_file import plan_json, read_plan_json
from offboard_audit.core.protocols import Revoker, SourceContext
from offboard_audit.core.records import Exemption, FindingStatus
from offboard_audit.core.stored import ActionRecord, ActionStatus
from offboard_audit.engine.revocation import PassInterrupted
from offboard_audit.engine.undo import undo_record
from offboard_audit.storage.actions import iter_events, load_actions
from offboard_audit.storage.locks import REVOCATION, Locks
from tests.support.fake_connector import FakeRevoker
from tests.support.revocation import NOW, Env

BOB_OFF = ResourceState(exists=True, active=False, data=(("status", "off"),), identity="uid-bob")
BOB_ON = ResourceState(exists=True, active=True, data=(("status", "on"),), identity="uid-bob")


def block(env: Env, credential_id: str) -> None:
    """The fake revoker calls its ``wait`` hook once, before it changes ``credential_id``."""
    env.world.update(lambda st: st.setdefault("block", {}).update({credential_id: "before"}))


def events(env: Env, kind: str, action_id: str) -> list[dict[str, object]]:
    return [
        json.loads(e.payload_json)
        for e in iter_events(env.store)
        if e.kind == kind and e.action_id == action_id
    ]


def interrupted_intent(env: Env, credential_id: str, action_id: str, prior: ResourceState) -> ActionRecord:
    """A process wrote the intent of E2's ``credential_id`` action (having read ``prior``) and died."""
    engine = env.engine(actor="dead")
    (pa,) = [a for a in engine.plan(NOW, person="E2").actions if a.credential_id == credential_id]
    rec = engine.journal.new_record(pa, "p-dead", NOW, action_id=action_id)
    engine.journal.intent(rec, prior)
    (row,) = load_actions(env.store, action_ids=[action_id])
    assert row.status is ActionStatus.INTENT
    return row


def status_of(env: Env, action_id: str) -> str:
    (row,) = load_actions(env.store, action_ids=[action_id])
    return str(row.status)


# --- PassInterrupted ---------------------------------------------------------------------------


def test_a_pass_whose_progress_output_breaks_after_one_action_raises_pass_interrupted_with_what_was_applied(
    env: Env,
) -> None:
    env.audit()
    cause = BrokenPipeError(32, "Broken pipe")  # `revoke --apply | head`: the reader went away

    def print_line(line: str) -> None:
        if "AK1" in line:
            raise cause

    engine = env.engine(reporter=print_line)
    with pytest.raises(PassInterrupted) as stopped:
        engine.revoke(NOW, apply=True, person="E1")  # alice's login first, then her key AK1

    assert str(stopped.value) == "stopped part-way: BrokenPipeError: [Errno 32] Broken pipe"
    assert stopped.value.cause is cause
    assert [(o.credential_id, o.status) for o in stopped.value.report.outcomes] == [("alice", "applied")]
    assert env.world.changes() == [("disable_account", "alice")]


def test_ctrl_c_after_one_action_raises_pass_interrupted_whose_cause_is_the_keyboard_interrupt(
    env: Env,
) -> None:
    env.audit()
    cause = KeyboardInterrupt()

    def ctrl_c(credential_id: str, when: str) -> None:
        raise cause

    block(env, "AK2")  # E2's pass: bob's login is applied, then Ctrl-C before his key
    with pytest.raises(PassInterrupted) as stopped:
        env.engine(revoker=FakeRevoker(env.world.state_path, wait=ctrl_c)).revoke(
            NOW, apply=True, person="E2"
        )

    assert str(stopped.value) == "stopped part-way: KeyboardInterrupt: "
    assert stopped.value.cause is cause
    assert [(o.credential_id, o.status) for o in stopped.value.report.outcomes] == [("bob", "applied")]
    assert env.world.changes() == [("disable_account", "bob")]


# --- the reasons a pass gives ------------------------------------------------------------------


def test_revoke_before_any_audit_is_refused_saying_to_run_the_audit_first(env: Env) -> None:
    report = env.engine().revoke(NOW, apply=True)

    assert report.refused == "no audit has run yet: run `offboard-audit audit` first"
    assert report.outcomes == ()


def test_revoke_max_actions_lower_than_the_plan_refuses_the_whole_pass(env: Env) -> None:
    env.audit()

    report = env.engine().revoke(NOW, apply=True, person="E1", max_actions=2)

    assert report.refused == (
        "blast-radius cap: the plan has 3 actions, more than the limit of 2 "
        "(policy.max_actions_per_run or --max-actions); nothing was applied"
    )
    assert env.world.changes() == []


def test_revoke_with_a_plan_file_acts_only_on_the_actions_of_that_file(env: Env) -> None:
    env.audit()
    written = env.engine().plan(NOW, person="E2")
    plan_file = read_plan_json(json.loads(json.dumps(plan_json(written))))

    report = env.engine().revoke(NOW, apply=False, plan_file=plan_file)

    assert report.refused is None
    assert sorted(o.credential_id for o in report.outcomes) == ["AK2", "bob"]


def test_revoke_with_a_stale_plan_file_is_refused(env: Env) -> None:
    env.audit()
    plan_file = read_plan_json(json.loads(json.dumps(plan_json(env.engine().plan(NOW, person="E2")))))
    env.world.update(lambda st: st["accounts"].append({"id": "dave", "username": "dave", "enabled": True}))
    env.audit()  # a new orphan account: the findings changed since the plan was made

    report = env.engine().revoke(NOW, apply=True, plan_file=plan_file)

    assert report.refused is not None
    assert report.refused.startswith(f"plan {plan_file.plan_id} is stale: the findings changed")
    assert env.world.changes() == []


def test_a_lock_taken_over_mid_pass_skips_the_remaining_actions_saying_so(env: Env) -> None:
    env.audit()

    def taken_over(credential_id: str, when: str) -> None:
        # While alice's login is changed, another process decides this one is dead and takes
        # over its lease (its clock is past the lease's end).
        later = datetime.now(UTC) + timedelta(hours=1)
        assert Locks(env.store, "intruder", clock=lambda: later).try_acquire(REVOCATION) is not None

    block(env, "alice")
    report = env.engine(revoker=FakeRevoker(env.world.state_path, wait=taken_over)).revoke(
        NOW, apply=True, person="E1"
    )

    assert [(o.credential_id, o.status, o.error) for o in report.outcomes] == [
        ("alice", "applied", None),
        ("AK1", "skipped", "the revocation lock was taken over by another process"),
        ("group/g-admins", "skipped", "the revocation lock was taken over by another process"),
    ]
    assert env.world.changes() == [("disable_account", "alice")]


def cannot_build(options: SourceOptions, ctx: SourceContext) -> Revoker:
    raise RuntimeError("no credentials for the fake system")


def with_make_revoker(
    env: Env, make_revoker: Callable[[SourceOptions, SourceContext], Revoker] | None
) -> None:
    """The fake source's connector, from now on, with ``make_revoker`` (None: it has no revoker)."""
    env.config = replace(
        env.config,
        sources=tuple(
            replace(s, plugin=replace(s.plugin, make_revoker=make_revoker)) if s.name == "fake" else s
            for s in env.config.sources
        ),
    )


def test_a_revoker_that_cannot_be_built_fails_each_action_saying_the_state_could_not_be_read(
    env: Env,
) -> None:
    env.audit()
    with_make_revoker(env, cannot_build)

    report = env.engine().revoke(NOW, apply=True, person="E2")

    error = "could not read the state before acting: RuntimeError: no credentials for the fake system"
    assert [(o.credential_id, o.status, o.error) for o in report.outcomes] == [
        ("bob", "failed", error),
        ("AK2", "failed", error),
    ]
    for o in report.outcomes:
        assert status_of(env, o.action_id) == "failed"
        assert [p["error"] for p in events(env, "outcome", o.action_id)] == [error]
    assert env.world.changes() == []


def test_the_revoker_of_a_source_without_one_is_refused_naming_the_source_and_its_type(env: Env) -> None:
    with pytest.raises(RevokeError) as refused:
        env.engine().revoker("hr")

    assert str(refused.value) == "source 'hr' (hr_csv) has no revoker"


def test_recovering_an_intent_on_a_source_whose_type_has_no_revoker_leaves_it_in_intent_saying_why(
    env: Env,
) -> None:
    env.audit()
    interrupted_intent(env, "AK2", "a-interrupted", BOB_ON)
    # The fake source's connector is replaced by one without a revoker before the next pass.
    with_make_revoker(env, None)

    report = env.engine().revoke(NOW, apply=True, person="E2")

    assert [(o.action_id, o.status, o.error) for o in report.recovered] == [
        ("a-interrupted", "intent", "could not re-read to recover: source 'fake' (fake) has no revoker")
    ]
    assert status_of(env, "a-interrupted") == "intent"


# --- progress lines ----------------------------------------------------------------------------


def test_each_action_applied_is_reported_as_action_on_source_account_credential(env: Env) -> None:
    env.audit()
    lines: list[str] = []
    engine = env.engine(reporter=lines.append)

    engine.revoke(NOW, apply=True, person="E2")

    assert lines == ["disable_account on fake:bob:bob", "deactivate_key on fake:bob:AK2"]


# --- what the planner is handed ----------------------------------------------------------------


def test_an_exemption_added_after_the_audit_holds_its_finding_out_of_the_plan(env: Env) -> None:
    env.audit()
    until = NOW + timedelta(days=1)
    env.store.add_exemption(Exemption("x-late", "fake:bob:AK2", "legal hold", until, "lead", NOW))

    plan = env.engine().plan(NOW, person="E2")

    assert [a.credential_id for a in plan.actions] == ["bob"]
    assert [(h.credential_id, h.reason) for h in plan.held] == [
        ("AK2", "exempted by x-late until 2026-03-02T12:00:00+00:00: legal hold")
    ]


def test_stored_inputs_leave_out_resolved_findings(env: Env) -> None:
    env.audit()
    ak2 = env.finding_id("AK2")

    env.world.update(lambda st: next(c for c in st["credentials"] if c["id"] == "AK2").update(exists=False))
    env.audit()
    assert {f.finding_id: f.status for f in env.store.list_findings(None)}[ak2] is FindingStatus.RESOLVED

    findings, observed = env.engine().stored_inputs()

    assert ak2 not in {f.finding_id for f in findings}
    assert ak2 not in observed
    assert len(findings) == 6  # the standard world has 7 findings; AK2's is resolved


def test_stored_inputs_give_a_last_seen_time_for_open_findings_only(env: Env) -> None:
    env.audit()
    env.engine().revoke(NOW, apply=True, person="E2")
    later = NOW + timedelta(hours=1)
    env.audit(later)
    findings, observed = env.engine(later).stored_inputs()
    revoked = {f.finding_id for f in findings if f.status is FindingStatus.REVOKED}
    assert revoked == {env.finding_id("bob"), env.finding_id("AK2")}

    assert not revoked & observed.keys()
    assert len(observed) == 5  # the 7 findings less bob's two
    assert set(observed.values()) == {later}


# --- crash recovery ----------------------------------------------------------------------------


def test_an_interrupted_intent_that_cannot_be_re_read_stays_in_intent_with_the_read_error(env: Env) -> None:
    env.audit()
    interrupted_intent(env, "AK2", "a-interrupted", BOB_ON)
    env.world.update(lambda st: st.setdefault("unreadable", {}).update({"AK2": "connection refused"}))

    report = env.engine().revoke(NOW, apply=True, person="E2")

    assert [(o.action_id, o.credential_id, o.status, o.error) for o in report.recovered] == [
        (
            "a-interrupted",
            "AK2",
            "intent",
            "could not re-read to recover: ConnectionError: connection refused",
        )
    ]
    assert status_of(env, "a-interrupted") == "intent"


def test_an_unreadable_interrupted_intent_does_not_stop_the_recovery_of_the_next_one(env: Env) -> None:
    env.audit()
    interrupted_intent(env, "AK2", "a-1-unreadable", BOB_ON)
    interrupted_intent(env, "bob", "a-2-done", BOB_ON)
    env.world.update(lambda st: st.setdefault("unreadable", {}).update({"AK2": "connection refused"}))
    env.world.update(lambda st: next(c for c in st["credentials"] if c["id"] == "bob").update(active=False))

    report = env.engine().revoke(NOW, apply=True, person="E1")

    assert [(o.action_id, o.status) for o in report.recovered] == [
        ("a-1-unreadable", "intent"),
        ("a-2-done", "applied"),
    ]
    assert status_of(env, "a-2-done") == "applied"


def test_an_interrupted_intent_whose_credential_was_already_off_is_recovered_as_noop_with_what_it_shows(
    env: Env,
) -> None:
    env.audit()
    # The dead process had read AK2 already off (its intent records that) before it died.
    env.world.update(lambda st: next(c for c in st["credentials"] if c["id"] == "AK2").update(active=False))
    interrupted_intent(env, "AK2", "a-interrupted", BOB_OFF)

    report = env.engine().revoke(NOW, apply=True, person="E1")

    assert [(o.action_id, o.status) for o in report.recovered] == [("a-interrupted", "noop")]
    (row,) = load_actions(env.store, action_ids=["a-interrupted"])
    assert row.status == "noop"
    assert row.result_state == BOB_OFF
    observed = {"exists": True, "active": False, "data": {"status": "off"}, "identity": "uid-bob"}
    assert [p["observed"] for p in events(env, "recovered", "a-interrupted")] == [observed]


def test_an_interrupted_undo_whose_restore_is_in_place_is_recovered_as_restored_and_undoes_the_original(
    env: Env,
) -> None:
    env.audit()
    applied = env.engine().revoke(NOW, apply=True, person="E2")
    (orig,) = load_actions(
        env.store, action_ids=[o.action_id for o in applied.outcomes if o.credential_id == "AK2"]
    )
    assert orig.status == "applied" and orig.prior_state is not None
    # An undo wrote its intent, restored the key, and died before its outcome.
    dead = env.engine(actor="dead")
    undo = undo_record(orig, "dead", NOW)
    dead.journal.undo_intent(undo, orig.prior_state, BOB_OFF)
    env.world.update(lambda st: next(c for c in st["credentials"] if c["id"] == "AK2").update(active=True))

    report = env.engine().revoke(NOW, apply=True, person="E1")

    assert [(o.action_id, o.status, o.undo_of) for o in report.recovered] == [
        (undo.action_id, "restored", orig.action_id)
    ]
    assert status_of(env, undo.action_id) == "restored"
    assert status_of(env, orig.action_id) == "undone"
