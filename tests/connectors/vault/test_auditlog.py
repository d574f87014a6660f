"""The audit log read from files (no server): incremental by checkpoint, rotation by rename,
compression and copytruncate, lines still being written, malformed lines and damaged gzip files.
The lines are real OpenBao entries (``fixtures/audit.jsonl``)."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import connectors.vault.auditlog as auditlog
from connectors.vault.audit_entries import entry_events
from connectors.vault.auditlog import AuditLogReader
from offboard_audit.core.exposure import Checkpoint, EventBatch

FIXTURES = Path(__file__).parent / "fixtures"
LINES = [line + b"\n" for line in (FIXTURES / "audit.jsonl").read_bytes().splitlines()]
NOW = datetime.now(UTC)
SCOPES = ("secret", "transit")


def relevant(lines: list[bytes]) -> int:
    """How many events these lines hold (what the translation gives, see test_translate)."""
    return sum(len(entry_events(json.loads(x), "v", "s")) for x in lines)


@dataclass
class Ledger:
    """What the engine keeps between runs: checkpoints and event ids, from the batches."""

    checkpoints: dict[str, Checkpoint] = field(default_factory=dict)
    event_ids: list[str] = field(default_factory=list)

    def run(self, reader: AuditLogReader, now: datetime = NOW) -> tuple[int, int, list[EventBatch]]:
        """(lines read, new events, failed batches) of one run."""
        lines = events = 0
        failed: list[EventBatch] = []
        for batch in reader.read(dict(self.checkpoints), now):
            if batch.failure is not None:
                failed.append(batch)
                continue
            lines += batch.events_seen
            new = [e.event_id for e in batch.events if e.event_id not in self.event_ids]
            events += len(new)
            self.event_ids += new
            assert batch.checkpoint is not None
            self.checkpoints[batch.checkpoint.stream] = batch.checkpoint
        return lines, events, failed


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """Every file the reader opens."""
    seen: list[Path] = []
    real = auditlog._open

    def spy(f: auditlog.LogFile) -> auditlog.IO[bytes]:
        seen.append(f.path)
        return real(f)

    monkeypatch.setattr(auditlog, "_open", spy)
    yield seen


def reader(location: Path, **kw: object) -> AuditLogReader:
    return AuditLogReader("vault", location, SCOPES, **kw)  # type: ignore[arg-type]


def write(path: Path, lines: list[bytes], mode: str = "wb") -> None:
    with open(path, mode) as fh:
        fh.writelines(lines)


def test_a_rerun_reads_only_new_lines_and_opens_nothing_when_nothing_changed(
    tmp_path: Path, opened: list[Path]
) -> None:
    log = tmp_path / "audit.log"
    write(log, LINES[:40])
    ledger = Ledger()
    assert ledger.run(reader(log))[:2] == (40, relevant(LINES[:40]))
    opened.clear()
    assert ledger.run(reader(log))[:2] == (0, 0)
    assert opened == []  # same inode, size and time as its checkpoint: not even opened
    write(log, LINES[40:], "ab")
    assert ledger.run(reader(log))[:2] == (len(LINES) - 40, relevant(LINES[40:]))
    assert len(ledger.event_ids) == relevant(LINES)


def test_rename_rotation_then_compression_reads_each_line_once(tmp_path: Path, opened: list[Path]) -> None:
    log = tmp_path / "audit.log"
    write(log, LINES[:20])
    ledger = Ledger()
    assert ledger.run(reader(log))[0] == 20
    # More lines land in the file, then it is rotated away and a new one started.
    write(log, LINES[20:30], "ab")
    log.rename(tmp_path / "audit.log.1")
    write(log, LINES[30:45])
    assert ledger.run(reader(log))[0] == 10 + 15
    # logrotate compresses the rotated file (gzip keeps its time) and deletes the plain one.
    rotated = tmp_path / "audit.log.1"
    with open(rotated, "rb") as src, gzip.open(tmp_path / "audit.log.2.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    st = rotated.stat()
    os.utime(tmp_path / "audit.log.2.gz", ns=(st.st_atime_ns, st.st_mtime_ns))
    rotated.unlink()
    write(log, LINES[45:50], "ab")
    opened.clear()
    assert ledger.run(reader(log))[0] == 5
    # The gzip copy was opened once (its first line names the stream, already read to its end).
    assert sorted(p.name for p in opened) == ["audit.log", "audit.log.2.gz"]
    opened.clear()
    assert ledger.run(reader(log))[0] == 0
    assert opened == []  # the gzip file is complete and the plain one unchanged
    assert len(ledger.event_ids) == relevant(LINES[:50])


def test_a_directory_of_rotated_gzip_files_never_seen_is_read_whole(tmp_path: Path) -> None:
    folder = tmp_path / "audit"
    folder.mkdir()
    for i, part in enumerate((LINES[:25], LINES[25:50], LINES[50:])):
        with gzip.open(folder / f"audit-{i}.log.gz", "wb") as fh:
            fh.writelines(part)
        os.utime(folder / f"audit-{i}.log.gz", (1_000_000 + i, 1_000_000 + i))
    ledger = Ledger()
    assert ledger.run(reader(folder))[:2] == (len(LINES), relevant(LINES))
    assert ledger.run(reader(folder))[:2] == (0, 0)


def test_copytruncate_reads_the_copy_from_its_checkpoint_and_the_truncated_file_from_the_top(
    tmp_path: Path,
) -> None:
    log = tmp_path / "audit.log"
    write(log, LINES[:20])
    ledger = Ledger()
    ledger.run(reader(log))
    write(log, LINES[20:26], "ab")
    shutil.copy2(log, tmp_path / "audit.log-20260101")
    with open(log, "r+b") as fh:
        fh.truncate(0)
    write(log, LINES[26:30], "ab")
    assert ledger.run(reader(log))[0] == 6 + 4


def test_a_line_still_being_written_is_left_for_the_next_run(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    half = len(LINES[20]) // 2
    write(log, [*LINES[:20], LINES[20][:half]])
    ledger = Ledger()
    assert ledger.run(reader(log))[0] == 20
    write(log, [LINES[20][half:]], "ab")
    assert ledger.run(reader(log))[0] == 1


def test_a_malformed_line_fails_every_scope_naming_the_file_and_is_met_again_until_fixed(
    tmp_path: Path,
) -> None:
    log = tmp_path / "audit.log"
    bad = b'{"time": "2026-01-01T00:00:00Z", "type": "respo\n'
    write(log, [*LINES[:30], bad, *LINES[30:]])
    ledger = Ledger()
    lines, _events, failed = ledger.run(reader(log, batch_lines=10))
    assert lines == 30  # the three batches before it are kept, with their checkpoints
    assert [f.failure.scope for f in failed if f.failure] == list(SCOPES)
    offset = sum(len(x) for x in LINES[:30])
    assert all(
        f.failure and str(log) in f.failure.error and f"at byte {offset}" in f.failure.error for f in failed
    )
    # Never skipped: the next run meets it again, reading nothing before it twice.
    lines, _events, failed = ledger.run(reader(log, batch_lines=10))
    assert lines == 0 and len(failed) == 2
    # Fixed (the operator removed it): the rest is read.
    write(log, LINES)
    assert ledger.run(reader(log))[0] == len(LINES) - 30


def test_a_damaged_gzip_file_fails_every_scope_naming_it(tmp_path: Path) -> None:
    folder = tmp_path / "audit"
    folder.mkdir()
    data = gzip.compress(b"".join(LINES))
    (folder / "audit.log.1.gz").write_bytes(data[: len(data) // 2])
    _lines, _events, failed = Ledger().run(reader(folder))
    assert [f.failure.scope for f in failed if f.failure] == list(SCOPES)
    assert all(f.failure and "audit.log.1.gz" in f.failure.error for f in failed)


def test_entries_older_than_the_lookback_are_not_kept_on_the_first_read(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    write(log, LINES)
    newest = max(datetime.fromisoformat(x.split(b'"time":"')[1].split(b'"')[0].decode()) for x in LINES)
    late = newest + timedelta(days=400)
    short = reader(log, lookback_start=lambda now: now - timedelta(days=365))
    assert Ledger().run(short, now=late)[:2] == (len(LINES), 0)
    assert Ledger().run(short, now=newest)[1] == relevant(LINES)


def test_memory_does_not_depend_on_the_log_batches_are_bounded(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    write(log, LINES)
    sizes = [b.events_seen for b in reader(log, batch_lines=7).read({}, NOW)]
    assert max(sizes) == 7 and sum(sizes) == len(LINES)


def test_a_request_entry_torn_and_run_into_the_next_entry_is_malformed_not_skipped(tmp_path: Path) -> None:
    # Request entries are recognised by their shape and not parsed (they never make an event);
    # a torn write that runs one into the next response has two entry starts: parsed, malformed.
    request = next(x for x in LINES if b'"type":"request"' in x[:80])
    response = next(x for x in LINES if b'"type":"response"' in x[:80])
    log = tmp_path / "audit.log"
    write(log, [*LINES[:5], request[: len(request) // 2] + response, *LINES[5:]])
    lines, _events, failed = Ledger().run(reader(log, batch_lines=5))
    assert lines == 5 and len(failed) == len(SCOPES)
    offset = sum(len(x) for x in LINES[:5])
    assert all(f.failure and f"malformed at byte {offset}" in f.failure.error for f in failed)


def test_blank_lines_are_no_entries_and_hide_nothing(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    write(log, [*LINES[:10], b"\n", *LINES[10:]])
    lines, events, failed = Ledger().run(reader(log))
    assert (lines, events, failed) == (len(LINES), relevant(LINES), [])
