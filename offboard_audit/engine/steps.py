"""The steps of one action, the same for every connector: the only place that reads, checks the
identity, skips a no-op, changes, re-reads and verifies.

A connector declares what its actions are (:class:`~offboard_audit.core.protocols.ActionSpec`:
definition, ``read``, ``change``, ``restore``); these functions decide what to do with them.
They touch no storage: :class:`~offboard_audit.engine.revocation.RevocationEngine` passes
``on_intent``, which writes the intent event (with the state read before) and the action row
before anything can change, and records the returned :class:`Step` as the outcome.

Apply: read; a different or missing identity is ``target-changed`` (nothing touched); intent;
an object not active is a ``noop`` (no change, no second read); change; re-read; it must show
the same identity and not active, else ``failed``. Undo: read; identity; intent; an object
already as it was is ``unchanged``; restore; re-read; it must show the prior state. One read
before and one after each change: a spec reads more only where its write needs it (an IAM
policy's read-modify-write) or to re-check the identity right before a write its system
cannot make conditional (AWS ``GetUser``, LDAP), and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from offboard_audit.core.actions import ActionTarget, ResourceState, identity_mismatch
from offboard_audit.core.errors import OffboardError, RevokeError, TargetChanged
from offboard_audit.core.protocols import ActionSpec, Revoker
from offboard_audit.core.stored import ActionStatus


@dataclass(frozen=True, slots=True)
class Step:
    """What one apply or undo did.

    ``before``: the state read before anything changed (None when that read failed).
    ``after``: the state read after the change (``before`` when nothing was changed; None
    when the change or the re-read failed). ``started``: the checks passed and ``on_intent``
    ran, so the outcome belongs to a written intent.
    """

    status: ActionStatus
    before: ResourceState | None = None
    after: ResourceState | None = None
    error: str | None = None
    message: str = ""
    started: bool = False

    @property
    def changed(self) -> bool:
        return self.status in (ActionStatus.APPLIED, ActionStatus.RESTORED)

    @property
    def verified(self) -> bool:
        """The object is, as re-read, in the state the step was to leave it in."""
        return self.status in (
            ActionStatus.APPLIED,
            ActionStatus.NOOP,
            ActionStatus.RESTORED,
            ActionStatus.UNCHANGED,
        )


def describe(exc: BaseException) -> str:
    if isinstance(exc, OffboardError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def spec_for(revoker: Revoker, action: str, target: ActionTarget) -> ActionSpec:
    """The revoker's spec for ``action``, refusing a target of another credential kind."""
    spec = revoker.specs.get(action)
    if spec is None:
        known = ", ".join(revoker.specs)
        raise RevokeError(f"the {target.source} revoker has no action {action!r} (known: {known})")
    kind = spec.definition.credential_kind
    if target.credential_kind is not kind:
        raise RevokeError(f"{action} applies to {kind.value}, not {target.credential_kind.value}")
    return spec


def read_state(revoker: Revoker, action: str, target: ActionTarget) -> ResourceState:
    """The target's state now, as ``action`` sees it (crash recovery, tests)."""
    return spec_for(revoker, action, target).read(target)


def _nothing(_state: ResourceState) -> None:
    return None


def apply_step(
    revoker: Revoker,
    action: str,
    target: ActionTarget,
    on_intent: Callable[[ResourceState], None] = _nothing,
) -> Step:
    """Apply ``action`` to ``target`` (see the module docstring for the steps)."""
    read = _read_first(
        lambda: spec_for(revoker, action, target), target, on_intent, "the state before acting"
    )
    if isinstance(read, Step):
        return read
    spec, before = read
    if not before.active:
        # Already revoked, or gone: nothing to change (idempotent), and nothing more to read.
        message = "already revoked" if before.exists else "not found: nothing to revoke"
        return Step(ActionStatus.NOOP, before, before, message=message, started=True)
    after = _change_and_verify(spec, target, before, lambda: spec.change(target, before), None, "changed")
    if isinstance(after, Step):
        return after
    if after.active:
        error = "not verified: re-reading shows it still active"
        return Step(ActionStatus.FAILED, before, after, error=error, started=True)
    return Step(ActionStatus.APPLIED, before, after, started=True)


def as_before(spec: ActionSpec, state: ResourceState, prior: ResourceState) -> bool:
    """Whether ``state`` shows ``prior`` again (what an undo must achieve)."""
    return state.exists == prior.exists and state.active == prior.active and spec.restored(state, prior)


def undo_step(
    revoker: Revoker,
    action: str,
    target: ActionTarget,
    prior: ResourceState,
    on_intent: Callable[[ResourceState], None] = _nothing,
) -> Step:
    """Put ``prior`` (the state read before ``action`` was applied) back."""
    read = _read_first(lambda: _reversible(revoker, action, target), target, on_intent, "the current state")
    if isinstance(read, Step):
        return read
    spec, current = read
    restore = spec.restore
    assert restore is not None  # _reversible refused an irreversible action
    if as_before(spec, current, prior):
        return Step(ActionStatus.UNCHANGED, current, current, message="already as before", started=True)
    if not prior.active:
        # Undo only ever switches things back on; it never revokes what someone enabled since.
        error = "not restored: it was not active before the action, and undo never revokes"
        return Step(ActionStatus.FAILED, current, current, error=error, started=True)
    after = _change_and_verify(
        spec, target, current, lambda: restore(target, current, prior), prior, "restored"
    )
    if isinstance(after, Step):
        return after
    if not as_before(spec, after, prior):
        error = "not verified: re-reading does not show the prior state"
        return Step(ActionStatus.FAILED, current, after, error=error, started=True)
    return Step(ActionStatus.RESTORED, current, after, started=True)


def _reversible(revoker: Revoker, action: str, target: ActionTarget) -> ActionSpec:
    spec = spec_for(revoker, action, target)
    if spec.restore is None:
        raise RevokeError(f"{action} is irreversible: {spec.definition.description}")
    return spec


def _read_first(
    spec_of: Callable[[], ActionSpec],
    target: ActionTarget,
    on_intent: Callable[[ResourceState], None],
    what: str,
) -> tuple[ActionSpec, ResourceState] | Step:
    """The first read, before anything can change: the spec and the state it reads, once the
    identity is checked and ``on_intent`` has run; else the :class:`Step` to record (the spec or
    the read failed: ``failed``, saying ``what`` could not be read; the name now holds another
    object: ``target-changed``). Nothing was changed either way."""
    try:
        spec = spec_of()
        state = spec.read(target)
    except Exception as exc:
        return Step(ActionStatus.FAILED, error=f"could not read {what}: {describe(exc)}")
    mismatch = identity_mismatch(target, state)
    if mismatch is not None:
        return Step(ActionStatus.TARGET_CHANGED, before=state, error=mismatch)
    on_intent(state)
    return spec, state


def _change_and_verify(
    spec: ActionSpec,
    target: ActionTarget,
    before: ResourceState,
    call: Callable[[], None],
    undo_prior: ResourceState | None,
    done: str,
) -> Step | ResourceState:
    """Make the change (or the restore, when ``undo_prior`` is given) with ``call``, then read the
    target again to verify it independently of the spec. The :class:`Step` to record when it
    stops there (the call raised, the re-read failed, the name now holds another object), else
    the state the re-read shows, for the caller to check. ``done`` says what a call that
    returned did ("changed", "restored")."""
    try:
        call()
    except TargetChanged as exc:
        return Step(ActionStatus.TARGET_CHANGED, before, error=describe(exc), started=True)
    except Exception as exc:
        # A call that failed may still have reached the system (a connection reset after the
        # request was processed): what counts is what the object shows now.
        return _after_failed_call(spec, target, before, describe(exc), undo_prior=undo_prior)
    return _reread(
        spec,
        target,
        before,
        unreadable=lambda why: (
            f"{done}, but the re-read to verify it failed ({why}): settled on the next pass"
        ),
        moved=lambda mismatch: f"not verified: {mismatch}",
    )


def _reread(
    spec: ActionSpec,
    target: ActionTarget,
    before: ResourceState,
    *,
    unreadable: Callable[[str], str],
    moved: Callable[[str], str],
) -> Step | ResourceState:
    """Read the target again after the change (or restore) call, whether it returned or raised:
    the state it shows, or the :class:`Step` to record when the read fails (``unknown``, settled
    on the next pass) or the name now holds another object (``failed``). ``unreadable`` and
    ``moved`` word the error from the read's error or the identity mismatch."""
    try:
        now = spec.read(target)
    except Exception as exc:
        return Step(ActionStatus.UNKNOWN, before, error=unreadable(describe(exc)), started=True)
    mismatch = identity_mismatch(target, now)
    if mismatch is not None:
        return Step(ActionStatus.FAILED, before, now, error=moved(mismatch), started=True)
    return now


def _after_failed_call(
    spec: ActionSpec,
    target: ActionTarget,
    before: ResourceState,
    error: str,
    undo_prior: ResourceState | None,
) -> Step:
    """The change (or restore, when ``undo_prior`` is given) call raised: re-read the target and
    record what it shows, never the call's own claim. In place: ``applied``/``restored`` (the
    error is kept as the message); not in place: ``failed``, retried next time; the re-read fails
    too: ``unknown``, settled on the next pass like an interrupted intent."""
    now = _reread(
        spec,
        target,
        before,
        unreadable=lambda why: (
            f"{error}; the re-read after it failed too ({why}): outcome unknown, settled on the next pass"
        ),
        moved=lambda mismatch: f"{error}; then {mismatch}",
    )
    if isinstance(now, Step):
        return now
    note = f"the call reported an error ({error}) but re-reading shows the change in place"
    if undo_prior is None:
        if not now.active:
            return Step(ActionStatus.APPLIED, before, now, message=note, started=True)
        return Step(ActionStatus.FAILED, before, now, error=error, started=True)
    if as_before(spec, now, undo_prior):
        return Step(ActionStatus.RESTORED, before, now, message=note, started=True)
    return Step(ActionStatus.FAILED, before, now, error=error, started=True)


def settle_interrupted(
    target: ActionTarget, prior: ResourceState | None, undo: bool, state: ResourceState
) -> Step:
    """What an action (or undo) whose process died between its intent and its outcome amounts
    to, from ``state`` read now; it is never re-applied blind. ``prior`` is the state its
    intent recorded."""
    mismatch = identity_mismatch(target, state)
    if mismatch is not None:
        # Whatever the dead process did, the object under this name is another one now.
        return Step(ActionStatus.TARGET_CHANGED, error=mismatch, message=mismatch)
    if not undo:
        if not state.active:
            was_active = prior is None or prior.active
            status = ActionStatus.APPLIED if was_active else ActionStatus.NOOP
            return Step(status, message="recovered after an interruption: the change was found in place")
        error = "interrupted before the change took effect; it will be retried"
        return Step(ActionStatus.FAILED, error=error, message=error)
    if state.active:
        return Step(
            ActionStatus.RESTORED, message="recovered after an interruption: the restore was found in place"
        )
    error = "undo interrupted before the restore took effect"
    return Step(ActionStatus.FAILED, error=error, message=error)
