"""``offboard-audit`` end to end against a real OpenBao server, as subprocesses, the tool logged
in through AppRole (``role_id`` + ``secret_id_env``) with exactly the documented policy
(``connectors/vault/offboard-audit-policy.hcl``): config check, audit, revoke --apply, report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.connectors.vault.conftest import VaultWorld

REPO = Path(__file__).resolve().parents[3]
POLICY = REPO / "connectors" / "vault" / "offboard-audit-policy.hcl"


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    return subprocess.run(
        [sys.executable, "-m", "offboard_audit", *args],
        cwd=cwd,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _tool_login(w: VaultWorld) -> tuple[str, str]:
    """An AppRole for the tool with the documented policy: (role_id, secret_id)."""
    c = w.root
    c.sys.enable_auth_method("approle")
    c.sys.create_or_update_policy("offboard-audit", POLICY.read_text())
    c.write_data("auth/approle/role/offboard-audit", data={"token_policies": ["offboard-audit"]})
    role_id = c.read("auth/approle/role/offboard-audit/role-id")["data"]["role_id"]
    secret_id = c.write_data("auth/approle/role/offboard-audit/secret-id")["data"]["secret_id"]
    return str(role_id), str(secret_id)


def test_audit_revoke_and_report_with_the_documented_policy_through_an_approle_login(
    vault_world: VaultWorld,
) -> None:
    w = vault_world
    w.root.secrets.kv.v2.create_or_update_secret("app/db", secret={"password": "s3cr3t"})
    alice = w.login("alice")
    w.seen(alice.secrets.kv.v2.read_secret_version("app/db", raise_on_deleted_version=True))
    alice.write_data("transit/keys/signing-key", data={"type": "ecdsa-p256", "exportable": True})
    export = w.seen(alice.read("transit/export/signing-key/signing-key"))
    role_id, secret_id = _tool_login(w)
    # A login she left for a service: its accessor is HMAC'd in the log (sys/audit-hash matches it).
    w.root.write_data("auth/approle/role/ci", data={"token_policies": ["default"]})
    w.seen(alice.write_data("auth/approle/role/ci/secret-id"))
    tmp = w.tmp
    (tmp / "offboard-audit.toml").write_text(
        f"""
[database]
url = "sqlite:///{tmp / "cli.db"}"

[policy]
max_new_terminations = 1.0

[[sources]]
name = "hr"
type = "hr_csv"
path = "hr.csv"

[[sources]]
name = "bao"
type = "vault"
url = "{w.bao.address}"
role_id = "{role_id}"
secret_id_env = "OA_BAO_SECRET_ID"
audit_log = "{w.bao.audit_log}"
"""
    )
    env = {"OA_BAO_SECRET_ID": secret_id}

    check = cli("config", "check", cwd=tmp, env=env)
    assert check.returncode == 0, check.stderr
    assert "identity/entity/id" in check.stdout and "revoke_token" in check.stdout

    audit = cli("audit", "--format", "json", cwd=tmp, env=env)
    assert audit.returncode == 1, audit.stderr  # findings at or above high
    doc: dict[str, Any] = json.loads(audit.stdout)
    runs = {s["name"]: s for s in doc["run"]["sources"]}
    # The documented policy is enough to read everything: no source or scope failed.
    assert runs["bao"]["status"] == "ok" and runs["bao/exposure"]["status"] == "ok", runs
    assert not runs["bao"].get("failed_scopes") and not runs["bao/exposure"].get("failed_scopes")
    exposed = {
        (f["credential"]["id"], f["severity"]): f
        for f in doc["findings"]
        if f["rule"] == "secret-exposed-to-leaver"
    }
    assert set(exposed) == {("secret/app/db", "high"), ("transit/signing-key", "critical")}
    assert export in [a["event_id"] for a in exposed[("transit/signing-key", "critical")]["exposure"]]
    left = [f["credential"]["kind"] for f in doc["findings"] if f["rule"] == "persistence-left-by-leaver"]
    assert left == ["service_account_key"]
    own = {f["credential"]["kind"] for f in doc["findings"] if f["rule"] == "credential-after-termination"}
    assert own == {"account", "password", "access_key"}

    revoke = cli("revoke", "--person", "E1", "--apply", "--format", "json", cwd=tmp, env=env)
    assert revoke.returncode == 0, revoke.stdout + revoke.stderr
    assert w.root.secrets.identity.read_entity(w.entities["alice"])["data"]["disabled"] is True
    assert w.root.read("auth/userpass/users/alice") is None

    report = cli("report", "--person", "E1", "--format", "json", cwd=tmp, env=env)
    assert report.returncode == 0, report.stderr
    pack = json.loads(report.stdout)
    carried = {x["secret"]["kind"] for x in pack["secrets_could_carry_away"]}
    assert carried == {"kv_secret", "transit_key", "service_account_key"}
    assert pack["summary"]["revoked"] == 3
