"""The file audit device's log, read incrementally, streamed, rotation-safe.

Where: ``audit_log`` names the log file (its rotated siblings ``<name>.*`` and ``<name>-*``,
plain or gzip, are read too: whatever was appended after the last run and rotated away since is
in them) or a directory of such files. Files are read oldest first (modification time).

Checkpoints: one per log file, keyed by the file's **content**: the SHA-256 of its first line
(every entry carries its own time and request id, so no two files start alike). A file keeps
that key when it is renamed (``audit.log`` -> ``audit.log.1``), compressed (``.1`` ->
``.2.gz``: the offset counts decompressed bytes) or copied by ``copytruncate``; the truncated or
re-created ``audit.log`` starts with another line and is a new stream. The checkpoint's position
records the byte offset after the last whole line stored, and the file's inode, size and
modification time: a file whose inode, size and time match its checkpoint is not opened at all,
and a gzip file read to its end is never read again.

Lines: each is parsed (every line, relevant or not: one that is not JSON is malformed) and
translated (``translate.entry_events``); a batch of events is yielded with the checkpoint after
its last line every ``batch_lines`` lines, so memory does not depend on the log's size. The last
line of a plain file without its newline is being written: it is left for the next run.

A malformed line (not JSON, not an audit entry, a relevant entry without its fields) or a
damaged gzip file stops that file: one failed batch per inventoried scope names the file and
the byte offset, the checkpoint stays before the line, and the next run meets it again. It is
never skipped silently: an operator fixes or removes the line (or moves the file away).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import chain
from pathlib import Path
from typing import IO, Any, cast

from connectors._shared.fast_json import JSON_ERRORS, loads
from connectors.vault.audit_entries import MalformedEntry, entry_events
from offboard_audit.core.errors import SourceError
from offboard_audit.core.exposure import Checkpoint, EventBatch, ExposureEvent
from offboard_audit.core.records import ScopeFailure

_GZIP_MAGIC = b"\x1f\x8b"
_BUFFER = 1 << 20
# A first line longer than this is not an audit entry (Vault's entries are a few KiB).
_MAX_FIRST_LINE = 64 << 20
STREAM_PREFIX = "vault-audit:"


@dataclass(frozen=True, slots=True)
class LogFile:
    path: Path
    gzip: bool
    inode: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class Position:
    """What a checkpoint's ``position`` holds (JSON)."""

    offset: int
    file: str = ""
    inode: str = ""
    size: int = -1
    mtime_ns: int = -1
    complete: bool = False

    def dumps(self) -> str:
        return json.dumps(
            {
                "offset": self.offset,
                "file": self.file,
                "inode": self.inode,
                "size": self.size,
                "mtime_ns": self.mtime_ns,
                "complete": self.complete,
            },
            separators=(",", ":"),
        )

    @classmethod
    def loads(cls, text: str) -> Position:
        try:
            raw = json.loads(text)
            return cls(
                offset=int(raw["offset"]),
                file=str(raw.get("file", "")),
                inode=str(raw.get("inode", "")),
                size=int(raw.get("size", -1)),
                mtime_ns=int(raw.get("mtime_ns", -1)),
                complete=bool(raw.get("complete", False)),
            )
        except (ValueError, KeyError, TypeError):
            return cls(0)  # an unreadable checkpoint: read the file again (event ids are deduplicated)


def _read_to_end(known: Position, f: LogFile) -> bool:
    """Whether ``f`` is, by inode, size and time, the file ``known`` was read to the end of."""
    same = known.size == f.size and known.mtime_ns == f.mtime_ns
    return same and (known.complete or (not f.gzip and known.offset == f.size))


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def discover(location: Path) -> list[LogFile]:
    """The log files of ``location`` (see the module docstring), oldest first."""
    if location.is_dir():
        candidates = [p for p in location.iterdir() if not p.name.startswith(".")]
    else:
        parent = location.parent
        if not parent.is_dir():
            raise SourceError(f"audit_log {location}: its directory does not exist")
        prefix = (f"{location.name}.", f"{location.name}-")
        candidates = [p for p in parent.iterdir() if p.name == location.name or p.name.startswith(prefix)]
        if not candidates:
            raise SourceError(f"audit_log {location}: no such file (nor rotated ones next to it)")
    files: list[LogFile] = []
    for p in candidates:
        try:
            st = p.stat()
            if not p.is_file():
                continue
            files.append(LogFile(p, _is_gzip(p), f"{st.st_dev}:{st.st_ino}", st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            continue  # rotated away while listing: its content is in the next name
        except OSError as exc:
            raise SourceError(f"audit_log {p}: {exc}") from exc
    # Oldest first; of a file and its compressed copy (same time: gzip keeps it) the plain one,
    # which is whole while the copy may still be being written.
    files.sort(key=lambda f: (f.mtime_ns, f.gzip, f.path.name))
    return files


def _open(f: LogFile) -> IO[bytes]:
    raw = open(f.path, "rb")  # noqa: SIM115 (closed by the caller through the wrapper)
    if not f.gzip:
        return raw
    # Lines are split by a large buffered reader in C over the decompressed stream (GzipFile's
    # own readline costs a Python call per line).
    inner = gzip.GzipFile(fileobj=io.BufferedReader(raw, _BUFFER), mode="rb")
    return cast(IO[bytes], io.BufferedReader(cast(Any, inner), _BUFFER))


def first_line(fh: IO[bytes], finished: bool) -> bytes | None:
    """The file's first whole line (its content key), or None when there is none yet. In a
    finished (gzip) file a last line without its newline is whole."""
    line = fh.readline(_MAX_FIRST_LINE)
    if not line:
        return None
    if not line.endswith(b"\n"):
        if len(line) >= _MAX_FIRST_LINE:
            raise MalformedEntry(f"first line longer than {_MAX_FIRST_LINE} bytes")
        return line if finished else None
    return line


def stream_of(line: bytes) -> str:
    return STREAM_PREFIX + hashlib.sha256(line.rstrip(b"\r\n")).hexdigest()


_MALFORMED: tuple[type[BaseException], ...] = (
    MalformedEntry,
    EOFError,
    zlib.error,
    gzip.BadGzipFile,
    UnicodeDecodeError,
    *JSON_ERRORS,
)


class AuditLogReader:
    """Reads the audit log of one source (see the module docstring).

    ``scopes`` are the scopes a malformed line fails (the inventoried mounts: nothing in them
    may be resolved while an entry that may concern them cannot be read). ``mounts`` maps the
    configured mounts to their engine for entries of servers that do not log ``mount_point``.
    """

    def __init__(
        self,
        source: str,
        location: Path,
        scopes: Sequence[str],
        mounts: Mapping[str, str] | None = None,
        namespace: str = "",
        lookback_start: Callable[[datetime], datetime] | None = None,
        batch_lines: int = 20_000,
    ) -> None:
        self.source = source
        self.location = location
        self.scopes = tuple(scopes) or ("",)
        self.mounts = dict(mounts or {})
        self.namespace = namespace
        self.lookback_start = lookback_start
        self.batch_lines = batch_lines

    def read(self, checkpoints: Mapping[str, Checkpoint], now: datetime) -> Iterator[EventBatch]:
        by_inode: dict[str, Position] = {}
        for cp in checkpoints.values():
            if cp.stream.startswith(STREAM_PREFIX):
                pos = Position.loads(cp.position)
                if pos.inode:
                    by_inode[pos.inode] = pos
        since = self.lookback_start(now) if self.lookback_start is not None else None
        seen: set[str] = set()
        for f in discover(self.location):
            known = by_inode.get(f.inode)
            if known is not None and _read_to_end(known, f):
                continue  # unchanged since it was read to the end: not even opened
            yield from self._read_file(f, checkpoints, seen, since)

    def _failure(self, stream: str, error: str) -> Iterator[EventBatch]:
        for scope in self.scopes:
            yield EventBatch(stream, scope, failure=ScopeFailure(scope, error))

    def _read_file(
        self, f: LogFile, checkpoints: Mapping[str, Checkpoint], seen: set[str], since: datetime | None
    ) -> Iterator[EventBatch]:
        try:
            fh = _open(f)
        except FileNotFoundError:
            return  # rotated away since the listing: read under its new name next time
        except OSError as exc:
            yield from self._failure(f"file:{f.path}", f"audit log {f.path} cannot be opened: {exc}")
            return
        with fh:
            try:
                head = first_line(fh, finished=f.gzip)
            except _MALFORMED as exc:
                yield from self._failure(f"file:{f.path}", _bad(f, 0, exc))
                return
            if head is None:
                return  # empty, or its first entry is still being written
            stream = stream_of(head)
            if stream in seen:
                return  # the same content under two names (compressed while we listed)
            seen.add(stream)
            cp = checkpoints.get(stream)
            pos = Position.loads(cp.position) if cp is not None else Position(0)
            if pos.complete:
                return
            start = pos.offset
            if not f.gzip and start > f.size:
                start = 0  # shorter than what was read: rewritten; events are deduplicated by id
            yield from self._lines(f, fh, stream, head, start, since)

    def _lines(
        self, f: LogFile, fh: IO[bytes], stream: str, head: bytes, start: int, since: datetime | None
    ) -> Iterator[EventBatch]:
        offset = 0
        pending: list[bytes] = [head]
        if start > 0:
            # Skip what earlier runs stored (for gzip: decompress and drop it).
            offset = len(head)
            pending = []
            try:
                while offset < start:
                    chunk = fh.read(min(_BUFFER, start - offset))
                    if not chunk:
                        break
                    offset += len(chunk)
            except _MALFORMED as exc:
                yield from self._failure(stream, _bad(f, offset, exc))
                return
            if offset < start:
                offset, pending = 0, []  # shorter than the checkpoint: read it again from the top
                fh.seek(0)
        events: list[ExposureEvent] = []
        count = consumed = 0
        first_batch = True
        gz = f.gzip
        source, mounts, namespace = self.source, self.mounts, self.namespace
        try:
            for line in chain(pending, fh):
                size = len(line)
                if not gz and line[-1:] != b"\n":
                    break  # still being written: the next run reads it whole
                # A blank line hides nothing; anything else must be an entry.
                if size > 2 or line.strip():
                    # _request_entry, inlined: it runs for every line.
                    if not (
                        line.startswith(_REQUEST_HEAD)
                        and _REQUEST_TYPE in line[:80]
                        and line.find(_REQUEST_HEAD, 1) < 0
                        and line.endswith(b"}\n")
                    ):
                        # orjson takes the trailing newline as whitespace.
                        for e in entry_events(loads(line), source, stream, mounts, namespace):
                            if since is None or e.at >= since:
                                events.append(e)
                    count += 1
                offset += size
                consumed += size
                if count >= self.batch_lines:
                    yield self._batch(f, stream, offset, False, events, count, consumed, first_batch)
                    events, count, consumed, first_batch = [], 0, 0, False
        except _MALFORMED as exc:
            # ``offset`` is where the bad line (or the damaged gzip data) starts.
            yield from self._failure(stream, _bad(f, offset, exc))
            return
        yield self._batch(f, stream, offset, gz, events, count, consumed, first_batch)

    def _batch(
        self,
        f: LogFile,
        stream: str,
        offset: int,
        complete: bool,
        events: list[ExposureEvent],
        count: int,
        consumed: int,
        first: bool,
    ) -> EventBatch:
        position = Position(offset, f.path.name, f.inode, f.size, f.mtime_ns, complete)
        # Events go with the scope of their mount; the batch's own scope is the first inventoried one.
        return EventBatch(
            stream=stream,
            scope=self.scopes[0],
            events=tuple(events),
            checkpoint=Checkpoint(stream, position.dumps()),
            events_seen=count,
            bytes_read=consumed,
            objects_read=1 if first else 0,
        )


_REQUEST_HEAD = b'{"time":"'
_REQUEST_TYPE = b'"type":"request"'


def _request_entry(line: bytes) -> bool:
    """Whether ``line`` is, by its shape, one whole *request* entry of the file audit device
    (``{"time":"...","type":"request",...}``, one entry start, closed): it repeats what the
    call's response entry says, so it is never an event and is not parsed. Anything else
    (a response, an entry of another shape, two entries run together by a torn write) is
    parsed in full, and fails as malformed if it is not JSON."""
    return (
        line.startswith(_REQUEST_HEAD)
        and _REQUEST_TYPE in line[:80]
        and line.find(_REQUEST_HEAD, 1) < 0
        and line.rstrip(b"\r\n").endswith(b"}")
    )


def _bad(f: LogFile, offset: int, exc: BaseException) -> str:
    what = "gzip file" if f.gzip else "file"
    where = f"{offset} of the decompressed content" if f.gzip else str(offset)
    return (
        f"audit log {what} {f.path} is malformed at byte {where}: {type(exc).__name__}: {exc} "
        "(the line is read again on every run until it is fixed or the file moved away)"
    )
