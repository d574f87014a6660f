"""``create_app`` (the FastAPI app of the HR webhook) in process, with a TestClient on SQLite.

What no other test pinned down (issue 10, mutation survivors of ``create_app``): the app serves
no API schema or documentation pages, and an app made without a ``node`` name reports none (on
/healthz and as the owner of the jobs it queues). Requests are signed here with ``hmac``/
``hashlib``, never with the product's ``sign``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from offboard_audit.daemon.metrics import Metrics
from offboard_audit.daemon.webhook import WebhookSettings, create_app
from offboard_audit.storage.store import Store
from offboard_audit.storage.webhook_store import WebhookStore

SECRET = b"app-test-secret"
NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
TS = "1772452800"  # NOW in unix seconds


class RecordingRunner:
    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, job_id: str) -> None:
        self.submitted.append(job_id)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'app.db'}")


def app_without_node(store: Store, runner: RecordingRunner) -> FastAPI:
    return create_app(
        store=store,
        events=WebhookStore(store),
        runner=runner,
        metrics=Metrics(),
        settings=WebhookSettings(SECRET),
        clock=lambda: NOW,
    )


def signed(body: bytes) -> dict[str, str]:
    mac = hmac.new(SECRET, TS.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-Offboard-Timestamp": TS,
        "X-Offboard-Signature": f"sha256={mac}",
    }


@pytest.mark.parametrize("path", ["/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"])
def test_the_app_serves_no_api_schema_or_documentation_page(store: Store, path: str) -> None:
    client = TestClient(app_without_node(store, RecordingRunner()))
    assert client.get(path).status_code == 404


def test_an_app_made_without_a_node_name_reports_none_on_healthz(store: Store) -> None:
    r = TestClient(app_without_node(store, RecordingRunner())).get("/healthz")
    assert r.status_code == 200 and r.json()["node"] == ""


def test_a_job_queued_by_an_app_made_without_a_node_name_shows_no_owner(store: Store) -> None:
    runner = RecordingRunner()
    client = TestClient(app_without_node(store, runner))
    body = json.dumps(
        {
            "event_id": "evt-no-node",
            "event": "employee.terminated",
            "employee_id": "E1",
            "email": "e1@example.com",
            "effective_at": "2026-03-02T11:00:00Z",
        }
    ).encode()
    r = client.post("/hooks/hr", content=body, headers=signed(body))
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    assert runner.submitted == [job_id]
    job = client.get(f"/hooks/hr/jobs/{job_id}").json()
    assert (job["state"], job["owner"]) == ("queued", None)
    stored = WebhookStore(store).job(job_id)
    assert stored is not None and stored.node == ""
