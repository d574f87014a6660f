"""End to end: ``offboard-audit audit`` as a subprocess against the local Google Cloud fakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.gcp_iam.fakes import FakeGcp

REPO = Path(__file__).resolve().parents[3]
LEFT = datetime(2026, 8, 1, tzinfo=UTC)

HR = """employee_id,email,name,status,termination_date,aliases
E1001,alice@example.com,Alice Active,active,,alice
E1007,grace@example.com,Grace Departed,terminated,2026-08-01,grace
"""


def _write_config(tmp_path: Path, fake: FakeGcp, projects: list[str], organization: str = "") -> Path:
    (tmp_path / "hr.csv").write_text(HR)
    projects_toml = ", ".join(f'"{p}"' for p in projects)
    organization_toml = f'organization = "{organization}"' if organization else ""
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
projects = [{projects_toml}]
{organization_toml}
iam_endpoint = "{fake.iam_endpoint}"
resource_manager_endpoint = "{fake.rest_url}"
policy_analyzer_endpoint = "{fake.rest_url}"
key_last_auth = true
"""
    )
    return config


def _audit(config: Path) -> tuple[int, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFBOARD_AUDIT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "offboard_audit", "--config", str(config), "audit", "--format", "json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _seed(fake: FakeGcp) -> str:
    state = fake.state
    for project in ("acme-prod", "acme-data"):
        state.add_project(project)
    state.bind("acme-prod", "roles/owner", "user:alice@example.com")
    state.bind("acme-prod", "roles/editor", "user:grace@example.com")
    state.bind("acme-data", "roles/viewer", "user:alice@example.com")
    ci = state.add_service_account("acme-prod", "ci-deployer", description="owner: grace@example.com")
    key = state.add_key(ci.email, created=LEFT + timedelta(days=14), last_auth=LEFT + timedelta(days=20))
    return key.name


def test_audit_flags_a_leavers_binding_and_a_key_used_after_she_left(
    gcp_fake: FakeGcp, tmp_path: Path
) -> None:
    key_name = _seed(gcp_fake)
    code, report = _audit(_write_config(tmp_path, gcp_fake, ["acme-prod", "acme-data"]))
    assert code == 1  # findings at or above high
    (gcp,) = [s for s in report["run"]["sources"] if s["name"] == "gcp"]
    assert gcp["status"] == "ok" and gcp["system"] == "gcp_iam"
    found = {(f["rule"], f["credential"]["id"]) for f in report["findings"] if f["source"] == "gcp"}
    assert ("used-after-termination", key_name) in found
    assert ("credential-after-termination", "projects/acme-prod/roles/editor/user:grace@example.com") in found
    # alice is active: nothing about her.
    assert not any("alice" in f["credential"]["id"] for f in report["findings"] if f["credential"])


def test_audit_exits_3_and_names_the_failed_project(gcp_fake: FakeGcp, tmp_path: Path) -> None:
    _seed(gcp_fake)
    gcp_fake.state.failures["acme-data"] = "PERMISSION_DENIED"
    code, report = _audit(_write_config(tmp_path, gcp_fake, ["acme-prod", "acme-data"]))
    assert code == 3
    (gcp,) = [s for s in report["run"]["sources"] if s["name"] == "gcp"]
    assert [f["scope"] for f in gcp["failed_scopes"]] == ["acme-data"]
    # The project that worked is still reported.
    assert any(f["source"] == "gcp" for f in report["findings"])


def test_audit_flags_a_leavers_organization_level_binding(gcp_fake: FakeGcp, tmp_path: Path) -> None:
    _seed(gcp_fake)
    # Both projects live under organizations/1; grace also holds a role on the organization itself.
    gcp_fake.state.bind("organizations/1", "roles/bigquery.admin", "user:grace@example.com")
    code, report = _audit(_write_config(tmp_path, gcp_fake, [], organization="organizations/1"))
    assert code == 1
    (gcp,) = [s for s in report["run"]["sources"] if s["name"] == "gcp"]
    assert gcp["status"] == "ok" and gcp["failed_scopes"] == []
    org_findings = [
        f
        for f in report["findings"]
        if f["source"] == "gcp"
        and f["credential"]
        and f["credential"]["id"] == "organizations/1/roles/bigquery.admin/user:grace@example.com"
    ]
    assert [f["rule"] for f in org_findings] == ["credential-after-termination"]
