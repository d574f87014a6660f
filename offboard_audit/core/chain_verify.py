"""Checking the audit chain of ``core/audit_chain.py``: anchors, verification, what a check proves.

* :class:`Anchor` is the chain's head as written outside the database; :func:`anchor_line` and
  :func:`parse_anchor` are one line of the anchor file.
* :func:`verify_chain` walks the events in ``seq`` order and names each broken link, each MAC
  that does not match (with the key) and the first event that disagrees with the anchors.
* :func:`what_it_proves` says in plain statements what a verification shows, part by part, for
  the mode the log is in (unkeyed, keyed, anchored: ``core/audit_chain.py`` and docs/revocation.md,
  "What the audit trail proves").

Pure: no I/O. Reading and writing the anchor file is ``report/audit_trail.py``'s job.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from offboard_audit.core.audit_chain import GENESIS, AuditEvent, ChainKey, recompute
from offboard_audit.core.records import require_aware_fields

# --- anchors --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Anchor:
    """The chain's head as written outside the database: event ``seq`` had ``hash`` and the
    log held ``count`` events up to it. ``line`` is its line in the anchor file (read back)."""

    at: datetime
    seq: int
    hash: str
    count: int
    line: int = 0

    def __post_init__(self) -> None:
        require_aware_fields(self, "at")


def anchor_line(anchor: Anchor) -> str:
    """One JSON line (no newline) of the anchor file."""
    return json.dumps(
        {
            "at": anchor.at.astimezone(UTC).isoformat(),
            "head_seq": anchor.seq,
            "head_hash": anchor.hash,
            "count": anchor.count,
        },
        separators=(",", ":"),
    )


def parse_anchor(text: str, line: int) -> Anchor:
    """An anchor file line; ``ValueError`` says what is wrong with it."""
    raw = json.loads(text)
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    seq, head, count, at = raw.get("head_seq"), raw.get("head_hash"), raw.get("count"), raw.get("at")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ValueError("head_seq must be a positive integer")
    if isinstance(head, str):
        # Hex in any case: an anchor copied back by hand (from the notification) is the same anchor.
        head = head.strip().lower()
    # Checked character by character: ``int(head, 16)`` would let "0x", "_" and inner spaces through,
    # and a non-hex head can never match a chain hash, so it is an unreadable line, not a disagreement.
    if not isinstance(head, str) or len(head) != 64 or not set(head) <= set("0123456789abcdef"):
        raise ValueError("head_hash must be 64 hex characters")
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError("count must be a non-negative integer")
    if not isinstance(at, str):
        raise ValueError("at must be an ISO 8601 time")
    when = datetime.fromisoformat(at)
    if when.tzinfo is None:
        raise ValueError("at must carry a UTC offset")
    return Anchor(when, seq, head, count, line)


# --- verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainProblem:
    seq: int
    problem: str

    def __str__(self) -> str:
        return f"event {self.seq}: {self.problem}"


@dataclass(frozen=True)
class VerifyResult:
    """What verification found. ``keyed`` events carry a MAC (checked only when
    ``macs_checked``); ``anchors_checked`` anchors were compared, ``anchored_seq`` is the
    newest anchored event that agrees."""

    events: int
    head_seq: int | None
    head_hash: str
    problems: tuple[ChainProblem, ...]
    keyed: int = 0
    first_keyed: int | None = None
    last_keyed: int | None = None
    macs_checked: bool = False
    anchors_checked: int = 0
    anchored_seq: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def _span(first: int, last: int) -> str:
    return f"event {first}" if first == last else f"events {first}-{last}"


def verify_chain(
    events: Iterable[AuditEvent],
    expected_head: str | None = None,
    *,
    key: ChainKey | None = None,
    anchors: Sequence[Anchor] = (),
) -> VerifyResult:
    """Check every link of the chain (events in ``seq`` order) and name each broken event.

    * content edited: the stored hash does not match the recomputed one;
    * deleted: a gap in the sequence numbers, or a ``prev_hash`` that does not match the
      event before;
    * reordered: sequence numbers out of order, or links that do not match;
    * with ``key``: a MAC that does not match (rewritten without the key), a MAC made with
      another key, and an event without a MAC after a keyed one (MAC stripped);
    * ``anchors``: each must name an event that has that hash, with that many events up to it;
      the first anchor that disagrees is named with the range the change lies in, and an anchor
      beyond the head means the tail was cut off.

    ``expected_head`` (a hash printed by an earlier verify) must appear in the chain;
    otherwise the tail was cut off or replaced. It is hex: compared trimmed and in any case
    (a head pasted in upper case is the same head, not a cut-off tail).
    """
    if expected_head is not None:
        expected_head = expected_head.strip().lower()
    problems: list[ChainProblem] = []
    prev_hash = GENESIS
    prev_seq = 0
    count = 0
    head_seq: int | None = None
    head_found = expected_head is None
    keyed = 0
    first_keyed: int | None = None
    last_keyed: int | None = None
    stripped: list[int] = []
    pending: dict[int, list[Anchor]] = {}
    for a in anchors:
        pending.setdefault(a.seq, []).append(a)
    # (anchor, why it disagrees or None)
    checked: list[tuple[Anchor, str | None]] = []
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
        if ev.mac is None:
            if first_keyed is not None:
                stripped.append(ev.seq)
        else:
            keyed += 1
            first_keyed = ev.seq if first_keyed is None else first_keyed
            last_keyed = ev.seq
            if key is not None:
                if ev.key_id != key.key_id:
                    problems.append(
                        ChainProblem(
                            ev.seq,
                            f"MAC made with another key (key id {ev.key_id}, the configured key is "
                            f"{key.key_id}): it cannot be checked",
                        )
                    )
                elif not hmac.compare_digest(ev.mac, key.event_mac(ev.hash)):
                    problems.append(
                        ChainProblem(
                            ev.seq,
                            "MAC does not match: the event (or one before it) was rewritten by "
                            "someone without the audit key",
                        )
                    )
        for a in pending.pop(ev.seq, ()):
            if a.hash != ev.hash:
                checked.append((a, f"the database has hash {ev.hash[:16]}..., the anchor {a.hash[:16]}..."))
            elif a.count != count:
                checked.append((a, f"{count} events up to it in the database, {a.count} when anchored"))
            else:
                checked.append((a, None))
        if not head_found and ev.hash.lower() == expected_head:
            head_found = True
        prev_hash = ev.hash
        prev_seq = max(prev_seq, ev.seq)
        head_seq = ev.seq
    if stripped:
        more = f"; {len(stripped) - 1} later event(s) lack it too" if len(stripped) > 1 else ""
        problems.append(
            ChainProblem(
                stripped[0],
                f"no MAC although event {first_keyed} before it has one: written without the audit "
                f"key, or its MAC removed{more}",
            )
        )
    if key is not None and count and first_keyed is None:
        # Without an outside reference this is the one trace of a chain whose MACs were all
        # stripped (or whose keyed tail was cut off): refuse to call it keyed and intact.
        problems.append(
            ChainProblem(
                head_seq or 0,
                "no event carries a MAC although the audit key is set: the chain (or its keyed part) "
                "was replaced or cut off by someone without the key, or nothing was written since the "
                "key was set (then the next event starts the keyed part)",
            )
        )
    for seq, left in pending.items():
        for a in left:
            if head_seq is None or seq > head_seq:
                why = f"the database ends at event {head_seq or 0}: events after it were cut off"
            else:
                why = "the database has no event with that number (deleted)"
            checked.append((a, why))
    anchored_seq = _anchor_problems(checked, problems)
    if expected_head is not None and not head_found:
        problems.append(
            ChainProblem(
                head_seq or 0,
                f"expected head {expected_head[:16]}... not found: events were cut off or replaced",
            )
        )
    return VerifyResult(
        count,
        head_seq,
        prev_hash,
        tuple(problems),
        keyed=keyed,
        first_keyed=first_keyed,
        last_keyed=last_keyed,
        macs_checked=key is not None,
        anchors_checked=len(checked),
        anchored_seq=anchored_seq,
    )


def _anchor_problems(checked: list[tuple[Anchor, str | None]], problems: list[ChainProblem]) -> int | None:
    """Name the first event that disagrees with the anchors (and the range the change lies in);
    return the newest anchored event that agrees, if none disagrees after it."""
    bad = sorted(((a, why) for a, why in checked if why is not None), key=lambda x: (x[0].seq, x[0].line))
    good = sorted((a for a, why in checked if why is None), key=lambda a: a.seq)
    if not bad:
        return good[-1].seq if good else None
    first, why = bad[0]
    before = [a for a in good if a.seq < first.seq]
    if before:
        since = f"events up to {before[-1].seq} agree with anchor line {before[-1].line}, so the change lies in {_span(before[-1].seq + 1, first.seq)}"
    else:
        since = f"no earlier anchor agrees, so the change lies in {_span(1, first.seq)}"
    more = f"; {len(bad) - 1} later anchor(s) disagree too" if len(bad) > 1 else ""
    problems.append(
        ChainProblem(
            first.seq,
            f"first event that disagrees with the anchors: anchor line {first.line} "
            f"(written {first.at.isoformat()}): {why}; {since}{more}",
        )
    )
    return before[-1].seq if before else None


# --- what a verification proves ---------------------------------------------------------------

UNKEYED = "unkeyed"
KEYED = "keyed"
ANCHORED = "anchored"


def mode_name(keyed: bool, anchored: bool) -> str:
    """``unkeyed``, ``keyed``, ``unkeyed+anchored`` or ``keyed+anchored``."""
    return (KEYED if keyed else UNKEYED) + (f"+{ANCHORED}" if anchored else "")


def what_it_proves(result: VerifyResult, anchored: bool) -> list[str]:
    """Plain statements of what this verification shows, part by part (docs/revocation.md)."""
    out: list[str] = []
    n = result.events
    if n == 0:
        return ["the audit log is empty"]
    fk, lk = result.first_keyed, result.last_keyed
    if fk is None or lk is None:
        out.append(
            f"{_span(1, n)}: unkeyed hash chain. The events are consistent with each other; anyone "
            "who can write to the database could rewrite and re-hash them undetected"
            + (" (the anchors below are what rules that out)" if anchored else "")
        )
    else:
        if fk > 1:
            out.append(
                f"{_span(1, fk - 1)}: written before the audit key was set (unkeyed); event {fk}'s MAC "
                "covers them from the moment it was written, not before"
            )
        if result.macs_checked:
            out.append(
                f"{_span(fk, lk)}: keyed; their MACs were checked with the audit key, so neither they "
                f"nor any event before them can have been rewritten by someone without the key"
            )
        else:
            out.append(
                f"{_span(fk, lk)}: keyed, but no audit key was given: their MACs were NOT checked, "
                "only the plain hash chain"
            )
    if anchored:
        if result.anchored_seq is not None:
            out.append(
                f"{_span(1, result.anchored_seq)}: agree with {result.anchors_checked} anchor(s) written "
                f"outside the database; events after {result.anchored_seq} are covered by no anchor yet"
            )
        else:
            out.append("no anchor confirms any event yet")
    else:
        out.append(
            "no anchors: events cut off the end of the log cannot be detected "
            "(keep the printed head, or set [audit] anchor_file)"
        )
    return out
