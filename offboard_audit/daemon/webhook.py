"""The HR webhook, health and metrics endpoints (FastAPI). Everything is injected; no globals.

Contract (design.md, "HR webhook contract"):

``POST /hooks/hr`` with a JSON body ``{"event_id", "event", "employee_id", "email",
"effective_at"}`` and the headers ``X-Offboard-Timestamp`` (unix seconds) and
``X-Offboard-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>">``.

Checked in this order, and a rejected request writes nothing:

- 413: body over 64 KiB (by Content-Length, or while reading it);
- 401: missing or malformed headers, or a signature that does not match (constant time);
- 409: timestamp more than 5 minutes from now;
- 422: body that is not the JSON object above;
- 409: an ``event_id`` seen before (the insert of the event is the replay check, so two
  replicas receiving the same event cannot both accept it).

Valid: 202 with ``{"job_id", "state", "status_url"}``; a queued job belongs to this daemon
instance (``node``) for ``job_lease`` (renewed while it holds the job; another replica takes it
over if it dies). ``GET /hooks/hr/jobs/{id}`` reports the job (``queued``, ``scheduled``,
``running``, ``incomplete``, ``done``, ``failed``, ``cancelled``, ``superseded``), its ``outcome``
(``refused`` and ``conflict`` tell two kinds of ``failed`` apart), what became of its event
(``event_status``: ``received``, ``applied``, ``superseded``, ``conflict``), the actions it took,
its owner and lease, and any takeover from a daemon that died.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from offboard_audit.core.job_json import action_json, takeover_json
from offboard_audit.core.jobs import EventStatus, HREvent, HREventType, Job, JobKind, JobState
from offboard_audit.core.stored import RunKind
from offboard_audit.daemon.metrics import CONTENT_TYPE, Metrics
from offboard_audit.report.json import JsonNumberTooLong, JsonTooDeep, loads_limited
from offboard_audit.storage.store import Store
from offboard_audit.storage.webhook_store import WebhookStore, new_job_id

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
WINDOW = timedelta(minutes=5)
TIMESTAMP_HEADER = "X-Offboard-Timestamp"
SIGNATURE_HEADER = "X-Offboard-Signature"
MAX_ID = 128
MAX_EMAIL = 320
DEFAULT_JOB_LEASE = timedelta(seconds=30)
_EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(hours=16)
_LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(hours=16)

_KIND_FOR_EVENT = {
    HREventType.TERMINATED: JobKind.TERMINATE,
    HREventType.REHIRED: JobKind.REHIRE,
    HREventType.UPDATED: JobKind.UPDATE,
}


class JobRunner(Protocol):
    """Runs queued jobs (in the daemon: a thread pool). ``submit`` must not block."""

    def submit(self, job_id: str) -> None: ...


@dataclass(frozen=True)
class WebhookSettings:
    secret: bytes
    window: timedelta = WINDOW
    max_body: int = MAX_BODY


def sign(secret: bytes, timestamp: int | str, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp`` (used by clients and tests)."""
    mac = hmac.new(secret, f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class Rejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def verify(
    headers: Mapping[str, str], body: bytes, secret: bytes, now: datetime, window: timedelta
) -> datetime:
    """Check signature and time window; returns the signed time. Raises ``Rejected`` (401/409)."""
    ts_text = headers.get(TIMESTAMP_HEADER.lower(), "")
    sig_text = headers.get(SIGNATURE_HEADER.lower(), "")
    if not ts_text or not sig_text:
        raise Rejected(401, f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER} header")
    if not ts_text.isascii() or not ts_text.isdigit() or len(ts_text) > 12:
        raise Rejected(401, f"{TIMESTAMP_HEADER} must be unix seconds")
    scheme, _, provided = sig_text.partition("=")
    if scheme != "sha256" or not provided:
        raise Rejected(401, f"{SIGNATURE_HEADER} must be sha256=<hex>")
    expected = sign(secret, ts_text, body)
    if not hmac.compare_digest(expected.encode("ascii"), sig_text.encode("utf-8", "replace")):
        raise Rejected(401, "signature does not match")
    # Compared as numbers first: a signed timestamp beyond year 9999 must be a 409, not a 500
    # from datetime.fromtimestamp.
    if abs(now.timestamp() - int(ts_text)) > window.total_seconds():
        raise Rejected(409, f"timestamp outside the allowed window of ±{int(window.total_seconds())} s")
    return datetime.fromtimestamp(int(ts_text), UTC)


# A date alone, with or without an offset (``2026-01-31``, ``2026-01-31+05:00``, ``2026-01-31Z``,
# as XML Schema's xs:date writes it): no time of day, so it cannot say when the change takes effect.
_DATE_ONLY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?")
# A date (calendar or week, extended or basic) and the date-time separator ISO 8601 and RFC 3339
# allow. Python's parser takes any one character there, so without this check a date with an offset
# and a stray Z ("2026-01-31+05:00Z") read as 05:00 UTC: a time the sender never wrote.
_DATE_THEN_TIME = re.compile(
    r"(?:[0-9]{4}-(?:[0-9]{2}-[0-9]{2}|W[0-9]{2}-[0-9])|[0-9]{8}|[0-9]{4}W[0-9]{3})[Tt ][0-9]"
)


def _parse_time(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise Rejected(422, f"{field} must be an ISO 8601 time with offset")
    if _DATE_ONLY.fullmatch(value):
        raise Rejected(
            422,
            f"{field} must be a time of day with a UTC offset, not a date alone (e.g. 2026-01-31T17:00:00Z)",
        )
    if not _DATE_THEN_TIME.match(value):
        raise Rejected(422, f"{field} is not an ISO 8601 time: {value[:40]!r}")
    try:
        # No rewrite of "Z" to "+00:00": Python >= 3.11 reads a trailing Z as UTC itself, and a
        # rewrite of every Z made malformed values parse ("2026-01-31ZZ" as midnight UTC).
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Rejected(422, f"{field} is not an ISO 8601 time: {value[:40]!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise Rejected(422, f"{field} must carry a UTC offset (e.g. 2026-01-31T17:00:00Z)")
    try:
        utc = parsed.astimezone(UTC)
    except OverflowError:
        utc = None
    # Stored in UTC and read back in the reader's zone (an offset up to 15:59): a time that close
    # to either end of the datetime range cannot be stored (year 9999 with a negative offset,
    # year 1 with a positive one).
    if utc is None or not _EARLIEST <= utc <= _LATEST:
        raise Rejected(
            422,
            f"{field} {value[:40]!r} is out of range: it must lie between {_EARLIEST.isoformat()} "
            f"and {_LATEST.isoformat()} in UTC",
        )
    return utc


def _parse_id(payload: Mapping[str, Any], field: str, *, nfc: bool = False) -> str:
    value = payload.get(field)
    if not isinstance(value, str) or not value.strip():
        raise Rejected(422, f"{field} must be a non-empty string")
    if nfc:
        value = unicodedata.normalize("NFC", value)
    if len(value) > MAX_ID or not value.isprintable():
        raise Rejected(422, f"{field} must be at most {MAX_ID} printable characters")
    return value.strip()


def parse_event(body: bytes, signed_at: datetime, now: datetime) -> HREvent:
    """Validate the JSON body into an event. Raises ``Rejected(422)``."""
    try:
        # Depth-limited: json.loads of a deeply nested body raises RecursionError (a 500).
        payload = loads_limited(body)
    except JsonTooDeep as exc:
        raise Rejected(422, f"body is {exc.msg}") from None
    except JsonNumberTooLong:
        # An integer of more than 4300 digits: Python refuses to convert it.
        raise Rejected(422, "body holds a number too long to read") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Rejected(422, "body is not UTF-8 JSON") from None
    if not isinstance(payload, dict):
        raise Rejected(422, "body must be a JSON object")
    event_id = _parse_id(payload, "event_id")
    # An employee id and an email in NFC, as HR sources read them (core.records.
    # canonical_identifier): "E\u0301" is the stored "É", not a person of its own. Invisible
    # characters are not printable: refused below rather than removed.
    employee_id = _parse_id(payload, "employee_id", nfc=True)
    try:
        event = HREventType(str(payload.get("event")))
    except ValueError:
        raise Rejected(422, f"event must be one of {', '.join(e.value for e in HREventType)}") from None
    email = payload.get("email")
    if isinstance(email, str):
        email = unicodedata.normalize("NFC", email)
    if email is not None and (
        not isinstance(email, str) or "@" not in email or len(email) > MAX_EMAIL or not email.isprintable()
    ):
        raise Rejected(422, "email must be an email address or null")
    raw_time = payload.get("effective_at")
    if raw_time is None and event is HREventType.TERMINATED:
        raise Rejected(422, "effective_at is required for employee.terminated")
    effective_at = _parse_time(raw_time, "effective_at") if raw_time is not None else now
    return HREvent(
        event_id=event_id,
        event=event,
        employee_id=employee_id,
        email=email.strip() if isinstance(email, str) else None,
        effective_at=effective_at,
        signed_at=signed_at,
        received_at=now,
        body=body.decode("utf-8"),
    )


def job_json(job: Job, event_status: EventStatus | None = None) -> dict[str, Any]:
    def iso(t: datetime | None) -> str | None:
        return t.isoformat() if t is not None else None

    return {
        "job_id": job.job_id,
        "kind": job.kind.value,
        "state": job.state.value,
        "employee_id": job.employee_id,
        "event_id": job.event_id,
        "event_status": event_status.value if event_status is not None else None,
        "outcome": job.outcome.value if job.outcome is not None else None,
        "created_at": iso(job.created_at),
        "due_at": iso(job.due_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "run_id": job.run_id,
        "error": job.error,
        "detail": job.detail,
        "actions": [action_json(a) for a in job.actions],
        "owner": job.node or None,
        "lease_expires_at": iso(job.lease_expires_at),
        "attempts": job.attempts,
        "next_attempt_at": iso(job.next_attempt_at),
        "takeovers": [takeover_json(t) for t in job.takeovers],
    }


def create_app(
    *,
    store: Store,
    events: WebhookStore,
    runner: JobRunner,
    metrics: Metrics,
    settings: WebhookSettings | None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    node: str = "",
    status: Callable[[], Mapping[str, Any]] | None = None,
    job_lease: timedelta = DEFAULT_JOB_LEASE,
) -> FastAPI:
    """The ASGI app. ``settings`` None serves only /healthz and /metrics (webhook disabled)."""
    app = FastAPI(title="offboard-audit", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        body: dict[str, Any] = {"status": "ok", "node": node}
        try:
            with store.begin() as conn:
                conn.execute(text("SELECT 1"))
            body["database"] = "ok"
            runs = {}
            for kind in (RunKind.AUDIT, RunKind.TARGETED, RunKind.HR_REFRESH):
                run = store.latest_run(kind)
                if run is not None:
                    runs[kind.value] = {
                        "run_id": run.run_id,
                        "status": run.status.value,
                        "started_at": run.started_at.isoformat(),
                        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
                        "circuit_breaker": run.circuit_breaker,
                    }
            body["last_runs"] = runs
            body["last_run"] = runs.get("audit")
        except Exception as exc:
            log.warning("health check: database unreachable: %s", type(exc).__name__)
            body.update(status="unavailable", database=f"unreachable: {type(exc).__name__}")
        if status is not None:
            body.update(status())
        return JSONResponse(body, status_code=200 if body.get("database") == "ok" else 503)

    @app.get("/metrics")
    def metrics_endpoint() -> PlainTextResponse:
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)

    if settings is None:
        return app

    def reject(status_code: int, message: str) -> JSONResponse:
        metrics.record_webhook(status_code)
        return JSONResponse({"error": message}, status_code=status_code)

    @app.post("/hooks/hr")
    async def hook(request: Request) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > settings.max_body):
            return reject(413, f"body over {settings.max_body} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > settings.max_body:
                return reject(413, f"body over {settings.max_body} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
        now = clock()
        try:
            signed_at = verify(request.headers, body, settings.secret, now, settings.window)
            event = parse_event(body, signed_at, now)
        except Rejected as exc:
            return reject(exc.status, exc.message)
        job = _job_for(event, now, node, job_lease)
        accepted = await run_in_threadpool(events.accept, event, job)
        if not accepted:
            return reject(409, f"event_id {event.event_id!r} was already received")
        if job.state is JobState.QUEUED:
            runner.submit(job.job_id)
        metrics.record_webhook(202)
        log.info(
            "accepted %s for %s as job %s (%s)", event.event.value, event.employee_id, job.job_id, job.state
        )
        return JSONResponse(
            {"job_id": job.job_id, "state": job.state.value, "status_url": f"/hooks/hr/jobs/{job.job_id}"},
            status_code=202,
        )

    @app.get("/hooks/hr/jobs/{job_id}")
    def job_status(job_id: str) -> JSONResponse:
        job = events.job(job_id) if len(job_id) <= 64 else None
        if job is None:
            return JSONResponse({"error": "no such job"}, status_code=404)
        status = events.event_status(job.event_id) if job.event_id else None
        return JSONResponse(job_json(job, status))

    return app


def _job_for(event: HREvent, now: datetime, node: str, lease: timedelta = DEFAULT_JOB_LEASE) -> Job:
    kind = _KIND_FOR_EVENT[event.event]
    future = kind is JobKind.TERMINATE and event.effective_at > now
    return Job(
        job_id=new_job_id(),
        kind=kind,
        employee_id=event.employee_id,
        state=JobState.SCHEDULED if future else JobState.QUEUED,
        created_at=now,
        event_id=event.event_id,
        due_at=event.effective_at if future else None,
        node="" if future else node,
        # Queued: ours until the lease runs out (the runner renews it); if this process dies
        # first, another replica takes the job over.
        lease_expires_at=None if future else now + lease,
    )
