"""Exposure events from Cloud Audit Logs, read incrementally through the Logging API.

One stream per project (and per organization / folder the IAM source scans, active sub-folders
included: their own audit logs hold their ``SetIamPolicy`` calls), named ``logs:<resource>``. Each run makes one
``entries.list`` (``logging.logEntries.list``; Data Access entries also need
``logging.privateLogEntries.list``) per stream, paged, with::

    logName:"cloudaudit.googleapis.com" AND timestamp>="<start>" AND timestamp<="<now>"
    AND (protoPayload.methodName="google.iam.admin.v1.CreateServiceAccountKey" OR ...)

ordered by ``timestamp asc``. ``<start>`` is the checkpoint (the last timestamp read, or the
run's ``now`` once a stream was read to the end) minus ``overlap``: Cloud Logging may receive an
entry after later ones, and the overlap re-reads that window. Entries already read in it are in
the checkpoint's ``recent`` (``"<timestamp> <insertId>"``) and skipped. The first read of a
stream starts ``lookback`` before ``now``.

Each page is one batch, stored with its checkpoint before the next page is asked for. A page
that cannot be fetched (or holds a malformed relevant entry) ends the stream with a failed
batch: the checkpoint stays after the last good page, the stream's scope is failed for this run
(its findings kept, stale, none resolved) and it is read again from there next run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from connectors.gcp_iam.clients import api_errors, describe_error
from connectors.gcp_iam.exposure.translate import (
    FILTER_EXACT,
    FILTER_SUBSTRING,
    MalformedEntry,
    entry_events,
    entry_json,
    format_time,
    parse_time,
)
from offboard_audit.core.exposure import Checkpoint, EventBatch, ExposureEvent
from offboard_audit.core.records import ScopeFailure

STREAM_PREFIX = "logs:"


def log_filter(start: datetime, end: datetime) -> str:
    """The ``entries.list`` filter: audit logs, the relevant methods, ``start <= timestamp <= end``."""
    methods = [f'protoPayload.methodName="{m}"' for m in FILTER_EXACT]
    methods += [f'protoPayload.methodName:"{m}"' for m in FILTER_SUBSTRING]
    return (
        'logName:"cloudaudit.googleapis.com" '
        f'AND timestamp>="{format_time(start)}" AND timestamp<="{format_time(end)}" '
        f"AND ({' OR '.join(methods)})"
    )


def stream_of(resource: str) -> str:
    return f"{STREAM_PREFIX}{resource}"


def scope_of(resource: str) -> str:
    """``projects/P`` -> ``P``; ``organizations/N`` and ``folders/F`` stay as they are."""
    return resource.split("/", 1)[1] if resource.startswith("projects/") else resource


class _Recent:
    """Entries read at or after ``position - overlap``: the next run's overlap returns them again."""

    def __init__(self, checkpoint: Checkpoint | None) -> None:
        self.items: dict[str, datetime] = {}
        for item in checkpoint.recent if checkpoint else ():
            stamp, _sep, insert_id = item.partition(" ")
            try:
                self.items[insert_id] = parse_time(stamp)
            except ValueError:
                continue  # an unreadable memo only costs a re-read, which the store deduplicates

    def seen(self, insert_id: str) -> bool:
        return insert_id in self.items

    def add(self, insert_id: str, at: datetime) -> None:
        self.items[insert_id] = at

    def checkpoint(self, stream: str, position: datetime, overlap: timedelta) -> Checkpoint:
        since = position - overlap
        kept = sorted((at, i) for i, at in self.items.items() if at >= since)
        self.items = {i: at for at, i in kept}
        return Checkpoint(stream, format_time(position), tuple(f"{format_time(at)} {i}" for at, i in kept))


@dataclass(frozen=True, slots=True)
class AuditLogReader:
    """Reads the audit-log streams of some resources (see the module docstring)."""

    source: str
    client: Any
    lookback: timedelta
    overlap: timedelta
    page_size: int
    retry: Any = None
    timeout: float | None = None

    def read(
        self, resources: Sequence[str], checkpoints: Mapping[str, Checkpoint], now: datetime
    ) -> Iterator[EventBatch]:
        for resource in resources:
            yield from self.read_stream(resource, checkpoints.get(stream_of(resource)), now)

    def read_stream(
        self, resource: str, checkpoint: Checkpoint | None, now: datetime
    ) -> Iterator[EventBatch]:
        stream = stream_of(resource)
        scope = scope_of(resource)
        recent = _Recent(checkpoint)
        if checkpoint is not None:
            position = parse_time(checkpoint.position)
            start = position - self.overlap
        else:
            position = now - self.lookback
            start = position
        request = {
            "resource_names": [resource],
            "filter": log_filter(start, now),
            "order_by": "timestamp asc",
            "page_size": self.page_size,
        }
        # The page being fetched: the client fetches the first one in list_log_entries itself.
        page_no = 1
        try:
            pager = self.client.list_log_entries(request=request, retry=self.retry, timeout=self.timeout)
            for page in pager.pages:
                events: list[ExposureEvent] = []
                seen = 0
                for entry in page.entries:
                    seen += 1
                    insert_id = str(entry.insert_id)
                    if recent.seen(insert_id):
                        continue
                    raw = entry_json(entry)
                    if not raw.get("timestamp"):
                        raise MalformedEntry(f"entry {insert_id or '?'} has no timestamp")
                    events.extend(entry_events(raw, self.source, stream))
                    at = parse_time(str(raw["timestamp"]))
                    recent.add(insert_id, at)
                    position = max(position, at)
                yield EventBatch(
                    stream=stream,
                    scope=scope,
                    events=tuple(events),
                    checkpoint=recent.checkpoint(stream, position, self.overlap),
                    events_seen=seen,
                    bytes_read=type(page).pb(page).ByteSize(),
                    objects_read=1,
                )
                page_no += 1
        except MalformedEntry as exc:
            yield _failed(stream, scope, f"entries.list {resource}, page {page_no}: {exc}")
            return
        except api_errors() as exc:
            yield _failed(stream, scope, f"entries.list {resource}, page {page_no}: {describe_error(exc)}")
            return
        # Read to the end: everything up to ``now`` is in. The next run starts from ``now`` (less
        # the overlap), not from the last entry, so a quiet project is not re-scanned for a year.
        yield EventBatch(stream=stream, scope=scope, checkpoint=recent.checkpoint(stream, now, self.overlap))


def _failed(stream: str, scope: str, error: str) -> EventBatch:
    return EventBatch(stream=stream, scope=scope, failure=ScopeFailure(scope, error))
