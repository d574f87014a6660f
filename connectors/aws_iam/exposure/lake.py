"""Events from a CloudTrail Lake event data store, for trails too large to scan file by file.

One query per run (``cloudtrail:StartQuery``), its results paged with ``GetQueryResults`` (each
page is one batch, stored with its checkpoint): only the event names that matter, newer than the
checkpoint (``eventTime`` of the last row read, ISO 8601; ``recent`` holds the event ids read at
that very time, which the next query's ``>=`` returns again and that are then skipped).
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
    "userIdentity.username",
    "userIdentity.sessioncontext.sourceidentity",
    "userIdentity.onbehalfof.userid",
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


def _json(value: str | None) -> Any:
    if not value:
        return {}
    return json.loads(value)


def row_record(row: list[Mapping[str, str]]) -> dict[str, Any]:
    """One Lake result row (a list of one-entry column maps) in a log file's record shape."""
    cells = {k: v for cell in row for k, v in cell.items()}
    identity: dict[str, Any] = {"type": cells.get("userIdentity.type"), "arn": cells.get("userIdentity.arn")}
    if cells.get("userIdentity.username"):
        identity["userName"] = cells["userIdentity.username"]
    if cells.get("userIdentity.sessioncontext.sourceidentity"):
        identity["sessionContext"] = {"sourceIdentity": cells["userIdentity.sessioncontext.sourceidentity"]}
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

    ``scopes`` lists the accounts the source covers (the IAM source's, which the inventory reads
    too); it is asked only when a page fails, to fail each of them.
    """

    source: str
    cloudtrail: Any
    event_data_store: str
    lookback: timedelta
    scopes: Callable[[], Sequence[str]]
    sleep: Callable[[float], None] = time.sleep
    poll_limit: int = 600

    def read(self, checkpoints: Mapping[str, Checkpoint], now: datetime) -> Iterator[EventBatch]:
        cp = checkpoints.get(STREAM)
        since = cp.position if cp else (now - self.lookback).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
        seen_at_position = set(cp.recent) if cp else set()
        query_id = self.cloudtrail.start_query(QueryStatement=lake_query(self.event_data_store, since))[
            "QueryId"
        ]
        token: str | None = None
        position = since
        recent = set(seen_at_position)
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
                    if rec["eventID"] in seen_at_position:
                        continue
                    events.extend(record_events(rec, self.source, STREAM))
                    at = str(rec["eventTime"])
                    if at > position:
                        position, recent = at, set()
                    recent.add(str(rec["eventID"]))
            except (KeyError, ValueError, MalformedRecord) as exc:
                yield from self._failed(f"CloudTrail Lake query {query_id}: malformed row: {exc}")
                return
            yield EventBatch(
                STREAM,
                "lake",
                events=tuple(events),
                checkpoint=Checkpoint(STREAM, position, tuple(sorted(recent))),
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
