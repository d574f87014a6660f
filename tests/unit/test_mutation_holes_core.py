"""Pure functions whose behaviour no other test pinned down (issue 10, mutation survivors):
error descriptions, id lists in run notes, the superseded-event reason, the anchor's UTC time
and what a verification proves, and how the chain history reads actions and rows.

Expected values are written out by hand (times, JSON), never computed with the product's helpers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from offboard_audit.core.audit_chain import AuditEvent
from offboard_audit.core.chain_history import Discrepancy, chain_actions, discrepancies
from offboard_audit.core.chain_verify import Anchor, VerifyResult, anchor_line, what_it_proves
from offboard_audit.core.errors import SourceError
from offboard_audit.core.people import ChangeDecision, ChangeOutcome, HRMerge, PersonChange, decide_change
from offboard_audit.core.records import HRRead, PersonStatus
from offboard_audit.core.stored import ActionRecord, PersonState
from offboard_audit.engine.collect import describe
from offboard_audit.engine.hr import ChangeNotApplied, HRState, hr_source_run
from tests.support.configs import config_with
from tests.support.fakes import action_record, person

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# --- engine/collect.describe -----------------------------------------------------------------


class QuotaExceeded(Exception):
    pass


def test_an_error_is_described_by_its_own_type_and_text_and_a_blank_one_by_its_type_alone() -> None:
    assert describe(QuotaExceeded("  rate exceeded \n")) == "QuotaExceeded: rate exceeded"
    assert describe(QuotaExceeded()) == "QuotaExceeded"
    assert describe(QuotaExceeded("   ")) == "QuotaExceeded"
    assert describe(SourceError("HR read returned nobody")) == "HR read returned nobody"


# --- engine/hr: the id lists in an HR source's notes -------------------------------------------


def kept_terminated_note(tmp_path: Path, ids: list[str]) -> str:
    source = config_with(tmp_path).hr_sources[0]
    merge = HRMerge((), (), tuple(ids), (), 0, len(ids))
    state = HRState(source, read=HRRead(()), merge=merge)
    (note,) = (w for w in hr_source_run(state).warnings if "sticky" in w)
    return note


@pytest.mark.parametrize(
    ("count", "listed"),
    [
        (1, "E0"),
        (20, ", ".join(f"E{i}" for i in range(20))),
        (21, ", ".join(f"E{i}" for i in range(20)) + " and 1 more"),
        (25, ", ".join(f"E{i}" for i in range(20)) + " and 5 more"),
    ],
)
def test_a_note_lists_at_most_twenty_ids_and_counts_the_rest(tmp_path: Path, count: int, listed: str) -> None:
    note = kept_terminated_note(tmp_path, [f"E{i}" for i in range(count)])
    assert note == (
        f"{count} terminated people missing from this read were kept as terminated "
        f"(terminations are sticky): {listed}"
    )


# --- core/people: a superseded HR event --------------------------------------------------------


def superseded_decision() -> ChangeDecision:
    stored = PersonState(
        person("E7"), changed_at=datetime(2026, 3, 1, 12, 0, tzinfo=UTC), changed_by="webhook evt-2"
    )
    change = PersonChange(
        "E7",
        PersonStatus.TERMINATED,
        terminated_at=datetime(2026, 2, 1, tzinfo=UTC),
        effective_at=datetime(2026, 2, 28, 9, 30, tzinfo=timezone(timedelta(hours=1))),
    )
    return decide_change([stored], change, "hr")


def test_a_superseded_event_says_when_it_took_effect_and_when_the_last_change_was() -> None:
    decision = superseded_decision()
    assert decision.outcome is ChangeOutcome.SUPERSEDED
    assert decision.reason == (
        "superseded: effective_at 2026-02-28T09:30:00+01:00 is before the last applied status "
        "change of employee 'E7' at 2026-03-01T12:00:00+00:00 (webhook evt-2); nothing changed"
    )


def test_a_change_not_applied_reads_as_the_reason_it_was_not_applied() -> None:
    decision = superseded_decision()
    exc = ChangeNotApplied(decision)
    assert str(exc) == decision.reason and exc.decision is decision


# --- core/chain_verify: anchors and what a verification proves ---------------------------------


def test_an_anchor_refuses_a_naive_time_and_names_the_field() -> None:
    with pytest.raises(ValueError, match=r"^Anchor\.at must be timezone-aware"):
        Anchor(datetime(2026, 3, 1, 12, 0), 1, "ab" * 32, 1)


@pytest.fixture
def local_zone_not_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset to change the local zone in process")
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("local_zone_not_utc")
def test_an_anchor_line_is_in_utc_whatever_the_local_time_zone() -> None:
    assert datetime(2026, 3, 1, 12, 0, tzinfo=UTC).astimezone().utcoffset() == timedelta(hours=5, minutes=30)
    anchor = Anchor(datetime(2026, 3, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))), 5, "ab" * 32, 5)
    assert json.loads(anchor_line(anchor))["at"] == "2026-03-01T12:00:00+00:00"


def test_a_log_keyed_from_its_second_event_says_its_first_event_was_written_unkeyed() -> None:
    result = VerifyResult(3, 3, "c" * 64, (), keyed=2, first_keyed=2, last_keyed=3, macs_checked=True)
    assert what_it_proves(result, anchored=False)[0] == (
        "event 1: written before the audit key was set (unkeyed); event 2's MAC covers them from "
        "the moment it was written, not before"
    )
    keyed_from_start = VerifyResult(
        3, 3, "c" * 64, (), keyed=3, first_keyed=1, last_keyed=3, macs_checked=True
    )
    assert what_it_proves(keyed_from_start, anchored=False)[0].startswith("events 1-3: keyed;")


# --- core/chain_history ------------------------------------------------------------------------

DESCRIPTION: dict[str, Any] = {
    "finding_id": "f-1",
    "person": "E7",
    "plan_id": "p-1",
    "source": "aws-main",
    "system": "aws",
    "scope": "111111111111",
    "account_id": "acct-bob",
    "account_uid": "AIDA-bob",
    "username": "bob",
    "credential_id": "AKIA1",
    "credential_kind": "access_key",
    "action": "deactivate_key",
    "stage": "disable",
    "reversible": True,
    "undo_of": None,
}
PRIOR = {"exists": True, "active": True, "data": {"status": "Active"}, "identity": "AIDA-bob"}
AFTER = {"exists": True, "active": False, "data": {"status": "Inactive"}, "identity": "AIDA-bob"}


def ev(seq: int, kind: str, action_id: str, payload: dict[str, Any], at: datetime = T) -> AuditEvent:
    return AuditEvent(
        seq, at, kind, "cli:alice", None, action_id, json.dumps(payload), "p" * 64, f"{seq:064d}"
    )


def test_an_undo_whose_process_stopped_after_its_intent_is_an_intent() -> None:
    undo = {**DESCRIPTION, "action_id": "a-2", "plan_id": "undo", "undo_of": "a-1"}
    events = [
        ev(1, "intent", "a-1", {**DESCRIPTION, "action_id": "a-1", "prior_state": PRIOR}),
        ev(2, "outcome", "a-1", {**DESCRIPTION, "status": "applied", "error": None, "after": AFTER}),
        ev(3, "undo-intent", "a-2", {**undo, "restore_to": PRIOR, "current": AFTER}),
    ]
    actions = chain_actions(events)
    assert (actions["a-2"].status, actions["a-2"].error, actions["a-2"].prior_state) == (
        "intent",
        None,
        AFTER,
    )
    assert actions["a-1"].effective_status == "applied"


def test_an_action_whose_only_events_carry_no_status_is_an_intent() -> None:
    actions = chain_actions(
        [ev(1, "note", "a-1", dict(DESCRIPTION)), ev(2, "outcome", "a-2", {**DESCRIPTION, "error": "x"})]
    )
    assert [(a.status, a.error) for a in actions.values()] == [("intent", None), ("intent", None)]


def row(**changes: Any) -> ActionRecord:
    return action_record(T, **changes)


def test_a_row_the_chain_does_not_know_does_not_stop_the_rows_after_it_being_compared() -> None:
    chain = chain_actions(
        [
            ev(1, "intent", "a-1", {**DESCRIPTION, "action_id": "a-1", "prior_state": PRIOR}),
            ev(
                2,
                "outcome",
                "a-1",
                {**DESCRIPTION, "status": "applied", "error": None},
                T + timedelta(seconds=3),
            ),
        ]
    )
    assert discrepancies([row()], chain) == []
    found = discrepancies([row(action_id="a-forged"), row(actor="cli:mallory")], chain)
    assert found == [
        Discrepancy(
            "a-forged",
            "row",
            "in the actions table but not in the audit log (row added, or its events deleted)",
            "",
        ),
        Discrepancy("a-1", "actor", "'cli:mallory'", "'cli:alice'"),
    ]
