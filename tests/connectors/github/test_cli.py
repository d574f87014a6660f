"""End to end: ``offboard-audit audit`` and ``plan`` as subprocesses against the local fake GitHub
(the token comes from the environment, as in production)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.support.github import GitHubWorld

REPO = Path(__file__).resolve().parents[3]
BOB_LEFT = datetime(2026, 9, 30, 17, 0, tzinfo=UTC)
CAROL_LEFT = datetime(2026, 6, 15, tzinfo=UTC)

HR = """employee_id,email,name,status,termination_date,aliases
E1001,alice@example.com,Alice Active,active,,alice
E1002,bob@example.com,Bob Leaver,terminated,2026-09-30T17:00:00+00:00,bob
E1003,carol@example.com,Carol Gone,terminated,2026-06-15,cgone;carol.g@corp.example.com
"""


def _config(tmp_path: Path, world: GitHubWorld, policy: str = "") -> Path:
    (tmp_path / "hr.csv").write_text(HR)
    config = tmp_path / "offboard-audit.toml"
    config.write_text(
        f"""
[database]
url = "sqlite:///{tmp_path / "audit.db"}"

[policy]
grace_period = "0h"
{policy}

[[sources]]
name = "hr"
type = "hr_csv"
path = "hr.csv"

[[sources]]
name = "gh"
type = "github"
org = "acme"
api_url = "{world.server.url}"
token_env = "GH_TEST_TOKEN"
"""
    )
    return config


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFBOARD_AUDIT_")}
    env["GH_TEST_TOKEN"] = "ghp_owner_token"
    return subprocess.run(
        [sys.executable, "-m", "offboard_audit", "--config", str(config), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _seed(world: GitHubWorld) -> dict[str, Any]:
    s = world.state
    alice = s.add_member("alice-dev", role="admin", name_id="alice@example.com")
    bob = s.add_member("bobthebuilder", name_id="bob@example.com")
    carol = s.add_member("cgone", name_id="carol@example.com")
    used = s.authorize(
        bob, authorized_at=BOB_LEFT - timedelta(days=200), accessed_at=BOB_LEFT + timedelta(days=21)
    )
    idle = s.authorize(
        carol, authorized_at=CAROL_LEFT - timedelta(days=90), accessed_at=CAROL_LEFT - timedelta(days=2)
    )
    invitation = s.invite(alice, email="carol.g@corp.example.com")
    infra = s.add_repo("infra", admins=(alice,))
    key = s.add_deploy_key(infra, "deploy-prod", added_by="cgone", created_at=CAROL_LEFT - timedelta(days=30))
    return {"bob": bob, "carol": carol, "used": used, "idle": idle, "invitation": invitation, "key": key}


def test_audit_finds_a_token_used_after_termination_an_invitation_and_a_deploy_key(
    github_world: GitHubWorld, tmp_path: Path
) -> None:
    seeded = _seed(github_world)
    proc = _cli(_config(tmp_path, github_world), "audit", "--format", "json")
    assert proc.returncode == 1, proc.stderr  # findings at or above high
    report = json.loads(proc.stdout)
    (gh,) = [s for s in report["run"]["sources"] if s["name"] == "gh"]
    # Token auth: fine-grained tokens cannot be listed (only a GitHub App can), and the run says so.
    assert gh["status"] == "degraded" and gh["system"] == "github" and gh["failed_scopes"] == []
    assert any("only a GitHub App can list them" in w for w in gh["warnings"])
    found = sorted(
        (f["rule"], f["severity"], f["person"]["employee_id"], f["credential"]["kind"], f["credential"]["id"])
        for f in report["findings"]
        if f["source"] == "gh"
    )
    bob, carol = str(seeded["bob"].id), str(seeded["carol"].id)
    assert found == sorted(
        [
            (
                "used-after-termination",
                "critical",
                "E1002",
                "sso_authorization",
                f"sso/{seeded['used'].credential_id}",
            ),
            ("credential-after-termination", "high", "E1002", "account", "membership"),
            ("credential-after-termination", "high", "E1003", "account", "membership"),
            (
                "credential-after-termination",
                "high",
                "E1003",
                "sso_authorization",
                f"sso/{seeded['idle'].credential_id}",
            ),
            (
                "credential-after-termination",
                "high",
                "E1003",
                "invitation",
                f"invitation/{seeded['invitation'].id}",
            ),
            (
                "persistence-left-by-leaver",
                "high",
                "E1003",
                "deploy_key",
                f"acme/infra/keys/{seeded['key'].id}",
            ),
        ]
    )
    critical = next(f for f in report["findings"] if f["severity"] == "critical")
    assert critical["account"] == {"id": bob, "name": "bobthebuilder", "kind": "human"}
    assert critical["credential"]["last_used_at"] == "2026-10-21T17:00:00+00:00"
    deploy = next(f for f in report["findings"] if f["rule"] == "persistence-left-by-leaver")
    assert deploy["owner"] == {"email": "alice-dev", "via": "object-admins"}
    assert "repository admins: alice-dev" in deploy["reason"]
    assert carol in {f["account"]["id"] for f in report["findings"] if f["person"]["employee_id"] == "E1003"}


def test_plan_revokes_tokens_and_the_invitation_removes_memberships_last_and_lists_a_remove_task(
    github_world: GitHubWorld, tmp_path: Path
) -> None:
    _seed(github_world)
    config = _config(tmp_path, github_world, policy='delete_after = "0h"')
    assert _cli(config, "audit", "--format", "json").returncode == 1
    proc = _cli(config, "plan", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    actions = [
        (a["person"]["employee_id"], a["action"], a["stage"], a["reversible"])
        for a in plan["actions"]
        if a["source"] == "gh"
    ]
    assert actions == [
        ("E1002", "revoke_sso_authorization", "disable", False),
        ("E1002", "remove_from_organization", "delete", False),
        ("E1003", "revoke_sso_authorization", "disable", False),
        ("E1003", "cancel_invitation", "disable", False),
        ("E1003", "remove_from_organization", "delete", False),
    ]
    (task,) = [t for t in plan["rotate_tasks"] if t["source"] == "gh"]
    assert task["task"] == "remove" and task["object"]["kind"] == "deploy_key"
    # Nothing was changed by planning.
    assert len(github_world.state.members) == 3 and len(github_world.state.authorizations) == 2
