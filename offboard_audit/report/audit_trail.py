"""The audit trail around the database: keying the chain, anchoring it outside, verifying both.

* :func:`attach` gives a store's engine the audit key (``[audit] key_env``): every event appended
  through it from then on carries a MAC (``storage/actions.py``).
* :func:`write_anchor`, called after each pass (a CLI command, a daemon reconcile or job) that
  appended events, appends the newest event *this process* appended (sequence number, hash, and
  how many events the log held up to it) as one JSON line to ``[audit] anchor_file``. Only
  events this process wrote and saw committed are anchored: anchoring whatever head the
  database shows would vouch for events someone else may have forged.
* :func:`check_trail` verifies the chain (with the key, against the anchors) and compares the
  ``actions`` table with what the chain says (``core/chain_history.py``).

docs/revocation.md, "What the audit trail proves", says what each mode protects against.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from offboard_audit.config import Config
from offboard_audit.core.audit_chain import AuditEvent, ChainKey
from offboard_audit.core.chain_history import ChainAction, ChainHistory, Discrepancy, discrepancies
from offboard_audit.core.chain_verify import (
    Anchor,
    VerifyResult,
    anchor_line,
    mode_name,
    parse_anchor,
    verify_chain,
    what_it_proves,
)
from offboard_audit.core.stored import ActionRecord
from offboard_audit.storage.actions import events_up_to, iter_events, last_event, load_actions
from offboard_audit.storage.db import Database, take_appended, use_chain_key
from offboard_audit.storage.files import open_private_append

# The event `log anchor --start-keyed` appends right before it anchors the head: the one trace
# in the log itself that an anchor file was configured and written to.
AUDIT_KEY_SET = "audit-key-set"


@dataclass(frozen=True)
class AuditTrail:
    """``[audit]`` as the code uses it: the key (never printed) and the anchor file."""

    key: ChainKey | None = None
    anchor_file: Path | None = None

    @property
    def keyed(self) -> bool:
        return self.key is not None

    @property
    def anchored(self) -> bool:
        return self.anchor_file is not None

    @property
    def mode(self) -> str:
        return mode_name(self.keyed, self.anchored)

    @classmethod
    def from_config(cls, config: Config | None) -> AuditTrail:
        if config is None:
            return cls()
        return cls(config.audit.key, config.audit.anchor_file)


def attach(db: Database, trail: AuditTrail) -> None:
    """Key every event appended through ``db``'s engine (and every store sharing it)."""
    use_chain_key(db.engine, trail.key)


# --- anchors --------------------------------------------------------------------------------


def write_anchor(db: Database, trail: AuditTrail, now: datetime) -> Anchor | None:
    """Anchor the newest event this process appended through ``db``'s engine since the last
    anchor; None when it appended nothing (or no anchor file is configured).

    The daemon calls this after each reconcile and job, the CLI when a command ends; the
    returned anchor is what the notification channel is sent (:func:`anchor_text`).
    """
    if trail.anchor_file is None:
        return None
    event = take_appended(db.engine)
    if event is None:
        return None
    anchor = Anchor(now, event.seq, event.hash, events_up_to(db, event.seq))
    _append(trail.anchor_file, anchor)
    return anchor


def anchor_head(db: Database, trail: AuditTrail, now: datetime) -> Anchor | None:
    """Anchor the head as the database shows it now (``log anchor``: an operator who has just
    verified the log vouches for it, e.g. when anchoring is first set up)."""
    if trail.anchor_file is None:
        return None
    last = last_event(db)
    if last is None:
        return None
    anchor = Anchor(now, last.seq, last.hash, events_up_to(db, last.seq))
    _append(trail.anchor_file, anchor)
    return anchor


def _append(path: Path, anchor: Anchor) -> None:
    # One write() of one line on an O_APPEND descriptor: lines of concurrent writers never mix.
    with open_private_append(path) as fh:
        fh.write(anchor_line(anchor) + "\n")


def anchor_text(anchor: Anchor) -> str:
    """One line for the notification channel (a second copy of the anchor, off this host)."""
    return (
        f"offboard-audit audit log head: event {anchor.seq}, hash {anchor.hash}, "
        f"{anchor.count} events (anchored {anchor.at.isoformat()})"
    )


def anchor_data(anchor: Anchor) -> dict[str, object]:
    """The anchor as the JSON the anchor file holds (for machine-readable notifications)."""
    data = json.loads(anchor_line(anchor))
    assert isinstance(data, dict)
    return data


def read_anchors(path: Path) -> tuple[list[Anchor], list[str], bool]:
    """The anchors in ``path``, the lines that could not be read, and whether the file exists."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], [], False
    anchors: list[Anchor] = []
    problems: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            anchors.append(parse_anchor(line, number))
        except (ValueError, TypeError) as exc:
            problems.append(f"anchor file {path} line {number} is not an anchor: {exc}")
    return anchors, problems, True


# --- verification ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TrailCheck:
    """The chain verified (with the key, against the anchors) and the actions table compared."""

    result: VerifyResult
    discrepancies: tuple[Discrepancy, ...]
    anchor_problems: tuple[str, ...]
    notes: tuple[str, ...]
    actions: Mapping[str, ChainAction]
    keyed: bool
    anchored: bool
    # What could not be checked although it was asked for; not a problem by itself.
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.result.ok and not self.discrepancies and not self.anchor_problems

    @property
    def mode(self) -> str:
        return mode_name(self.keyed, self.anchored)

    @property
    def problems(self) -> list[str]:
        return [
            *(str(p) for p in self.result.problems),
            *self.anchor_problems,
            *(str(d) for d in self.discrepancies),
        ]

    @property
    def proves(self) -> list[str]:
        return what_it_proves(self.result, self.anchored)


def check_trail(
    db: Database,
    trail: AuditTrail,
    expected_head: str | None = None,
    *,
    rows: Sequence[ActionRecord] | None = None,
    expected: Iterable[str] | None = None,
    anchoring_now: int | None = None,
) -> TrailCheck:
    """Verify the whole chain once and compare ``rows`` (default: every action row) with it;
    actions in ``expected`` (default: every action in the chain) must have a row.

    ``anchoring_now``: the ``audit-key-set`` event this command has just written and is about
    to anchor (``log anchor --start-keyed``); it does not count as anchored yet."""
    anchors: list[Anchor] = []
    anchor_problems: list[str] = []
    notes: list[str] = []
    warnings: list[str] = []
    exists = True
    if trail.anchor_file is not None:
        anchors, anchor_problems, exists = read_anchors(trail.anchor_file)
    history = ChainHistory()
    started_keyed: list[int] = []
    result = verify_chain(
        _note_key_set(history.feed(iter_events(db)), started_keyed),
        expected_head,
        key=trail.key,
        anchors=anchors,
    )
    if trail.anchor_file is not None and not anchors and not anchor_problems:
        anchored_before = [seq for seq in started_keyed if anchoring_now is None or seq < anchoring_now]
        _no_anchors(
            trail.anchor_file, exists, result.events, anchored_before, anchor_problems, warnings, notes
        )
    actions = history.actions()
    table = load_actions(db) if rows is None else rows
    found = discrepancies(table, actions, actions.keys() if expected is None else expected)
    if result.keyed and trail.key is None:
        notes.append(
            f"{result.keyed} event(s) carry a MAC but no audit key is configured ([audit] key_env): "
            "their MACs were not checked"
        )
    return TrailCheck(
        result,
        tuple(found),
        tuple(anchor_problems),
        tuple(notes),
        actions,
        keyed=trail.keyed,
        anchored=trail.anchored,
        warnings=tuple(warnings),
    )


def _note_key_set(events: Iterable[AuditEvent], seqs: list[int]) -> Iterator[AuditEvent]:
    """``events`` as they are, noting the sequence numbers of ``audit-key-set`` events."""
    for ev in events:
        if ev.kind == AUDIT_KEY_SET:
            seqs.append(ev.seq)
        yield ev


def _no_anchors(
    path: Path,
    exists: bool,
    events: int,
    started_keyed: Sequence[int],
    problems: list[str],
    warnings: list[str],
    notes: list[str],
) -> None:
    """An anchor file that is missing or holds no anchor, said as what it means for this log.

    Deleting the anchor file and cutting the log's tail must not read as "ok". The log records
    no anchor, so only an ``audit-key-set`` event shows that anchoring happened (``log anchor
    --start-keyed`` anchors the head right after writing it): then the missing anchors are a
    problem. Otherwise anchoring may simply not be set up yet (``log anchor`` not run), which
    cannot be told from a deleted file: a warning naming what went unchecked.
    """
    state = "does not exist" if not exists else "holds no anchor"
    if events == 0:
        if not exists:
            notes.append(
                f"anchor file {path} does not exist yet: the audit log is empty, so nothing is missing"
            )
        return
    if started_keyed:
        problems.append(
            f"anchor file {path} {state}, but event {started_keyed[0]} (audit-key-set) was written by "
            "`log anchor --start-keyed`, which anchored the head in the anchor file: the anchors were "
            "deleted or emptied (or [audit] anchor_file names another file than it did then), so "
            "events cut off the end of the log cannot be ruled out; restore the file (the daemon's "
            "notification channel, if set up, has a copy of each anchor) and verify again"
        )
        return
    warnings.append(
        f"anchor file {path} {state}: none of the {events} events was checked against an anchor, so "
        "events cut off the end of the log, or the log replaced wholesale, would go unnoticed. The log "
        "does not record whether anchors were written before, so a deleted or emptied file cannot be "
        "told from anchoring not set up yet: if it held anchors, restore it (the daemon's notification "
        "channel, if set up, has a copy of each anchor) and verify again; if not, run `log anchor`"
    )
