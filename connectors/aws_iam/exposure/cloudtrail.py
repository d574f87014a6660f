"""CloudTrail log files in S3, read incrementally: one stream per ``.../CloudTrail/<region>/`` prefix.

Layouts: ``[prefix/]AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/<file>.json.gz`` and, for
organisation trails, ``[prefix/]AWSLogs/<o-id>/<account>/CloudTrail/...``. Streams are found with
``s3:ListBucket`` (delimiter listings: one per level); each is listed from its checkpoint with
``ListObjectsV2`` ``StartAfter`` and every new object fetched once (``s3:GetObject``), gunzipped
and parsed whole (memory is bounded by one object per worker, never by the number of events).

Checkpoint: the last key read. File names carry their delivery minute, so keys sort in delivery
order; a file delivered late into a minute already passed is caught by re-listing the last
``overlap`` (default 1 h) and reading only keys not in ``Checkpoint.recent`` (the keys read inside
that window). A malformed object (bad gzip, bad JSON, a relevant record missing a field) fails
the stream's account scope with the key named; the checkpoint stays before it, so it is read
again on the next run and never skipped silently.
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors._shared.fast_json import JSON_ERRORS, loads
from connectors.aws_iam.exposure.translate import MalformedRecord, record_events, records
from offboard_audit.core.exposure import Checkpoint, EventBatch, ExposureEvent
from offboard_audit.core.records import ScopeFailure

_ACCOUNT = re.compile(r"^\d{12}$")
_ORG = re.compile(r"^o-[a-z0-9]{10,32}$")
_DELIVERED = re.compile(r"_(\d{8}T\d{4})Z_")


# What a log object that cannot be read as a CloudTrail file raises (bad gzip, bad JSON, bad record).
_MALFORMED: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error, MalformedRecord, *JSON_ERRORS)


@dataclass(frozen=True, slots=True)
class Stream:
    """One ``.../CloudTrail/<region>/`` prefix of one account."""

    prefix: str
    account: str
    region: str


def _children(s3: Any, bucket: str, prefix: str) -> list[str]:
    """The next path level under ``prefix`` (names without the trailing slash)."""
    out: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, Delimiter="/"):
        for p in page.get("CommonPrefixes") or ():
            out.append(str(p["Prefix"])[len(prefix) :].rstrip("/"))
    return out


def discover(s3: Any, bucket: str, trail_prefix: str) -> list[Stream]:
    """Every account/region stream of the trail (both layouts)."""
    base = f"{trail_prefix}AWSLogs/"
    streams: list[Stream] = []
    accounts: list[tuple[str, str]] = []  # (account prefix, account id)
    for child in _children(s3, bucket, base):
        if _ACCOUNT.match(child):
            accounts.append((f"{base}{child}/", child))
        elif _ORG.match(child):
            for member in _children(s3, bucket, f"{base}{child}/"):
                if _ACCOUNT.match(member):
                    accounts.append((f"{base}{child}/{member}/", member))
    for account_prefix, account in accounts:
        for region in _children(s3, bucket, f"{account_prefix}CloudTrail/"):
            streams.append(Stream(f"{account_prefix}CloudTrail/{region}/", account, region))
    return streams


def _delivered_utc(key: str) -> datetime | None:
    """The delivery minute in a log file's name (``..._20250101T1205Z_...``)."""
    m = _DELIVERED.search(key.rsplit("/", 1)[-1])
    return datetime.strptime(m.group(1), "%Y%m%dT%H%M").replace(tzinfo=UTC) if m else None


def _start_after(
    stream: Stream, checkpoint: Checkpoint | None, now: datetime, lookback: timedelta, overlap: timedelta
) -> str:
    if checkpoint is None:
        return f"{stream.prefix}{(now - lookback):%Y/%m/%d}"
    t = _delivered_utc(checkpoint.position)
    if t is None:
        return checkpoint.position
    return f"{stream.prefix}{(t - overlap):%Y/%m/%d}"


def in_overlap(
    recent: Mapping[str, datetime | None], newest: datetime | None, overlap: timedelta
) -> tuple[str, ...]:
    """The items of ``recent`` (item -> its time) that the next run re-reads: at or after
    ``newest - overlap``, where the next run's window starts. An item of unknown time is kept
    (forgetting it could read it twice). Sorted, so a checkpoint is written the same each time."""
    return tuple(sorted(k for k, t in recent.items() if newest is None or t is None or t >= newest - overlap))


def parse_object(data: bytes, source: str, stream: str) -> tuple[list[ExposureEvent], int]:
    """The relevant events of one gzip log file and how many records it held."""
    raw = gzip.decompress(data)
    document = loads(raw)
    events: list[ExposureEvent] = []
    count = 0
    for rec in records(document):
        count += 1
        events.extend(record_events(rec, source, stream))
    return events, count


@dataclass(frozen=True, slots=True)
class TrailReader:
    """Reads the trail's streams for one source (see the module docstring).

    Permissions: ``s3:ListBucket`` and ``s3:GetObject`` on the trail bucket.
    """

    source: str
    s3: Any
    bucket: str
    trail_prefix: str
    lookback: timedelta
    overlap: timedelta
    workers: int = 4

    def read(self, checkpoints: Mapping[str, Checkpoint], now: datetime) -> Iterator[EventBatch]:
        for stream in discover(self.s3, self.bucket, self.trail_prefix):
            yield from self.read_stream(stream, checkpoints.get(stream.prefix), now)

    def _new_keys(self, stream: Stream, checkpoint: Checkpoint | None, now: datetime) -> Iterator[str]:
        start = _start_after(stream, checkpoint, now, self.lookback, self.overlap)
        recent = set(checkpoint.recent) if checkpoint else set()
        position = checkpoint.position if checkpoint else ""
        window = None
        if checkpoint is not None and (t := _delivered_utc(position)) is not None:
            window = t - self.overlap
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=stream.prefix, StartAfter=start
        )
        for page in pages:
            for obj in page.get("Contents") or ():
                key = str(obj["Key"])
                if not key.endswith(".json.gz"):
                    continue
                if checkpoint is not None and key <= position:
                    delivered = _delivered_utc(key)
                    late = window is not None and delivered is not None and delivered >= window
                    if key in recent or not late:
                        continue  # read before (or older than the late-delivery window)
                yield key

    def _fetch(self, key: str) -> bytes:
        body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def _failed(self, stream: Stream, key: str, exc: Exception) -> EventBatch:
        """The batch that ends ``stream`` at object ``key``, which could not be read or parsed."""
        where, what = f"s3://{self.bucket}/{key}", f"{type(exc).__name__}: {exc}"
        if isinstance(exc, _MALFORMED):
            error = f"CloudTrail object {where} is malformed: {what}"
        else:
            error = f"s3:GetObject {where} failed: {what}"
        return EventBatch(stream.prefix, stream.account, failure=ScopeFailure(stream.account, error))

    def read_stream(
        self, stream: Stream, checkpoint: Checkpoint | None, now: datetime
    ) -> Iterator[EventBatch]:
        """One batch per new object of ``stream``, in key order; stops at the first failure."""
        position = checkpoint.position if checkpoint else ""
        recent: dict[str, datetime | None] = {
            k: _delivered_utc(k) for k in (checkpoint.recent if checkpoint else ())
        }
        keys = self._new_keys(stream, checkpoint, now)
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            # A bounded window of fetches in flight, consumed in key order.
            pending: list[tuple[str, Any]] = []
            exhausted = False
            while True:
                while not exhausted and len(pending) < self.workers * 2:
                    key = next(keys, None)
                    if key is None:
                        exhausted = True
                        break
                    pending.append((key, pool.submit(self._fetch, key)))
                if not pending:
                    return
                key, future = pending.pop(0)
                try:
                    data = future.result()
                    events, count = parse_object(data, self.source, stream.prefix)
                except Exception as exc:
                    for _k, f in pending:
                        f.cancel()
                    yield self._failed(stream, key, exc)
                    return
                position = max(position, key)
                recent[key] = _delivered_utc(key)
                newest = _delivered_utc(position)
                keep = in_overlap(recent, newest, self.overlap)
                recent = {k: recent[k] for k in keep}
                yield EventBatch(
                    stream=stream.prefix,
                    scope=stream.account,
                    events=tuple(events),
                    checkpoint=Checkpoint(stream.prefix, position, keep),
                    events_seen=count,
                    bytes_read=len(data),
                    objects_read=1,
                )
