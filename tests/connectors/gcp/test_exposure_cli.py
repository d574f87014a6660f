"""End to end: ``offboard-audit audit --format json`` as a subprocess with a ``[sources.exposure]``
table pointing at the local Google Cloud fakes: the exposure finding as the JSON contract prints
it, and the Data Access warning in the run's sources."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.gcp_exposure import DATA_ACCESS, SM, ExposureFake

REPO = Path(__file__).resolve().parents[3]
NOW = datetime.now(UTC).replace(microsecond=0)
LEFT = NOW - timedelta(days=5)
READ_AT = NOW - timedelta(days=30)


@pytest.fixture
def fake() -> Iterator[ExposureFake]:
    f = ExposureFake().start()
    try:
        yield f
    finally:
        f.stop()


def test_audit_json_prints_the_exposure_finding_and_the_data_access_warning(
    fake: ExposureFake, tmp_path: Path
) -> None:
    st = fake.state
    st.add_project("p1")
    st.add_project("p2")
    st.enable_data_access("p1")
    secret = st.add_secret(
        "p1", "signing-key", READ_AT, [(READ_AT, "ENABLED")], labels={"purpose": "signing"}
    )
    st.audit_entry(
        "projects/p1",
        READ_AT + timedelta(hours=1),
        "secretmanager.googleapis.com",
        SM + "AccessSecretVersion",
        "grace@example.com",
        f"{secret.name}/versions/1",
        log=DATA_ACCESS,
        insert_id="ev-1",
    )
    (tmp_path / "hr.csv").write_text(
        "employee_id,email,name,status,termination_date,aliases,manager_email\n"
        f"E1007,grace@example.com,Grace Departed,terminated,{LEFT.date().isoformat()},,boss@example.com\n"
    )
    e = fake.exposure.endpoint
    config = tmp_path / "offboard-audit.toml"
    config.write_text(
        f"""
[database]
url = "sqlite:///{tmp_path / "audit.db"}"

[[sources]]
name = "hr"
type = "hr_csv"
path = "hr.csv"

[[sources]]
name = "gcp"
type = "gcp_iam"
projects = ["p1", "p2"]
iam_endpoint = "{fake.iam_endpoint}"
resource_manager_endpoint = "{fake.rest_url}"

[sources.exposure]
logging_endpoint = "{e}"
secret_manager_endpoint = "{e}"
kms_endpoint = "{e}"
"""
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFBOARD_AUDIT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "offboard_audit", "--config", str(config), "audit", "--format", "json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out: dict[str, Any] = json.loads(proc.stdout)
    assert proc.returncode == 1, proc.stderr  # a critical finding
    [finding] = [f for f in out["findings"] if f["rule"] == "secret-exposed-to-leaver"]
    assert finding["severity"] == "critical"
    assert finding["credential"]["id"] == "projects/p1/secrets/signing-key"
    assert finding["account"]["id"] == "user:grace@example.com"
    assert [(a["how"], a["event_id"], a["action"]) for a in finding["exposure"]] == [
        ("read", "ev-1", "AccessSecretVersion")
    ]
    assert finding["owner"] == {"email": "boss@example.com", "via": "manager"}
    [run] = [s for s in out["run"]["sources"] if s["name"] == "gcp/exposure"]
    assert run["status"] == "ok"
    warnings = json.dumps(run)
    assert (
        "p2: Data Access audit logs (DATA_READ) are not enabled for secretmanager.googleapis.com" in warnings
    )
    assert "p1: Data Access" not in warnings
