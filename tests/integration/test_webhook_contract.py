"""The HR webhook contract (design.md) against the FastAPI app object, no network:
every rejected request answers the promised status and leaves the database unchanged."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlmodel import SQLModel

from offboard_audit.core.jobs import JobState
from offboard_audit.daemon.metrics import Metrics
from offboard_audit.daemon.webhook import (
    MAX_BODY,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookSettings,
    create_app,
)
from offboard_audit.storage.db import make_engine
from offboard_audit.storage.store import Store
from offboard_audit.storage.webhook_store import WebhookStore
from tests.support.daemon import SECRET, event_body, signed_headers
from tests.support.ports import free_port

NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
TS = int(NOW.timestamp())


class RecordingRunner:
    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, job_id: str) -> None:
        self.submitted.append(job_id)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'hook.db'}")


@pytest.fixture
def runner() -> RecordingRunner:
    return RecordingRunner()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def client(store: Store, runner: RecordingRunner, metrics: Metrics, clock: Clock) -> TestClient:
    app = create_app(
        store=store,
        events=WebhookStore(store),
        runner=runner,
        metrics=metrics,
        settings=WebhookSettings(SECRET.encode()),
        clock=clock,
        node="test-node",
    )
    return TestClient(app)


def dump(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table: the whole database as data."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    with store.begin() as conn:
        for table in SQLModel.metadata.sorted_tables:
            out[table.name] = sorted((tuple(r) for r in conn.execute(select(table))), key=repr)
    return out


def post(client: TestClient, body: bytes, headers: dict[str, str]) -> Any:
    return client.post("/hooks/hr", content=body, headers=headers)


def body_for(employee_id: str = "E1", **kw: Any) -> bytes:
    kw.setdefault("effective_at", NOW - timedelta(hours=1))
    return event_body(employee_id, **kw)


def test_valid_termination_is_accepted_with_a_job_that_reports_queued(
    client: TestClient, runner: RecordingRunner, store: Store
) -> None:
    body = body_for("E1", email="e1@example.com", event_id="evt-1")
    r = post(client, body, signed_headers(body, timestamp=TS))
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert r.json()["state"] == "queued" and r.json()["status_url"] == f"/hooks/hr/jobs/{job_id}"
    assert runner.submitted == [job_id]
    job = client.get(f"/hooks/hr/jobs/{job_id}").json()
    assert (job["state"], job["kind"], job["employee_id"], job["event_id"]) == (
        "queued",
        "terminate",
        "E1",
        "evt-1",
    )
    stored = WebhookStore(store).event("evt-1")
    assert stored is not None and stored.effective_at == NOW - timedelta(hours=1)
    assert stored.email == "e1@example.com"


def test_unknown_job_is_404(client: TestClient) -> None:
    assert client.get("/hooks/hr/jobs/nope").status_code == 404


def _bad_requests() -> list[tuple[str, int, Any]]:
    """(name, expected status, builder(body) -> (body, headers))."""
    good = body_for("E9", event_id="evt-bad")

    def headers(b: bytes, **kw: Any) -> dict[str, str]:
        return signed_headers(b, timestamp=kw.pop("timestamp", TS), **kw)

    def no_headers(_b: bytes) -> tuple[bytes, dict[str, str]]:
        return good, {"Content-Type": "application/json"}

    def no_signature(_b: bytes) -> tuple[bytes, dict[str, str]]:
        h = headers(good)
        del h["X-Offboard-Signature"]
        return good, h

    def wrong_secret(_b: bytes) -> tuple[bytes, dict[str, str]]:
        return good, headers(good, secret="not-the-secret")

    def tampered_body(_b: bytes) -> tuple[bytes, dict[str, str]]:
        h = headers(good)
        return good.replace(b"E9", b"E8"), h

    def signature_of_other_timestamp(_b: bytes) -> tuple[bytes, dict[str, str]]:
        h = headers(good, timestamp=TS - 1)
        h["X-Offboard-Timestamp"] = str(TS)
        return good, h

    def bad_scheme(_b: bytes) -> tuple[bytes, dict[str, str]]:
        h = headers(good)
        h["X-Offboard-Signature"] = h["X-Offboard-Signature"].replace("sha256=", "sha1=")
        return good, h

    def non_numeric_timestamp(_b: bytes) -> tuple[bytes, dict[str, str]]:
        h = headers(good)
        h["X-Offboard-Timestamp"] = "yesterday"
        return good, h

    def too_old(_b: bytes) -> tuple[bytes, dict[str, str]]:
        return good, headers(good, timestamp=TS - 301)

    def too_new(_b: bytes) -> tuple[bytes, dict[str, str]]:
        return good, headers(good, timestamp=TS + 301)

    def too_big(_b: bytes) -> tuple[bytes, dict[str, str]]:
        payload = json.loads(good)
        payload["padding"] = "x" * MAX_BODY
        big = json.dumps(payload).encode()
        return big, headers(big)

    def signed(raw: bytes) -> tuple[bytes, dict[str, str]]:
        return raw, headers(raw)

    def field(**changes: Any) -> Any:
        def build(_b: bytes) -> tuple[bytes, dict[str, str]]:
            payload = json.loads(good)
            for k, v in changes.items():
                if v is ...:
                    payload.pop(k)
                else:
                    payload[k] = v
            raw = json.dumps(payload).encode()
            return raw, headers(raw)

        return build

    return [
        ("no headers", 401, no_headers),
        ("no signature", 401, no_signature),
        ("wrong secret", 401, wrong_secret),
        ("tampered body", 401, tampered_body),
        ("signature over another timestamp", 401, signature_of_other_timestamp),
        ("sha1 scheme", 401, bad_scheme),
        ("timestamp not a number", 401, non_numeric_timestamp),
        ("timestamp 301 s old", 409, too_old),
        ("timestamp 301 s ahead", 409, too_new),
        ("body over 64 KiB", 413, too_big),
        ("not JSON", 422, lambda _b: signed(b"{not json")),
        ("JSON array", 422, lambda _b: signed(b"[]")),
        ("not UTF-8", 422, lambda _b: signed(b'{"event_id": "\xff"}')),
        ("unknown event", 422, field(event="employee.promoted")),
        ("missing event_id", 422, field(event_id=...)),
        ("empty employee_id", 422, field(employee_id="  ")),
        ("numeric employee_id", 422, field(employee_id=42)),
        ("termination without effective_at", 422, field(effective_at=...)),
        ("effective_at without offset", 422, field(effective_at="2026-03-02T11:00:00")),
        ("effective_at not a time", 422, field(effective_at="soon")),
        # Not midnight UTC: a date with stray Zs has no time of day.
        ("effective_at a date with stray Zs", 422, field(effective_at="2026-03-02ZZ")),
        ("email not an address", 422, field(email="nobody")),
        ("event_id too long", 422, field(event_id="e" * 129)),
    ]


@pytest.mark.parametrize(("name", "status", "build"), _bad_requests(), ids=[c[0] for c in _bad_requests()])
def test_rejected_request_answers_its_status_and_changes_nothing(
    client: TestClient,
    store: Store,
    runner: RecordingRunner,
    metrics: Metrics,
    name: str,
    status: int,
    build: Any,
) -> None:
    before = dump(store)
    body, headers = build(b"")
    r = post(client, body, headers)
    assert r.status_code == status, (name, r.text)
    assert "error" in r.json()
    assert dump(store) == before
    assert runner.submitted == []
    assert metrics.value("offboard_audit_webhook_requests_total", (("status", str(status)),)) == 1


def test_replayed_event_id_is_409_and_changes_nothing(
    client: TestClient, store: Store, runner: RecordingRunner
) -> None:
    body = body_for("E1", event_id="evt-replay")
    assert post(client, body, signed_headers(body, timestamp=TS)).status_code == 202
    before = dump(store)
    # The same event again, freshly signed, and a different body reusing the id.
    again = post(client, body, signed_headers(body, timestamp=TS + 10))
    other = body_for("E2", event_id="evt-replay")
    reused = post(client, other, signed_headers(other, timestamp=TS))
    assert (again.status_code, reused.status_code) == (409, 409)
    assert dump(store) == before
    assert len(runner.submitted) == 1


def test_window_is_five_minutes_either_way_by_the_injected_clock(client: TestClient, clock: Clock) -> None:
    clock.now = NOW + timedelta(minutes=5)
    body = body_for("E1")
    assert post(client, body, signed_headers(body, timestamp=TS)).status_code == 202
    clock.now = NOW + timedelta(minutes=5, seconds=1)
    body = body_for("E1")
    assert post(client, body, signed_headers(body, timestamp=TS)).status_code == 409
    clock.now = NOW - timedelta(minutes=5)
    body = body_for("E1")
    assert post(client, body, signed_headers(body, timestamp=TS)).status_code == 202


def test_future_termination_is_scheduled_and_not_run(
    client: TestClient, store: Store, runner: RecordingRunner
) -> None:
    when = NOW + timedelta(days=3)
    body = body_for("E5", effective_at=when)
    r = post(client, body, signed_headers(body, timestamp=TS))
    assert r.status_code == 202 and r.json()["state"] == "scheduled"
    assert runner.submitted == []
    scheduled = WebhookStore(store).scheduled("E5")
    assert [(s.job_id, s.due_at, s.state) for s in scheduled] == [(r.json()["job_id"], when, "pending")]
    job = client.get(f"/hooks/hr/jobs/{r.json()['job_id']}").json()
    assert job["state"] == JobState.SCHEDULED.value and job["due_at"] == when.isoformat()


def test_metrics_count_webhook_requests_by_status(client: TestClient) -> None:
    body = body_for("E1")
    post(client, body, signed_headers(body, timestamp=TS))
    post(client, body, signed_headers(body, timestamp=TS))
    post(client, b"{}", {})
    from prometheus_client.parser import text_string_to_metric_families

    r = client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    requests = {s.labels["status"]: s.value for s in families["offboard_audit_webhook_requests"].samples}
    assert requests == {"202": 1.0, "409": 1.0, "401": 1.0}
    assert families["offboard_audit_termination_to_revocation_seconds"].type == "histogram"
    assert families["offboard_audit_leader"].type == "gauge"


def test_healthz_reports_the_database_and_the_last_run(client: TestClient) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json()["database"] == "ok" and r.json()["last_run"] is None and r.json()["node"] == "test-node"


def test_healthz_is_503_when_the_database_is_unreachable(runner: RecordingRunner, metrics: Metrics) -> None:
    dead = Store(make_engine(f"postgresql+psycopg://nobody@127.0.0.1:{free_port()}/none?connect_timeout=2"))
    app = create_app(store=dead, events=WebhookStore(dead), runner=runner, metrics=metrics, settings=None)
    r = TestClient(app).get("/healthz")
    assert r.status_code == 503 and r.json()["database"].startswith("unreachable")


def test_healthz_of_an_unreachable_database_never_shows_its_password(
    runner: RecordingRunner, metrics: Metrics
) -> None:
    password = "S3cr3t-p%40ss"  # percent-encoded '@' too: neither form may come out
    url = f"postgresql+psycopg://auditor:{password}@127.0.0.1:{free_port()}/none?connect_timeout=2"
    dead = Store(make_engine(url))
    app = create_app(store=dead, events=WebhookStore(dead), runner=runner, metrics=metrics, settings=None)
    r = TestClient(app).get("/healthz")
    assert r.status_code == 503
    assert "S3cr3t" not in r.text and "auditor" not in r.text


def test_disabled_webhook_serves_no_hook_but_health_and_metrics(
    store: Store, runner: RecordingRunner, metrics: Metrics
) -> None:
    app = create_app(store=store, events=WebhookStore(store), runner=runner, metrics=metrics, settings=None)
    c = TestClient(app)
    body = body_for("E1")
    assert c.post("/hooks/hr", content=body, headers=signed_headers(body)).status_code in (404, 405)
    assert c.get("/healthz").status_code == 200 and c.get("/metrics").status_code == 200


def test_body_over_64_kib_without_content_length_is_413_while_reading(
    client: TestClient, store: Store, runner: RecordingRunner
) -> None:
    before = dump(store)
    chunk = b"x" * 16384
    headers = signed_headers(chunk * 5, timestamp=TS)
    r = client.post("/hooks/hr", content=iter([chunk] * 5), headers=headers)
    assert r.status_code == 413
    assert dump(store) == before and runner.submitted == []


@pytest.mark.parametrize(
    "effective_at",
    ["9999-12-31T20:00:00-05:00", "0001-01-01T00:00:00+05:00", "9999-12-31T23:00:00+00:00"],
)
def test_an_effective_at_that_cannot_be_stored_is_422_and_changes_nothing(
    client: TestClient, store: Store, effective_at: str
) -> None:
    before = dump(store)
    payload = {
        "event_id": "evt-far",
        "event": "employee.terminated",
        "employee_id": "E1",
        "effective_at": effective_at,
    }
    body = json.dumps(payload).encode()
    r = post(client, body, signed_headers(body, timestamp=TS))
    assert r.status_code == 422, r.text
    assert "out of range" in r.json()["error"]
    assert dump(store) == before


def test_a_signed_but_deeply_nested_body_is_422_not_500(client: TestClient, store: Store) -> None:
    before = dump(store)
    nested = b'{"event_id": "e1", "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"
    assert len(nested) < MAX_BODY
    r = post(client, nested, signed_headers(nested, timestamp=TS))
    assert r.status_code == 422, r.text
    assert "nested deeper than" in r.json()["error"]
    assert dump(store) == before


@pytest.mark.parametrize(
    "number", ["1" * 5000, "-" + "9" * 4301], ids=["5000-digits", "negative-4301-digits"]
)
def test_a_signed_body_with_a_number_too_long_to_convert_is_422_not_500(
    client: TestClient, store: Store, metrics: Metrics, number: str
) -> None:
    # Python refuses to convert an integer of more than 4300 digits (a ValueError that is not a
    # JSONDecodeError): the answer must still be the contract's 422, which the HR system does not
    # retry, and the request counted.
    before = dump(store)
    raw = b'{"event_id": "e1", "event": "employee.terminated", "n": ' + number.encode() + b"}"
    assert len(raw) < MAX_BODY
    r = post(client, raw, signed_headers(raw, timestamp=TS))
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "body holds a number too long to read"
    assert 'offboard_audit_webhook_requests_total{status="422"} 1' in metrics.render()
    assert dump(store) == before


def test_job_status_reports_the_outcome_and_the_next_attempt(client: TestClient, store: Store) -> None:
    body = body_for("E1", event_id="evt-o")
    job_id = post(client, body, signed_headers(body, timestamp=TS)).json()["job_id"]
    events = WebhookStore(store)
    later = NOW + timedelta(seconds=30)
    assert events.finish_job(job_id, NOW, JobState.INCOMPLETE, detail="read failed", next_attempt_at=later)
    job = client.get(f"/hooks/hr/jobs/{job_id}").json()
    assert (job["state"], job["outcome"], job["next_attempt_at"]) == (
        "incomplete",
        "incomplete",
        later.isoformat(),
    )
    assert events.event("evt-o").body != ""  # type: ignore[union-attr]  # not finished: body kept
    assert events.finish_job(job_id, NOW, JobState.FAILED, error="revocation refused: circuit breaker")
    job = client.get(f"/hooks/hr/jobs/{job_id}").json()
    assert (job["state"], job["outcome"], job["next_attempt_at"]) == ("failed", "refused", None)
    assert events.event("evt-o").body == ""  # type: ignore[union-attr]  # finished: body dropped


@pytest.mark.parametrize("timestamp", ["999999999999", "253402300800", "0"])
def test_a_signed_timestamp_far_outside_the_window_is_409_never_500(
    client: TestClient, store: Store, runner: RecordingRunner, timestamp: str
) -> None:
    before = dump(store)
    body = body_for("E1")
    mac = hmac.new(SECRET.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    headers = {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: f"sha256={mac}",
        "Content-Type": "application/json",
    }
    r = client.post("/hooks/hr", content=body, headers=headers)
    assert r.status_code == 409, r.text
    assert dump(store) == before and runner.submitted == []
