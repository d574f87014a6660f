"""Known-answer tests of the webhook signature: the expected header is computed here with
``hmac``/``hashlib`` (and once with openssl), never with the product's own ``sign()``, so a
change of digest or of the signed message is caught."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from offboard_audit.daemon.metrics import Metrics
from offboard_audit.daemon.webhook import WebhookSettings, create_app
from offboard_audit.storage.store import Store
from offboard_audit.storage.webhook_store import WebhookStore

SECRET = b"known-answer-secret"
TS = 1767225600  # 2026-01-01T00:00:00Z
BODY = (
    b'{"event_id":"evt-kat","event":"employee.terminated","employee_id":"E1","email":null,'
    b'"effective_at":"2026-01-01T00:00:00Z"}'
)
# printf '%s' "1767225600.$BODY" | openssl dgst -sha256 -hmac known-answer-secret -hex
OPENSSL_HEX = "a0dd15d78ac337956a509ccb373266ef42f7e659d6c1ba49be4e7b2539a125d9"


class Runner:
    def __init__(self) -> None:
        self.submitted: list[str] = []

    def submit(self, job_id: str) -> None:
        self.submitted.append(job_id)


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    store = Store.open(f"sqlite:///{tmp_path / 'kat.db'}")
    app = create_app(
        store=store,
        events=WebhookStore(store),
        runner=Runner(),
        metrics=Metrics(),
        settings=WebhookSettings(SECRET),
        clock=lambda: datetime.fromtimestamp(TS, UTC),
    )
    return TestClient(app)


def post(client: TestClient, signature: str) -> Any:
    headers = {
        "X-Offboard-Timestamp": str(TS),
        "X-Offboard-Signature": signature,
        "Content-Type": "application/json",
    }
    return client.post("/hooks/hr", content=BODY, headers=headers)


def test_hmac_sha256_over_timestamp_dot_body_is_accepted(client: TestClient) -> None:
    digest = hmac.new(SECRET, f"{TS}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert digest == OPENSSL_HEX
    r = post(client, f"sha256={digest}")
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("algorithm", ["sha1", "sha224", "sha384", "sha512", "sha3_256", "md5", "blake2b"])
def test_another_digest_under_the_sha256_label_is_rejected(client: TestClient, algorithm: str) -> None:
    digest = hmac.new(SECRET, f"{TS}.".encode() + BODY, getattr(hashlib, algorithm)).hexdigest()
    r = post(client, f"sha256={digest}")
    assert r.status_code == 401, (algorithm, r.text)


@pytest.mark.parametrize(
    "message",
    [
        BODY,  # the body alone
        f"{TS}".encode() + BODY,  # no separator
        f"{TS}:".encode() + BODY,  # another separator
        BODY + f".{TS}".encode(),  # the other way round
    ],
    ids=["body-only", "no-separator", "colon", "reversed"],
)
def test_a_signature_over_another_message_is_rejected(client: TestClient, message: bytes) -> None:
    digest = hmac.new(SECRET, message, hashlib.sha256).hexdigest()
    assert post(client, f"sha256={digest}").status_code == 401


def test_plain_sha256_without_the_secret_is_rejected(client: TestClient) -> None:
    digest = hashlib.sha256(f"{TS}.".encode() + BODY).hexdigest()
    assert post(client, f"sha256={digest}").status_code == 401
