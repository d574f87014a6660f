"""Audit chain holes found by mutation testing (issue 10, batch 3): an event's run id is part of
what verification recomputes, two disagreeing anchors are counted, and the "no MAC" problem names
the head even when a tampered log's only event is numbered 0.

Hashes and MACs are computed here with ``hashlib``/``hmac`` directly (as in
tests/unit/test_audit_chain_verify.py); chains are built in memory.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from offboard_audit.core.audit_chain import GENESIS, AuditEvent, ChainKey, recompute
from offboard_audit.core.chain_verify import Anchor, verify_chain

T = datetime(2026, 3, 1, tzinfo=UTC)
SECRET = b"k" * 32


def expected_hash(prev: str, seq: int, at: datetime, run_id: str | None) -> str:
    """The documented hash of an event of kind ``test`` by ``tester`` with action ``a<seq>``."""
    fields = [prev, seq, at.astimezone(UTC).isoformat(timespec="microseconds"), "test", "tester", run_id, f"a{seq}", "{}"]  # fmt: skip
    return hashlib.sha256(
        json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    ).hexdigest()


def chain(seqs: list[int], run_id: str | None = None) -> list[AuditEvent]:
    out: list[AuditEvent] = []
    prev = GENESIS
    for seq in seqs:
        at = T + timedelta(seconds=seq)
        h = expected_hash(prev, seq, at, run_id)
        out.append(AuditEvent(seq, at, "test", "tester", run_id, f"a{seq}", "{}", prev, h))
        prev = h
    return out


def test_an_events_run_id_is_hashed_so_verify_accepts_it_and_names_an_edit_of_it() -> None:
    events = chain([1, 2], run_id="r-7")
    assert recompute(events[0]) == expected_hash(GENESIS, 1, events[0].at, "r-7")
    assert verify_chain(events).ok
    events[1] = replace(events[1], run_id="r-8")
    assert [str(p) for p in verify_chain(events).problems] == [
        "event 2: content edited: its hash does not match its content"
    ]


def test_two_anchors_that_disagree_name_the_first_and_count_the_other() -> None:
    events = chain([1, 2, 3, 4])
    anchors = [
        Anchor(T + timedelta(hours=1), 2, events[1].hash, 5, line=1),
        Anchor(T + timedelta(hours=2), 4, events[3].hash, 9, line=2),
    ]
    (problem,) = verify_chain(events, anchors=anchors).problems
    assert problem.seq == 2
    assert str(problem).endswith(
        "5 when anchored; no earlier anchor agrees, so the change lies in events 1-2; "
        "1 later anchor(s) disagree too"
    )


def test_with_the_key_set_a_log_whose_only_event_is_numbered_0_is_named_at_event_0() -> None:
    result = verify_chain(chain([0]), key=ChainKey(SECRET))
    assert [(p.seq, str(p).split(":")[1].strip()) for p in result.problems] == [
        (0, "out of order (comes after event 0)"),
        (0, "no event carries a MAC although the audit key is set"),
    ]
