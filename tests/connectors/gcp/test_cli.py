"""End to end: ``offboard-audit audit`` as a subprocess against the local Google Cloud fakes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.gcp import FakeGcp

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


def _audit(config: Path, *args: str) -> tuple[int, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFBOARD_AUDIT_")}
    proc = subprocess.run(
        [sys.executable, "-m", "offboard_audit", "--config", str(config), "audit", "--format", "json", *args],
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


# --- identity: plan, recreate, revoke / undo (issue 10, item 1) ---------------------------------

CI_EMAIL = "ci-deployer@acme-prod.iam.gserviceaccount.com"
GRACE_BINDING = "projects/acme-prod/roles/editor/user:grace@example.com"


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFBOARD_AUDIT_")}
    return subprocess.run(
        [sys.executable, "-m", "offboard_audit", "--config", str(config), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _cli_json(config: Path, *args: str) -> dict[str, Any]:
    proc = _cli(config, *args, "--format", "json")
    assert proc.stdout.strip(), proc.stderr
    body = json.loads(proc.stdout)
    assert isinstance(body, dict)
    return body


def _recreate_ci(fake: FakeGcp, disabled: bool = False) -> tuple[str, str]:
    """Delete ci-deployer and create it again under the same email, with a key of its own:
    (new uniqueId, new key name)."""
    state = fake.state
    old = state.delete_service_account(CI_EMAIL)
    new = state.add_service_account(
        "acme-prod", "ci-deployer", description=old.description, disabled=disabled
    )
    key = state.add_key(new.email, created=LEFT + timedelta(days=60), disabled=disabled)
    return new.unique_id, key.name


def _events(tmp_path: Path, kind: str) -> list[dict[str, Any]]:
    from offboard_audit.storage.actions import iter_events
    from offboard_audit.storage.store import Store

    store = Store.open(f"sqlite:///{tmp_path / 'audit.db'}")
    try:
        return [json.loads(e.payload_json) for e in iter_events(store) if e.kind == kind]
    finally:
        store.engine.dispose()


def test_revoke_with_a_plan_file_touches_nothing_of_a_service_account_recreated_since_the_plan(
    gcp_fake: FakeGcp, tmp_path: Path
) -> None:
    key_name = _seed(gcp_fake)
    old_uid = gcp_fake.state.service_accounts[CI_EMAIL].unique_id
    config = _write_config(tmp_path, gcp_fake, ["acme-prod", "acme-data"])
    _audit(config)
    plan_path = tmp_path / "plan.json"
    assert _cli(config, "plan", "--output", str(plan_path)).returncode == 0
    planned = {a["credential"]["id"]: a for a in json.loads(plan_path.read_text())["actions"]}
    assert {cid: (a["action"], a["account"]["uid"]) for cid, a in planned.items()} == {
        key_name: ("disable_key", old_uid),
        CI_EMAIL: ("disable_service_account", old_uid),
        GRACE_BINDING: ("remove_binding", "user:grace@example.com"),
    }

    new_uid, new_key = _recreate_ci(gcp_fake)
    gcp_fake.state.reset_calls()
    report = _cli_json(config, "revoke", "--plan", str(plan_path), "--apply")

    status = {o["credential_id"]: o["status"] for o in report["outcomes"]}
    assert status == {key_name: "target-changed", CI_EMAIL: "target-changed", GRACE_BINDING: "applied"}
    # The new account and its key are untouched: no write reached IAM Admin at all.
    new = gcp_fake.state.service_accounts[CI_EMAIL]
    assert not new.disabled and not new.keys[new_key.rsplit("/", 1)[1]].disabled
    assert not [m for (m, _p) in gcp_fake.state.calls if m.startswith("iam.") and "Get" not in m]
    # The binding of the same plan was removed.
    assert gcp_fake.state.members("acme-prod", "roles/editor") == []
    # The audit chain says what happened, with the identity found instead, and still verifies.
    changed = [e for e in _events(tmp_path, "outcome") if e["status"] == "target-changed"]
    assert sorted(e["credential_id"] for e in changed) == sorted([key_name, CI_EMAIL])
    assert all(e["account_uid"] == old_uid and e["observed_identity"] == new_uid for e in changed)
    assert not [e for e in _events(tmp_path, "intent") if e["credential_id"] in (key_name, CI_EMAIL)]
    assert _cli(config, "log", "verify").returncode == 0


def test_undo_after_the_service_account_was_recreated_is_target_changed_and_enables_nothing(
    gcp_fake: FakeGcp, tmp_path: Path
) -> None:
    key_name = _seed(gcp_fake)
    config = _write_config(tmp_path, gcp_fake, ["acme-prod", "acme-data"])
    _audit(config)
    applied = _cli_json(config, "revoke", "--apply")
    assert {o["credential_id"]: o["status"] for o in applied["outcomes"]} == {
        key_name: "applied",
        CI_EMAIL: "applied",
        GRACE_BINDING: "applied",
    }

    # Someone recreates the account, disabled, with a disabled key: undo must not enable them.
    new_uid, new_key = _recreate_ci(gcp_fake, disabled=True)
    gcp_fake.state.reset_calls()
    undone = _cli_json(config, "undo", "--person", "E1007", "--apply")

    by_credential = {o["credential_id"]: o["status"] for o in undone["outcomes"]}
    assert by_credential == {
        key_name: "target-changed",
        CI_EMAIL: "target-changed",
        GRACE_BINDING: "restored",
    }
    new = gcp_fake.state.service_accounts[CI_EMAIL]
    assert new.disabled and new.keys[new_key.rsplit("/", 1)[1]].disabled
    assert not [m for (m, _p) in gcp_fake.state.calls if m.startswith("iam.Enable")]
    assert gcp_fake.state.members("acme-prod", "roles/editor") == ["user:grace@example.com"]
    changed = [e for e in _events(tmp_path, "undo-outcome") if e["status"] == "target-changed"]
    assert sorted(e["credential_id"] for e in changed) == sorted([key_name, CI_EMAIL])
    assert all(e["observed_identity"] == new_uid for e in changed)


def test_a_policy_analyzer_failure_does_not_resolve_a_critical_finding(
    gcp_fake: FakeGcp, tmp_path: Path
) -> None:
    key_name = _seed(gcp_fake)
    config = _write_config(tmp_path, gcp_fake, ["acme-prod", "acme-data"])
    _code, first = _audit(config)
    critical = [
        f["id"]
        for f in first["findings"]
        if f["rule"] == "used-after-termination" and f["credential"]["id"] == key_name
    ]
    assert len(critical) == 1
    gcp_fake.state.activity_failures["*"] = (403, "Permission denied on policyanalyzer")
    _audit(config)
    stored = _cli_json(config, "findings", "--status", "all")
    status = {f["id"]: f["status"] for f in stored["findings"]}
    assert status[critical[0]] == "open"


@contextmanager
def _silent_endpoint() -> Iterator[str]:
    """An HTTP URL whose server accepts connections and never answers (a call to it times out)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


@pytest.mark.parametrize("failure", ["403", "500", "timeout"])
def test_a_policy_analyzer_failure_degrades_the_source_and_keeps_both_critical_findings(
    gcp_fake: FakeGcp, tmp_path: Path, failure: str
) -> None:
    _seed(gcp_fake)
    # The service account itself authenticated after grace left too: two critical findings.
    gcp_fake.state.service_accounts[CI_EMAIL].last_auth = LEFT + timedelta(days=21)
    config = _write_config(tmp_path, gcp_fake, ["acme-prod", "acme-data"])
    _code, first = _audit(config)
    critical = {
        f["id"]: f["credential"]["last_used_at"]
        for f in first["findings"]
        if f["rule"] == "used-after-termination"
    }
    assert len(critical) == 2

    with _silent_endpoint() as silent:
        if failure == "timeout":
            text = config.read_text().replace(
                gcp_fake.rest_url + '"\nkey_last_auth', silent + '"\nkey_last_auth'
            )
            config.write_text(text + "timeout = 2\n")
            assert silent in config.read_text()
        else:
            gcp_fake.state.activity_failures["*"] = (int(failure), "injected")
        code, report = _audit(config, "--fail-on", "critical")

    assert code == 1  # --fail-on critical still fails: the critical findings are there
    (gcp,) = [s for s in report["run"]["sources"] if s["name"] == "gcp"]
    assert gcp["status"] == "degraded"
    assert any("Policy Analyzer query failed" in w for w in gcp["warnings"]), gcp["warnings"]
    found = {f["id"]: f for f in report["findings"]}
    # The same findings, still critical, with the last known last use (kept from the first run).
    assert {i: found[i]["credential"]["last_used_at"] for i in critical if i in found} == critical
    assert {found[i]["severity"] for i in critical} == {"critical"}
    # No lower finding replaces them.
    downgraded = [
        f["credential"]["id"]
        for f in report["findings"]
        if f["rule"] == "credential-after-termination" and f["credential"]["kind"] != "iam_binding"
    ]
    assert downgraded == []
    stored = _cli_json(config, "findings", "--status", "all")
    assert {f["id"]: f["status"] for f in stored["findings"] if f["id"] in critical} == dict.fromkeys(
        critical, "open"
    )
