"""The github source through the pipeline and the revocation engine (issue 16), on the local fake
GitHub with storage on SQLite: a ``policy.protected`` selector naming a GitHub login keeps that
login out of every revocation; a repository whose deploy keys cannot be read on a later run
keeps the earlier finding, stale and unresolved; the audit log's last use after termination
makes the membership critical; and the demo shows Bob's SAML-authorized token used after he
left as critical.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from offboard_audit.config import Config, build_config
from offboard_audit.core.exposure import exposure_scope
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Finding, FindingStatus
from offboard_audit.core.runs import RunResult
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.engine.revocation import RevocationEngine
from offboard_audit.storage.store import Store
from tests.support.github import NOW, ORG, Failure, GitHubWorld

BOB_LEFT = datetime(2026, 9, 30, 17, 0, tzinfo=UTC)
CAROL_LEFT = datetime(2026, 6, 15, tzinfo=UTC)
HR = """employee_id,email,name,status,termination_date,aliases
E1001,alice@example.com,Alice Active,active,,alice
E1002,bob@example.com,Bob Leaver,terminated,2026-09-30T17:00:00+00:00,bob
E1003,carol@example.com,Carol Gone,terminated,2026-06-15,cgone
"""


class Audit:
    """Audits of the fake organisation through the pipeline, findings read back from SQLite."""

    def __init__(self, world: GitHubWorld, tmp: Path) -> None:
        self.world = world
        self.tmp = tmp
        (tmp / "hr.csv").write_text(HR)

    def config(self, policy: dict[str, Any] | None = None, **github: Any) -> Config:
        raw = {
            "database": {"url": f"sqlite:///{self.tmp / 'audit.db'}"},
            "policy": {
                "max_new_terminations": 1.0,
                "grace_period": "0h",
                "delete_after": "0h",
                **(policy or {}),
            },
            "sources": [
                {"name": "hr", "type": "hr_csv", "path": str(self.tmp / "hr.csv")},
                {
                    "name": "gh",
                    "type": "github",
                    "org": ORG,
                    "api_url": self.world.server.url,
                    "token_env": "GH_TOKEN",
                    **github,
                },
            ],
        }
        return build_config(raw, base_dir=self.tmp, env={"GH_TOKEN": "ghp_owner"})

    def ctx(self) -> SourceContext:
        return SourceContext(self.tmp, env={"GH_TOKEN": "ghp_owner"}, clients={"gh": self.world.client()})

    def store(self) -> Store:
        return Store.open(f"sqlite:///{self.tmp / 'audit.db'}")

    def run(self, policy: dict[str, Any] | None = None, **github: Any) -> RunResult:
        return Pipeline(self.config(policy, **github), self.store(), self.ctx()).run(NOW)

    def engine(self, policy: dict[str, Any] | None = None) -> RevocationEngine:
        return RevocationEngine(self.config(policy), self.store(), self.ctx(), "test", clock=lambda: NOW)

    def findings(self) -> list[Finding]:
        return [f for f in self.store().list_findings() if f.source == "gh"]


@pytest.fixture
def audit(github_world: GitHubWorld, tmp_path: Path) -> Audit:
    return Audit(github_world, tmp_path)


# --- policy.protected on a GitHub login ---------------------------------------------------------


@pytest.mark.parametrize(
    "selector", ["github:bobthebuilder", "gh:BobTheBuilder", f"github:{ORG}:bobthebuilder"]
)
def test_a_protected_selector_on_a_github_login_refuses_that_logins_revocation(
    audit: Audit, selector: str
) -> None:
    s = audit.world.state
    s.add_member("alice-dev", role="admin", name_id="alice@example.com")
    bob = s.add_member("bobthebuilder", name_id="bob@example.com")
    carol = s.add_member("cgone", name_id="carol@example.com")
    bob_token = s.authorize(
        bob, authorized_at=BOB_LEFT - timedelta(days=200), accessed_at=BOB_LEFT + timedelta(days=3)
    )
    carol_token = s.authorize(carol, authorized_at=CAROL_LEFT - timedelta(days=90))
    policy = {"protected": [selector]}
    audit.run(policy)
    bob_findings = {
        f.finding_id for f in audit.findings() if f.person is not None and f.person.employee_id == "E1002"
    }
    assert bob_findings  # Bob has findings: there is something protection has to hold back

    report = audit.engine(policy).revoke(NOW, apply=True)

    assert report.refused is None and report.plan is not None
    held = {h.finding_id: h.reason for h in report.plan.held}
    assert {fid for fid in bob_findings if selector in held.get(fid, "")} == bob_findings
    assert all("protected by policy.protected" in held[fid] for fid in bob_findings)
    touched = {o.person for o in report.outcomes}
    assert "E1002" not in touched and "E1003" in touched
    assert {o.status for o in report.outcomes} == {"applied"}
    # On GitHub itself: Bob keeps his membership and his token; Carol's were revoked.
    assert bob.id in s.members and bob_token.credential_id in s.authorizations
    assert carol.id not in s.members and carol_token.credential_id not in s.authorizations


# --- a repository's deploy keys unreadable on a later run --------------------------------------


def test_deploy_keys_unreadable_on_a_later_run_keep_the_earlier_finding_stale_and_unresolved(
    audit: Audit,
) -> None:
    s = audit.world.state
    alice = s.add_member("alice-dev", role="admin", name_id="alice@example.com")
    s.add_member("cgone", name_id="carol@example.com")
    infra = s.add_repo("infra", admins=(alice,))
    key = s.add_deploy_key(infra, "deploy-prod", added_by="cgone", created_at=CAROL_LEFT - timedelta(days=30))
    audit.run()

    def deploy_finding() -> Finding:
        (f,) = [x for x in audit.findings() if x.rule.value == "persistence-left-by-leaver"]
        return f

    first = deploy_finding()
    assert first.credential is not None and first.credential.credential_id == f"{ORG}/infra/keys/{key.id}"
    assert (first.status, first.stale) == (FindingStatus.OPEN, False)

    # The key is removed, but the repository's keys cannot be read: nothing may be concluded.
    infra.keys.clear()
    audit.world.server.fail("GET", f"/repos/{ORG}/infra/keys", Failure(404, "Not Found"))
    result = audit.run()
    failed = [(f.scope, f.error) for run in result.sources for f in run.failed_scopes]
    assert (exposure_scope(f"{ORG}/infra"), f"GET /repos/{ORG}/infra/keys: 404 Not Found") in failed
    second = deploy_finding()
    assert second.finding_id == first.finding_id
    assert (second.status, second.stale) == (FindingStatus.OPEN, True)

    # Readable again, the key is seen gone: the finding resolves.
    audit.run()
    third = deploy_finding()
    assert (third.status, third.stale) == (FindingStatus.RESOLVED, False)


# --- the audit log's last use ------------------------------------------------------------------


def test_an_audit_log_event_after_termination_makes_the_membership_critical(audit: Audit) -> None:
    s = audit.world.state
    s.add_member("alice-dev", role="admin", name_id="alice@example.com")
    bob = s.add_member("bobthebuilder", name_id="bob@example.com")
    carol = s.add_member("cgone", name_id="carol@example.com")
    s.log(bob, "repo.download_zip", BOB_LEFT - timedelta(days=2), repo="api")
    s.log(bob, "git.clone", BOB_LEFT + timedelta(days=6), repo="api")
    s.log(carol, "git.clone", CAROL_LEFT - timedelta(days=1), repo="api")  # before she left
    audit.run(audit_log=True)
    membership = {
        f.person.employee_id: f
        for f in audit.findings()
        if f.person is not None and f.credential is not None and f.credential.credential_id == "membership"
    }
    bob_f, carol_f = membership["E1002"], membership["E1003"]
    assert bob_f.credential is not None and bob_f.credential.last_used_at == BOB_LEFT + timedelta(days=6)
    assert (bob_f.rule.value, bob_f.severity.value) == ("used-after-termination", "critical")
    assert carol_f.credential is not None and carol_f.credential.last_used_at == CAROL_LEFT - timedelta(
        days=1
    )
    assert (carol_f.rule.value, carol_f.severity.value) == ("credential-after-termination", "high")


def test_without_the_audit_log_the_same_membership_is_only_high(audit: Audit) -> None:
    s = audit.world.state
    bob = s.add_member("bobthebuilder", name_id="bob@example.com")
    s.log(bob, "git.clone", BOB_LEFT + timedelta(days=6), repo="api")
    audit.run()  # audit_log defaults to false: the event is not read
    (f,) = [
        x for x in audit.findings() if x.credential is not None and x.credential.credential_id == "membership"
    ]
    assert f.credential is not None and f.credential.last_used_at is None
    assert (f.rule.value, f.severity.value) == ("credential-after-termination", "high")
    assert audit.world.server.calls[f"GET /orgs/{ORG}/audit-log"] == 0


# --- the demo ----------------------------------------------------------------------------------


def test_demo_shows_bobs_saml_authorized_token_used_after_he_left_as_critical(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "offboard_audit", "demo", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    body = json.loads(out.stdout)
    run = {s["name"]: s for s in body["run"]["sources"]}
    assert run["github"]["status"] == "ok" and run["github"]["failed_scopes"] == []
    bob_tokens = [
        f
        for f in body["findings"]
        if f["source"] == "github"
        and f["person"] is not None
        and f["person"]["employee_id"] == "E1002"
        and f["credential"]["kind"] == "sso_authorization"
    ]
    used_after = [
        f
        for f in bob_tokens
        if f["credential"]["last_used_at"] is not None
        and datetime.fromisoformat(f["credential"]["last_used_at"])
        > datetime.fromisoformat(f["person"]["terminated_at"])
    ]
    assert len(used_after) == 1, bob_tokens
    (token,) = used_after
    assert (token["rule"], token["severity"]) == ("used-after-termination", "critical")
    assert token["account"]["name"] == "bobthebuilder"
    assert (
        "personal access token" in token["credential"]["detail"]
        and "SAML-authorized" in token["credential"]["detail"]
    )
    # His other SAML credential (an SSH key never used since) is not critical.
    assert {f["severity"] for f in bob_tokens if f is not token} == {"high"}
