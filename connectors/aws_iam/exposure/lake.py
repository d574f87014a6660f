"""Events from a CloudTrail Lake event data store, for trails too large to scan file by file.

One query per run (``cloudtrail:StartQuery``), its results paged with ``GetQueryResults`` (each
page is one batch, stored with its checkpoint): only the event names that matter, from
``overlap`` before the checkpoint on. The checkpoint is the ``eventTime`` of the last row read;
Lake ingests an event minutes after the call, and not in ``eventTime`` order, so an event older
than the last one read may still arrive: each query goes back ``overlap`` (the trail reader's
late-delivery window, default 1 h) and skips the events already read in that window, which the
checkpoint's ``recent`` holds (``"<eventTime> <eventID>"``; a bare id, as older checkpoints
hold, dates from the position). An event Lake ingests more than ``overlap`` after a later one
was read is not seen.
Lake rows carry the scalar fields the query selects; ``requestParameters`` and
``responseElements`` come as JSON text and are parsed into the same record shape as a log
file's, so :func:`~connectors.aws_iam.exposure.translate.record_events` translates both.

A page with a malformed row fails the exposure scope of every account the source covers (one
failed batch each, like the Vault audit log fails every mount): the query mixes all accounts, so
a row that cannot be read may be any account's, and no account's findings may resolve on it. The
checkpoint stays after the last good page, so the next run reads the page again.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.aws_iam.exposure.cloudtrail import in_overlap
from connectors.aws_iam.exposure.translate import RELEVANT, MalformedRecord, record_events
from offboard_audit.core.errors import SourceError
from offboard_audit.core.exposure import Checkpoint, EventBatch
from offboard_audit.core.records import ScopeFailure

STREAM = "lake"
_COLUMNS = (
    "eventID",
    "eventTime",
    "eventSource",
    "eventName",
    "awsRegion",
    "recipientAccountId",
    "errorCode",
    "userIdentity.type",
    "userIdentity.arn",
    "userIdentity.principalid",
    "userIdentity.username",
    "userIdentity.sessioncontext.sourceidentity",
    "userIdentity.onbehalfof.userid",
    "userIdentity.sessioncontext.sessionissuer.type",
    "userIdentity.sessioncontext.sessionissuer.principalid",
    "userIdentity.sessioncontext.sessionissuer.arn",
    "userIdentity.sessioncontext.sessionissuer.username",
    "requestParameters",
    "responseElements",
)


_STORE_ID = re.compile(r"^[A-Za-z0-9-]{1,128}$")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?$")


def lake_query(event_data_store: str, since: str) -> str:
    """The query text. Both inserted values are checked against strict patterns first (an event
    data store id, a timestamp), so nothing else can reach the statement."""
    names = ", ".join(f"'{n}'" for n in sorted({n for _s, n in RELEVANT}))
    store = event_data_store.rsplit("/", 1)[-1]
    if not _STORE_ID.match(store):
        raise SourceError(f"lake_event_data_store {event_data_store!r} is not an event data store id or ARN")
    if not _TIME.match(since):
        raise SourceError(f"CloudTrail Lake checkpoint {since!r} is not a timestamp")
    select = f"SELECT {', '.join(_COLUMNS)} FROM {store} "  # noqa: S608 - validated above
    where = f"WHERE eventTime >= '{since}' AND eventName IN ({names}) AND errorCode IS NULL "
    return select + where + "ORDER BY eventTime, eventID"


def lake_time(t: datetime) -> str:
    """``t`` as Lake writes ``eventTime`` (UTC, milliseconds)."""
    t = t.astimezone(UTC)
    return f"{t:%Y-%m-%d %H:%M:%S}.{t.microsecond // 1000:03d}"


def _parse_time(value: str) -> datetime:
    """A Lake ``eventTime`` (UTC, without a zone) or a checkpoint's position."""
    t = datetime.fromisoformat(value)
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _resume(cp: Checkpoint) -> tuple[datetime, dict[str, datetime]]:
    """The checkpoint's position and the events read in the overlap before it (id -> time)."""
    try:
        position = _parse_time(cp.position)
    except ValueError:
        raise SourceError(f"CloudTrail Lake checkpoint {cp.position!r} is not a timestamp") from None
    read: dict[str, datetime] = {}
    for item in cp.recent:
        stamp, _sep, event_id = item.rpartition(" ")
        try:
            read[event_id] = _parse_time(stamp) if stamp else position
        except ValueError:
            read[event_id] = position  # kept: skipping it is right, only its time is unknown
    return position, read


def _json(value: str | None) -> Any:
    if not value:
        return {}
    return json.loads(value)


def row_record(row: list[Mapping[str, str]]) -> dict[str, Any]:
    """One Lake result row (a list of one-entry column maps) in a log file's record shape."""
    cells = {k: v for cell in row for k, v in cell.items()}
    identity: dict[str, Any] = {"type": cells.get("userIdentity.type"), "arn": cells.get("userIdentity.arn")}
    if cells.get("userIdentity.principalid"):
        # An IAM user's UserId: its identity (a re-created user of the same name is another).
        identity["principalId"] = cells["userIdentity.principalid"]
    if cells.get("userIdentity.username"):
        identity["userName"] = cells["userIdentity.username"]
    context: dict[str, Any] = {}
    if cells.get("userIdentity.sessioncontext.sourceidentity"):
        context["sourceIdentity"] = cells["userIdentity.sessioncontext.sourceidentity"]
    issuer = {
        field: cells[f"userIdentity.sessioncontext.sessionissuer.{field.lower()}"]
        for field in ("type", "principalId", "arn", "userName")
        if cells.get(f"userIdentity.sessioncontext.sessionissuer.{field.lower()}")
    }
    if issuer:
        # Who made a federated session (an IAM user): the session is linked as that user.
        context["sessionIssuer"] = issuer
    if context:
        identity["sessionContext"] = context
    if cells.get("userIdentity.onbehalfof.userid"):
        identity["onBehalfOf"] = {"userId": cells["userIdentity.onbehalfof.userid"]}
    return {
        "eventID": cells["eventID"],
        "eventTime": cells["eventTime"],
        "eventSource": cells["eventSource"],
        "eventName": cells["eventName"],
        "awsRegion": cells["awsRegion"],
        "recipientAccountId": cells.get("recipientAccountId"),
        "errorCode": cells.get("errorCode") or None,
        "userIdentity": identity,
        "requestParameters": _json(cells.get("requestParameters")),
        "responseElements": _json(cells.get("responseElements")),
    }


@dataclass(frozen=True, slots=True)
class LakeReader:
    """Permissions: ``cloudtrail:StartQuery``, ``cloudtrail:GetQueryResults``.

    ``overlap`` is how far before the checkpoint each query starts again (see the module
    docstring). ``scopes`` lists the accounts the source covers (the IAM source's, which the
    inventory reads too); it is asked only when a page fails, to fail each of them.
    """

    source: str
    cloudtrail: Any
    event_data_store: str
    lookback: timedelta
    overlap: timedelta
    scopes: Callable[[], Sequence[str]]
    sleep: Callable[[float], None] = time.sleep
    poll_limit: int = 600

    def read(self, checkpoints: Mapping[str, Checkpoint], now: datetime) -> Iterator[EventBatch]:
        cp = checkpoints.get(STREAM)
        read: dict[str, datetime] = {}  # event id -> eventTime, of those in the overlap
        if cp is None:
            # Whole milliseconds, as positions are stored: the next query starts where the kept
            # memo does.
            position = start = _parse_time(lake_time(now - self.lookback))
        else:
            position, read = _resume(cp)
            start = position - self.overlap
        already = set(read)  # read by an earlier run: the overlap returns them again
        statement = lake_query(self.event_data_store, lake_time(start))
        query_id = self.cloudtrail.start_query(QueryStatement=statement)["QueryId"]
        token: str | None = None
        for _ in range(self.poll_limit):
            params: dict[str, Any] = {"QueryId": query_id}
            if token:
                params["NextToken"] = token
            page = self.cloudtrail.get_query_results(**params)
            status = page.get("QueryStatus")
            if status in ("QUEUED", "RUNNING"):
                self.sleep(1.0)
                continue
            if status != "FINISHED":
                raise SourceError(
                    f"CloudTrail Lake query {query_id} ended {status}: {page.get('ErrorMessage', '')}"
                )
            events = []
            count = 0
            try:
                for row in page.get("QueryResultRows") or ():
                    count += 1
                    rec = row_record(row)
                    event_id = str(rec["eventID"])
                    if event_id in already:
                        continue
                    events.extend(record_events(rec, self.source, STREAM))
                    at = _parse_time(str(rec["eventTime"]))
                    read[event_id] = at
                    position = max(position, at)
            except (KeyError, ValueError, MalformedRecord) as exc:
                yield from self._failed(f"CloudTrail Lake query {query_id}: malformed row: {exc}")
                return
            read = {i: read[i] for i in in_overlap(read, position, self.overlap)}
            recent = tuple(sorted(f"{lake_time(at)} {i}" for i, at in read.items()))
            yield EventBatch(
                STREAM,
                "lake",
                events=tuple(events),
                checkpoint=Checkpoint(STREAM, lake_time(position), recent),
                events_seen=count,
            )
            token = page.get("NextToken")
            if not token:
                return
        raise SourceError(f"CloudTrail Lake query {query_id} did not finish")

    def _failed(self, error: str) -> Iterator[EventBatch]:
        """A failed batch for every account: a scope named after the stream ("lake") would
        belong to no finding, and the accounts' scopes would count as read."""
        for scope in self.scopes():
            yield EventBatch(STREAM, scope, failure=ScopeFailure(scope, error))
