"""What the journal hands back to the operator (the revoke/undo table and ``--format json``) says
the same as what it wrote to the audit log. Found by a mutation run over
``offboard_audit/engine/journal.py`` (docs/mutation-survivors.md, "journal")."""

from __future__ import annotations

import json

from offboard_audit.storage.actions import iter_events
from tests.integration.test_revocation_identity import recreate_bob
from tests.support.revocation import NOW, Env


def test_an_undo_whose_call_failed_after_restoring_returns_the_note_it_logged(env: Env) -> None:
    env.audit()
    applied = env.engine().revoke(NOW, apply=True, person="E2")
    ak2 = next(o for o in applied.outcomes if o.credential_id == "AK2")
    env.world.update(lambda st: st.setdefault("reset_after", {}).update({"AK2": "Connection reset by peer"}))

    (undone,) = env.engine().undo_action(ak2.action_id, NOW).outcomes

    assert undone.status == "restored"
    assert undone.message == (
        "the call reported an error (ConnectionResetError: Connection reset by peer) but re-reading shows the "
        "change in place"
    )
    logged = [
        json.loads(e.payload_json)
        for e in iter_events(env.store)
        if e.kind == "undo-outcome" and e.action_id == undone.action_id
    ]
    assert [p["message"] for p in logged] == [undone.message]


def test_a_target_changed_outcome_has_its_reason_in_error_and_no_message(env: Env) -> None:
    env.audit()
    env.engine().plan(NOW, person="E2")
    env.world.update(recreate_bob)

    outcomes = env.engine().revoke(NOW, apply=True, person="E2").outcomes

    assert {o.status for o in outcomes} == {"target-changed"}
    assert all("uid-bob-NEW-HIRE" in (o.error or "") for o in outcomes)
    # The table shows ``error or message``: a message here would be shown instead of nothing.
    assert [o.message for o in outcomes] == ["", ""]
