"""The engine's per-action steps (``engine/steps.py``) with an in-memory system: what is read,
when the intent is written, what counts as a no-op and what verifies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from offboard_audit.core.actions import ActionDef, ActionTarget, ResourceState, Stage
from offboard_audit.core.errors import RevokeError, TargetChanged
from offboard_audit.core.protocols import ActionSpec, Restore
from offboard_audit.core.records import CredentialKind
from offboard_audit.engine.steps import apply_step, undo_step

TARGET = ActionTarget("mem", "mem", "bob", "bob", "K1", CredentialKind.ACCESS_KEY, account_uid="uid-bob")


@dataclass
class Memory:
    """One key of one account; ``calls`` lists every read, change and restore in order."""

    identity: str | None = "uid-bob"
    active: bool = True
    values: set[str] = field(default_factory=lambda: {"a", "b"})
    calls: list[str] = field(default_factory=list)
    # What the next change does to the account: re-create it under another identity, or nothing.
    change_effect: str = "revoke"
    restore_effect: str = "restore"


class MemorySpec:
    def __init__(self, memory: Memory, reversible: bool = True) -> None:
        self.memory = memory
        self.definition = ActionDef(
            "deactivate", CredentialKind.ACCESS_KEY, Stage.DISABLE, reversible, ("mem:write",), "deactivate"
        )
        self.restore: Restore | None = self._restore if reversible else None

    def read(self, target: ActionTarget) -> ResourceState:
        m = self.memory
        m.calls.append("read")
        data = tuple(("value", v) for v in sorted(m.values))
        return ResourceState(exists=True, active=m.active, data=data, identity=m.identity)

    def change(self, target: ActionTarget, before: ResourceState) -> None:
        m = self.memory
        m.calls.append("change")
        if m.change_effect == "refuse":
            raise TargetChanged("changed under us")
        if m.change_effect == "recreate":
            m.identity = "uid-new-hire"
        if m.change_effect in ("revoke", "recreate"):
            m.active = False

    def _restore(self, target: ActionTarget, current: ResourceState, prior: ResourceState) -> None:
        m = self.memory
        m.calls.append("restore")
        if m.restore_effect == "restore":
            m.active = True
            m.values |= {v for k, v in prior.data if k == "value"}
        elif m.restore_effect == "partly":
            m.active = True

    def restored(self, state: ResourceState, prior: ResourceState) -> bool:
        return set(state.data) >= set(prior.data)


class MemoryRevoker:
    actions: Mapping[str, ActionDef] = {}

    def __init__(self, spec: MemorySpec) -> None:
        self.specs: Mapping[str, ActionSpec] = {"deactivate": spec}


def run(memory: Memory, reversible: bool = True) -> tuple[MemoryRevoker, list[ResourceState]]:
    intents: list[ResourceState] = []
    return MemoryRevoker(MemorySpec(memory, reversible)), intents


def test_applied_reads_once_before_writes_the_intent_changes_and_reads_once_after() -> None:
    memory = Memory()
    revoker, intents = run(memory)
    step = apply_step(revoker, "deactivate", TARGET, intents.append)
    assert step.status == "applied" and step.changed and step.verified
    assert memory.calls == ["read", "change", "read"]
    assert intents == [step.before] and step.before is not None and step.before.active
    assert step.after is not None and not step.after.active


def test_an_object_already_revoked_is_a_noop_with_its_intent_and_no_change_or_second_read() -> None:
    memory = Memory(active=False)
    revoker, intents = run(memory)
    step = apply_step(revoker, "deactivate", TARGET, intents.append)
    assert step.status == "noop" and step.message == "already revoked" and step.started
    assert memory.calls == ["read"] and len(intents) == 1 and step.after == step.before


def test_another_identity_before_the_change_is_target_changed_without_intent_or_change() -> None:
    memory = Memory(identity="uid-new-hire")
    revoker, intents = run(memory)
    step = apply_step(revoker, "deactivate", TARGET, intents.append)
    assert step.status == "target-changed" and not step.started
    assert "uid-new-hire" in (step.error or "")
    assert memory.calls == ["read"] and intents == []


def test_a_spec_that_refuses_right_before_its_write_is_target_changed_after_the_intent() -> None:
    memory = Memory(change_effect="refuse")
    revoker, intents = run(memory)
    step = apply_step(revoker, "deactivate", TARGET, intents.append)
    assert step.status == "target-changed" and step.started and len(intents) == 1
    assert memory.active


def test_a_change_that_the_re_read_does_not_show_is_failed() -> None:
    memory = Memory(change_effect="nothing")
    revoker, _ = run(memory)
    step = apply_step(revoker, "deactivate", TARGET)
    assert step.status == "failed" and "still active" in (step.error or "")
    assert memory.calls == ["read", "change", "read"]


def test_a_re_read_that_shows_another_identity_is_failed_even_when_inactive() -> None:
    memory = Memory(change_effect="recreate")
    revoker, _ = run(memory)
    step = apply_step(revoker, "deactivate", TARGET)
    assert step.status == "failed" and "not verified" in (step.error or "")
    assert "uid-new-hire" in (step.error or "")


def test_a_failed_read_is_failed_before_any_intent_and_so_are_unknown_actions_and_kinds() -> None:
    revoker, intents = run(Memory())

    class Unreadable(MemorySpec):
        def read(self, target: ActionTarget) -> ResourceState:
            raise RevokeError("throttled")

    broken = MemoryRevoker(Unreadable(Memory()))
    step = apply_step(broken, "deactivate", TARGET, intents.append)
    assert step.status == "failed" and step.error == "could not read the state before acting: throttled"
    unknown = apply_step(revoker, "nuke", TARGET, intents.append)
    assert unknown.status == "failed" and "has no action 'nuke'" in (unknown.error or "")
    ssh = ActionTarget("mem", "mem", "bob", "bob", "K1", CredentialKind.SSH_KEY, account_uid="uid-bob")
    wrong = apply_step(revoker, "deactivate", ssh, intents.append)
    assert wrong.status == "failed" and "applies to access_key, not ssh_key" in (wrong.error or "")
    assert intents == []


PRIOR = ResourceState(exists=True, active=True, data=(("value", "a"), ("value", "b")), identity="uid-bob")


def test_undo_restores_what_is_missing_and_verifies_it_with_the_specs_own_check() -> None:
    memory = Memory(active=False, values={"a"})
    revoker, intents = run(memory)
    step = undo_step(revoker, "deactivate", TARGET, PRIOR, intents.append)
    assert step.status == "restored" and memory.values == {"a", "b"}
    assert memory.calls == ["read", "restore", "read"] and len(intents) == 1


def test_undo_of_an_object_already_as_before_is_unchanged_without_a_restore() -> None:
    memory = Memory()
    revoker, _ = run(memory)
    assert undo_step(revoker, "deactivate", TARGET, PRIOR).status == "unchanged"
    assert memory.calls == ["read"]


def test_an_active_object_missing_a_prior_value_is_not_as_before_and_gets_it_back() -> None:
    memory = Memory(values={"a"})
    revoker, _ = run(memory)
    assert undo_step(revoker, "deactivate", TARGET, PRIOR).status == "restored"
    assert memory.values == {"a", "b"}


def test_an_undo_whose_re_read_does_not_show_every_prior_value_is_failed() -> None:
    memory = Memory(active=False, values={"a"}, restore_effect="partly")
    revoker, _ = run(memory)
    step = undo_step(revoker, "deactivate", TARGET, PRIOR)
    assert step.status == "failed" and "does not show the prior state" in (step.error or "")


def test_undo_never_revokes_what_was_inactive_before_and_is_active_now() -> None:
    memory = Memory(active=True)
    revoker, _ = run(memory)
    inactive = ResourceState(exists=True, active=False, data=PRIOR.data, identity="uid-bob")
    step = undo_step(revoker, "deactivate", TARGET, inactive)
    assert step.status == "failed" and "never revokes" in (step.error or "")
    assert memory.calls == ["read"] and memory.active


def test_undo_of_an_irreversible_action_reads_nothing_and_of_a_reused_name_restores_nothing() -> None:
    memory = Memory(active=False)
    irreversible, intents = run(memory, reversible=False)
    step = undo_step(irreversible, "deactivate", TARGET, PRIOR, intents.append)
    assert step.status == "failed" and "irreversible" in (step.error or "")
    assert memory.calls == [] and intents == []
    memory.identity = "uid-new-hire"
    revoker, _ = run(memory)
    assert undo_step(revoker, "deactivate", TARGET, PRIOR).status == "target-changed"
    assert memory.calls == ["read"] and not memory.active
