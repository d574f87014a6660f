"""Every outcome of ``engine/steps.py``, whole: status, the states it carries (``before`` and
``after`` are what the outcome event records), its error or message, and whether it belongs to a
written intent (``started``).

The system is scripted: each read returns (or raises) the next item of a list, and a change or
restore may raise. The expected steps are written out in full, so a step that records another
state, drops an error or claims an intent it does not have fails here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from offboard_audit.core.actions import ActionDef, ActionTarget, ResourceState, Stage
from offboard_audit.core.errors import RevokeError, TargetChanged
from offboard_audit.core.protocols import ActionSpec, Restore
from offboard_audit.core.records import CredentialKind
from offboard_audit.core.stored import ActionStatus
from offboard_audit.engine.steps import (
    Step,
    apply_step,
    as_before,
    describe,
    read_state,
    settle_interrupted,
    spec_for,
    undo_step,
)

UID = "uid-bob"
TARGET = ActionTarget("mem", "memsys", "acct-bob", "bob", "K1", CredentialKind.ACCESS_KEY, account_uid=UID)
ACTIVE = ResourceState(exists=True, active=True, data=(("group", "a"), ("group", "b")), identity=UID)
REVOKED = ResourceState(exists=True, active=False, data=(), identity=UID)
GONE_KEY = ResourceState(exists=False, active=False, data=(), identity=UID)
NEW_HIRE = ResourceState(exists=True, active=True, data=(), identity="uid-new-hire")
NEW_HIRE_REVOKED = ResourceState(exists=True, active=False, data=(), identity="uid-new-hire")
ACCOUNT_GONE = ResourceState(exists=False, active=False, data=(), identity=None)

REUSED = "memsys account 'bob' now has identity uid-new-hire, not uid-bob as planned: the name was reused by another account"
NO_LONGER_EXISTS = "memsys account 'bob' (identity uid-bob) no longer exists"


@dataclass
class Script:
    """What the system answers: ``reads`` in order (a state, or an exception to raise)."""

    reads: list[ResourceState | Exception]
    change_raises: Exception | None = None
    restore_raises: Exception | None = None
    calls: list[str] = field(default_factory=list)


class ScriptedSpec:
    def __init__(self, script: Script, reversible: bool = True) -> None:
        self.script = script
        self.definition = ActionDef(
            "deactivate",
            CredentialKind.ACCESS_KEY,
            Stage.DISABLE,
            reversible,
            ("mem:write",),
            "deactivate the key",
        )
        self.restore: Restore | None = self._restore if reversible else None

    def read(self, target: ActionTarget) -> ResourceState:
        self.script.calls.append("read")
        item = self.script.reads.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    def change(self, target: ActionTarget, before: ResourceState) -> None:
        self.script.calls.append("change")
        if self.script.change_raises is not None:
            raise self.script.change_raises

    def _restore(self, target: ActionTarget, current: ResourceState, prior: ResourceState) -> None:
        self.script.calls.append("restore")
        if self.script.restore_raises is not None:
            raise self.script.restore_raises

    def restored(self, state: ResourceState, prior: ResourceState) -> bool:
        # Every group the account had before is back.
        return set(prior.data) <= set(state.data)


class ScriptedRevoker:
    actions: Mapping[str, ActionDef] = {}

    def __init__(self, spec: ScriptedSpec, other: ScriptedSpec | None = None) -> None:
        specs: dict[str, ActionSpec] = {"deactivate": spec}
        if other is not None:
            specs["delete"] = other
        self.specs: Mapping[str, ActionSpec] = specs


def revoker(script: Script, reversible: bool = True) -> ScriptedRevoker:
    return ScriptedRevoker(ScriptedSpec(script, reversible))


def apply(script: Script) -> tuple[Step, list[ResourceState]]:
    intents: list[ResourceState] = []
    return apply_step(revoker(script), "deactivate", TARGET, intents.append), intents


def undo(
    script: Script, prior: ResourceState = ACTIVE, reversible: bool = True
) -> tuple[Step, list[ResourceState]]:
    intents: list[ResourceState] = []
    return undo_step(revoker(script, reversible), "deactivate", TARGET, prior, intents.append), intents


# --- apply --------------------------------------------------------------------------------------


def test_apply_verified_records_both_reads_and_no_error_after_its_intent() -> None:
    script = Script([ACTIVE, REVOKED])
    step, intents = apply(script)
    assert step == Step(ActionStatus.APPLIED, before=ACTIVE, after=REVOKED, started=True)
    assert intents == [ACTIVE] and script.calls == ["read", "change", "read"]


def test_apply_to_a_key_already_inactive_is_a_noop_that_records_the_one_read_as_before_and_after() -> None:
    script = Script([REVOKED])
    step, intents = apply(script)
    assert step == Step(ActionStatus.NOOP, REVOKED, REVOKED, message="already revoked", started=True)
    assert intents == [REVOKED] and script.calls == ["read"]


def test_apply_to_a_key_that_is_gone_is_a_noop_saying_there_was_nothing_to_revoke() -> None:
    step, intents = apply(Script([GONE_KEY]))
    assert step == Step(
        ActionStatus.NOOP, GONE_KEY, GONE_KEY, message="not found: nothing to revoke", started=True
    )
    assert intents == [GONE_KEY]


def test_apply_to_a_reused_name_is_target_changed_recording_what_was_read_and_no_intent() -> None:
    script = Script([NEW_HIRE])
    step, intents = apply(script)
    assert step == Step(ActionStatus.TARGET_CHANGED, before=NEW_HIRE, error=REUSED)
    assert intents == [] and script.calls == ["read"]


def test_apply_to_an_account_that_no_longer_exists_is_target_changed_not_a_noop() -> None:
    step, intents = apply(Script([ACCOUNT_GONE]))
    assert step == Step(ActionStatus.TARGET_CHANGED, before=ACCOUNT_GONE, error=NO_LONGER_EXISTS)
    assert intents == []


def test_apply_without_a_recorded_identity_touches_nothing() -> None:
    target = ActionTarget("mem", "memsys", "acct-bob", "", "K1", CredentialKind.ACCESS_KEY, account_uid="")
    script = Script([ACTIVE])
    step = apply_step(revoker(script), "deactivate", target)
    assert step == Step(
        ActionStatus.TARGET_CHANGED,
        before=ACTIVE,
        error=(
            "no immutable identity was recorded for memsys account 'acct-bob' (finding stored before "
            "identity tracking, or the connector reads none): run the audit again"
        ),
    )
    assert script.calls == ["read"]


def test_a_failed_first_read_is_failed_with_no_state_and_no_intent() -> None:
    step, intents = apply(Script([RevokeError("throttled")]))
    assert step == Step(ActionStatus.FAILED, error="could not read the state before acting: throttled")
    assert intents == []


def test_an_unexpected_exception_in_the_first_read_is_named_by_its_type() -> None:
    step, _ = apply(Script([ConnectionResetError("reset by peer")]))
    assert step == Step(
        ActionStatus.FAILED,
        error="could not read the state before acting: ConnectionResetError: reset by peer",
    )


def test_a_spec_that_refuses_right_before_its_write_is_target_changed_after_its_intent() -> None:
    script = Script([ACTIVE], change_raises=TargetChanged("uid changed between read and write"))
    step, intents = apply(script)
    assert step == Step(
        ActionStatus.TARGET_CHANGED, before=ACTIVE, error="uid changed between read and write", started=True
    )
    assert intents == [ACTIVE] and script.calls == ["read", "change"]


def test_a_change_re_read_that_fails_is_unknown_with_the_state_before_and_no_state_after() -> None:
    step, intents = apply(Script([ACTIVE, RevokeError("timed out")]))
    assert step == Step(
        ActionStatus.UNKNOWN,
        before=ACTIVE,
        error="changed, but the re-read to verify it failed (timed out): settled on the next pass",
        started=True,
    )
    assert intents == [ACTIVE]


def test_a_change_the_re_read_does_not_show_is_failed_with_both_states() -> None:
    step, _ = apply(Script([ACTIVE, ACTIVE]))
    assert step == Step(
        ActionStatus.FAILED,
        before=ACTIVE,
        after=ACTIVE,
        error="not verified: re-reading shows it still active",
        started=True,
    )


def test_a_re_read_of_another_account_is_failed_even_though_it_shows_inactive() -> None:
    step, _ = apply(Script([ACTIVE, NEW_HIRE_REVOKED]))
    assert step == Step(
        ActionStatus.FAILED,
        before=ACTIVE,
        after=NEW_HIRE_REVOKED,
        error=f"not verified: {REUSED}",
        started=True,
    )


# --- apply: the change call raised (re-read and record what the object shows) --------------------


def test_a_failed_change_call_that_reached_the_system_is_applied_with_the_error_as_its_message() -> None:
    script = Script([ACTIVE, REVOKED], change_raises=RevokeError("connection reset"))
    step, intents = apply(script)
    assert step == Step(
        ActionStatus.APPLIED,
        before=ACTIVE,
        after=REVOKED,
        message="the call reported an error (connection reset) but re-reading shows the change in place",
        started=True,
    )
    assert step.error is None and intents == [ACTIVE] and script.calls == ["read", "change", "read"]


def test_a_failed_change_call_that_did_not_happen_is_failed_with_the_calls_error_and_the_re_read() -> None:
    step, _ = apply(Script([ACTIVE, ACTIVE], change_raises=ValueError("HTTP 500")))
    assert step == Step(
        ActionStatus.FAILED, before=ACTIVE, after=ACTIVE, error="ValueError: HTTP 500", started=True
    )


def test_a_failed_change_call_whose_re_read_fails_too_is_unknown_and_names_both_errors() -> None:
    step, _ = apply(Script([ACTIVE, RevokeError("timed out")], change_raises=RevokeError("connection reset")))
    assert step == Step(
        ActionStatus.UNKNOWN,
        before=ACTIVE,
        error=(
            "connection reset; the re-read after it failed too (timed out): outcome unknown, "
            "settled on the next pass"
        ),
        started=True,
    )


def test_a_failed_change_call_whose_re_read_shows_another_account_is_failed_naming_both() -> None:
    step, _ = apply(Script([ACTIVE, NEW_HIRE_REVOKED], change_raises=RevokeError("connection reset")))
    assert step == Step(
        ActionStatus.FAILED,
        before=ACTIVE,
        after=NEW_HIRE_REVOKED,
        error=f"connection reset; then {REUSED}",
        started=True,
    )


# --- which action, which kind ---------------------------------------------------------------------


def test_an_action_the_revoker_does_not_have_is_refused_listing_the_ones_it_has() -> None:
    spec = ScriptedSpec(Script([ACTIVE]))
    both = ScriptedRevoker(spec, ScriptedSpec(Script([])))
    with pytest.raises(RevokeError) as err:
        spec_for(both, "nuke", TARGET)
    assert str(err.value) == "the mem revoker has no action 'nuke' (known: deactivate, delete)"
    step = apply_step(both, "nuke", TARGET)
    assert step == Step(
        ActionStatus.FAILED,
        error="could not read the state before acting: the mem revoker has no action 'nuke' (known: deactivate, delete)",
    )


def test_an_action_for_another_credential_kind_is_refused_before_any_read() -> None:
    script = Script([ACTIVE])
    ssh = ActionTarget("mem", "memsys", "acct-bob", "bob", "K1", CredentialKind.SSH_KEY, account_uid=UID)
    step = apply_step(revoker(script), "deactivate", ssh)
    assert step == Step(
        ActionStatus.FAILED,
        error="could not read the state before acting: deactivate applies to access_key, not ssh_key",
    )
    assert script.calls == []


def test_read_state_is_the_specs_read_of_the_target() -> None:
    script = Script([REVOKED])
    assert read_state(revoker(script), "deactivate", TARGET) == REVOKED
    assert script.calls == ["read"]


def test_describe_keeps_this_tools_own_messages_and_names_the_type_of_any_other_error() -> None:
    assert describe(RevokeError("access denied")) == "access denied"
    assert describe(KeyError("UserId")) == "KeyError: 'UserId'"


# --- undo ---------------------------------------------------------------------------------------


def test_undo_restores_and_records_the_current_and_the_re_read_state() -> None:
    script = Script([REVOKED, ACTIVE])
    step, intents = undo(script)
    assert step == Step(ActionStatus.RESTORED, before=REVOKED, after=ACTIVE, started=True)
    assert intents == [REVOKED] and script.calls == ["read", "restore", "read"]


def test_undo_of_an_object_already_as_before_is_unchanged_with_no_restore() -> None:
    script = Script([ACTIVE])
    step, intents = undo(script)
    assert step == Step(ActionStatus.UNCHANGED, ACTIVE, ACTIVE, message="already as before", started=True)
    assert intents == [ACTIVE] and script.calls == ["read"]


def test_undo_never_revokes_what_was_inactive_before_the_action() -> None:
    script = Script([ACTIVE])
    step, intents = undo(script, prior=REVOKED)
    assert step == Step(
        ActionStatus.FAILED,
        ACTIVE,
        ACTIVE,
        error="not restored: it was not active before the action, and undo never revokes",
        started=True,
    )
    assert intents == [ACTIVE] and script.calls == ["read"]


def test_undo_of_an_irreversible_action_reads_nothing_and_says_what_the_action_was() -> None:
    script = Script([REVOKED])
    step, intents = undo(script, reversible=False)
    assert step == Step(
        ActionStatus.FAILED,
        error="could not read the current state: deactivate is irreversible: deactivate the key",
    )
    assert intents == [] and script.calls == []


def test_undo_whose_read_fails_is_failed_with_no_state() -> None:
    step, intents = undo(Script([RevokeError("throttled")]))
    assert step == Step(ActionStatus.FAILED, error="could not read the current state: throttled")
    assert intents == []


def test_undo_on_a_reused_name_is_target_changed_without_intent() -> None:
    script = Script([NEW_HIRE_REVOKED])
    step, intents = undo(script)
    assert step == Step(ActionStatus.TARGET_CHANGED, before=NEW_HIRE_REVOKED, error=REUSED)
    assert intents == [] and script.calls == ["read"]


def test_undo_refused_right_before_its_write_is_target_changed_after_its_intent() -> None:
    step, intents = undo(Script([REVOKED], restore_raises=TargetChanged("uid changed")))
    assert step == Step(ActionStatus.TARGET_CHANGED, before=REVOKED, error="uid changed", started=True)
    assert intents == [REVOKED]


def test_undo_whose_re_read_fails_is_unknown() -> None:
    step, _ = undo(Script([REVOKED, RevokeError("timed out")]))
    assert step == Step(
        ActionStatus.UNKNOWN,
        before=REVOKED,
        error="restored, but the re-read to verify it failed (timed out): settled on the next pass",
        started=True,
    )


def test_undo_whose_re_read_shows_another_account_is_failed() -> None:
    step, _ = undo(Script([REVOKED, NEW_HIRE]))
    assert step == Step(ActionStatus.FAILED, REVOKED, NEW_HIRE, error=f"not verified: {REUSED}", started=True)


def test_undo_whose_re_read_lacks_a_prior_value_is_failed_though_active() -> None:
    partly = ResourceState(exists=True, active=True, data=(("group", "a"),), identity=UID)
    step, _ = undo(Script([REVOKED, partly]))
    assert step == Step(
        ActionStatus.FAILED,
        REVOKED,
        partly,
        error="not verified: re-reading does not show the prior state",
        started=True,
    )


def test_undo_whose_re_read_shows_it_still_inactive_is_failed() -> None:
    inactive_with_groups = ResourceState(exists=True, active=False, data=ACTIVE.data, identity=UID)
    step, _ = undo(Script([REVOKED, inactive_with_groups]))
    assert step.status is ActionStatus.FAILED and step.after == inactive_with_groups


def test_a_failed_restore_call_that_reached_the_system_is_restored_with_the_error_as_its_message() -> None:
    step, _ = undo(Script([REVOKED, ACTIVE], restore_raises=RevokeError("connection reset")))
    assert step == Step(
        ActionStatus.RESTORED,
        REVOKED,
        ACTIVE,
        message="the call reported an error (connection reset) but re-reading shows the change in place",
        started=True,
    )


def test_a_failed_restore_call_that_did_not_happen_is_failed_with_the_calls_error() -> None:
    step, _ = undo(Script([REVOKED, REVOKED], restore_raises=RevokeError("connection reset")))
    assert step == Step(ActionStatus.FAILED, REVOKED, REVOKED, error="connection reset", started=True)


def test_a_failed_restore_call_whose_re_read_fails_too_is_unknown() -> None:
    step, _ = undo(
        Script([REVOKED, RevokeError("timed out")], restore_raises=RevokeError("connection reset"))
    )
    assert step == Step(
        ActionStatus.UNKNOWN,
        REVOKED,
        error=(
            "connection reset; the re-read after it failed too (timed out): outcome unknown, "
            "settled on the next pass"
        ),
        started=True,
    )


# --- what counts as "as before" ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (ACTIVE, True),
        (ResourceState(exists=True, active=True, data=(*ACTIVE.data, ("group", "c")), identity=UID), True),
        (ResourceState(exists=True, active=False, data=ACTIVE.data, identity=UID), False),
        (ResourceState(exists=False, active=True, data=ACTIVE.data, identity=UID), False),
        (ResourceState(exists=True, active=True, data=(("group", "a"),), identity=UID), False),
    ],
    ids=["same", "more-groups", "inactive", "missing", "lacks-a-group"],
)
def test_as_before_needs_the_same_existence_the_same_activity_and_the_specs_own_check(
    state: ResourceState, expected: bool
) -> None:
    assert as_before(ScriptedSpec(Script([])), state, ACTIVE) is expected


# --- the step's own verdicts --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "changed", "verified"),
    [
        (ActionStatus.APPLIED, True, True),
        (ActionStatus.RESTORED, True, True),
        (ActionStatus.NOOP, False, True),
        (ActionStatus.UNCHANGED, False, True),
        (ActionStatus.FAILED, False, False),
        (ActionStatus.UNKNOWN, False, False),
        (ActionStatus.TARGET_CHANGED, False, False),
        (ActionStatus.INTENT, False, False),
    ],
)
def test_only_applied_and_restored_changed_something_and_only_those_and_no_ops_are_verified(
    status: ActionStatus, changed: bool, verified: bool
) -> None:
    step = Step(status)
    assert (step.changed, step.verified) == (changed, verified)


def test_a_step_records_no_state_error_message_or_intent_unless_given() -> None:
    assert Step(ActionStatus.FAILED) == Step(ActionStatus.FAILED, None, None, None, "", False)


# --- settling an intent left by a process that died ---------------------------------------------

IN_PLACE = "recovered after an interruption: the change was found in place"


@pytest.mark.parametrize(
    ("prior", "status"),
    [(ACTIVE, ActionStatus.APPLIED), (None, ActionStatus.APPLIED), (REVOKED, ActionStatus.NOOP)],
    ids=["was-active", "prior-unknown", "was-inactive"],
)
def test_an_interrupted_apply_found_in_place_is_applied_unless_it_was_inactive_before(
    prior: ResourceState | None, status: ActionStatus
) -> None:
    assert settle_interrupted(TARGET, prior, False, REVOKED) == Step(status, message=IN_PLACE)


def test_an_interrupted_apply_not_in_place_is_failed_so_that_it_is_retried() -> None:
    why = "interrupted before the change took effect; it will be retried"
    assert settle_interrupted(TARGET, ACTIVE, False, ACTIVE) == Step(
        ActionStatus.FAILED, error=why, message=why
    )


def test_an_interrupted_undo_found_in_place_is_restored() -> None:
    assert settle_interrupted(TARGET, REVOKED, True, ACTIVE) == Step(
        ActionStatus.RESTORED, message="recovered after an interruption: the restore was found in place"
    )


def test_an_interrupted_undo_not_in_place_is_failed() -> None:
    why = "undo interrupted before the restore took effect"
    assert settle_interrupted(TARGET, REVOKED, True, REVOKED) == Step(
        ActionStatus.FAILED, error=why, message=why
    )


@pytest.mark.parametrize("undo_", [False, True])
def test_an_interrupted_action_whose_name_was_reused_is_target_changed_whatever_it_shows(undo_: bool) -> None:
    assert settle_interrupted(TARGET, ACTIVE, undo_, NEW_HIRE_REVOKED) == Step(
        ActionStatus.TARGET_CHANGED, error=REUSED, message=REUSED
    )
