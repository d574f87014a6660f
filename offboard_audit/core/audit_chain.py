"""The tamper-evident audit log: hash chain rules and verification.

Each event carries ``prev_hash`` (the hash of the event before it; the first event uses
:data:`GENESIS`) and its own ``hash`` = SHA-256 over the previous hash and the event's
content, sequence number included. Changing an event's content breaks its own hash;
deleting or reordering events breaks the sequence and the links. Storage
(``storage/actions.py``) appends under a lock so that concurrent writers never fork the chain.

What a chain alone cannot show is a cut-off tail (the newest events deleted). ``log verify``
therefore prints the head (last sequence number and hash): keep it somewhere else (a ticket,
a SIEM) and pass it back with ``--head`` to prove nothing was cut off since.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from offboard_audit.core.records import require_aware

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditEvent:
    """One event of the audit log as stored."""

    seq: int
    at: datetime
    kind: str
    actor: str
    run_id: str | None
    action_id: str | None
    payload_json: str
    prev_hash: str
    hash: str

    def __post_init__(self) -> None:
        require_aware(self.at, "AuditEvent.at")

    @property
    def payload(self) -> dict[str, Any]:
        value = json.loads(self.payload_json)
        return value if isinstance(value, dict) else {"value": value}


def canonical_payload(payload: Mapping[str, Any]) -> str:
    """The payload as stored: compact JSON with sorted keys, so the hash input is stable."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def event_hash(
    prev_hash: str,
    seq: int,
    at: datetime,
    kind: str,
    actor: str,
    run_id: str | None,
    action_id: str | None,
    payload_json: str,
) -> str:
    """SHA-256 over the previous hash and every field of the event."""
    require_aware(at, "at")
    content = json.dumps(
        [
            prev_hash,
            seq,
            at.astimezone(UTC).isoformat(timespec="microseconds"),
            kind,
            actor,
            run_id,
            action_id,
            payload_json,
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


def recompute(event: AuditEvent) -> str:
    return event_hash(
        event.prev_hash,
        event.seq,
        event.at,
        event.kind,
        event.actor,
        event.run_id,
        event.action_id,
        event.payload_json,
    )


@dataclass(frozen=True)
class ChainProblem:
    seq: int
    problem: str

    def __str__(self) -> str:
        return f"event {self.seq}: {self.problem}"


@dataclass(frozen=True)
class VerifyResult:
    events: int
    head_seq: int | None
    head_hash: str
    problems: tuple[ChainProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_chain(events: Iterable[AuditEvent], expected_head: str | None = None) -> VerifyResult:
    """Check every link of the chain (events in ``seq`` order) and name each broken event.

    * content edited: the stored hash does not match the recomputed one;
    * deleted: a gap in the sequence numbers, or a ``prev_hash`` that does not match the
      event before;
    * reordered: sequence numbers out of order, or links that do not match.

    ``expected_head`` (a hash printed by an earlier verify) must appear in the chain;
    otherwise the tail was cut off or replaced.
    """
    problems: list[ChainProblem] = []
    prev_hash = GENESIS
    prev_seq = 0
    count = 0
    head_seq: int | None = None
    seen_hashes: set[str] = set()
    for ev in events:
        count += 1
        if ev.seq <= prev_seq:
            problems.append(ChainProblem(ev.seq, f"out of order (comes after event {prev_seq})"))
        elif ev.seq != prev_seq + 1:
            missing = f"{prev_seq + 1}" if ev.seq == prev_seq + 2 else f"{prev_seq + 1} to {ev.seq - 1}"
            problems.append(ChainProblem(ev.seq, f"event(s) {missing} missing before it (deleted)"))
        recomputed = recompute(ev)
        if recomputed != ev.hash:
            problems.append(ChainProblem(ev.seq, "content edited: its hash does not match its content"))
        if ev.prev_hash != prev_hash:
            problems.append(
                ChainProblem(
                    ev.seq,
                    "link broken: prev_hash does not match the hash of the event before it "
                    "(an event before it was edited, deleted or moved)",
                )
            )
        seen_hashes.add(ev.hash)
        prev_hash = ev.hash
        prev_seq = max(prev_seq, ev.seq)
        head_seq = ev.seq
    if expected_head is not None and expected_head not in seen_hashes:
        problems.append(
            ChainProblem(
                head_seq or 0,
                f"expected head {expected_head[:16]}... not found: events were cut off or replaced",
            )
        )
    return VerifyResult(count, head_seq, prev_hash, tuple(problems))
