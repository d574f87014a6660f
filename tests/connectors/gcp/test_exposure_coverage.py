"""What the ``gcp_iam`` exposure reader covers: the same projects, organization and folders as
the IAM source (sub-folders included), through full audits against the local fakes
(``tests/support/gcp_exposure.py``), findings read back from the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from offboard_audit.config import build_config
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Finding
from offboard_audit.core.runs import RunResult
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.storage.store import Store
from tests.support.gcp_exposure import ExposureFake

NOW = datetime.now(UTC).replace(microsecond=0)
LEFT = NOW - timedelta(days=10)
GRANTED_AT = NOW - timedelta(days=20)
ORG = "organizations/5"
FOLDER = "folders/10"
SUBFOLDER = "folders/11"
OUTSIDER = "user:mallory@outside.example"
HR = (
    "employee_id,email,name,status,termination_date,aliases,manager_email\n"
    f"E1,alice@example.com,Alice Leaver,terminated,{LEFT.isoformat()},,boss@example.com\n"
    "E2,bob@example.com,Bob Active,active,,,\n"
)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[ExposureFake]:
    (tmp_path / "hr.csv").write_text(HR)
    f = ExposureFake().start()
    try:
        yield f
    finally:
        f.stop()


def audit(tmp: Path, fake: ExposureFake, now: datetime, **gcp: Any) -> RunResult:
    raw = {
        "database": {"url": f"sqlite:///{tmp / 'audit.db'}"},
        "policy": {"max_new_terminations": 1.0},
        "sources": [
            {"name": "hr", "type": "hr_csv", "path": str(tmp / "hr.csv")},
            fake.source_table("gcp", **gcp),
        ],
    }
    config = build_config(raw, base_dir=tmp, env={})
    result = Pipeline(config, Store.open(config.database_url), SourceContext(tmp)).run(now)
    assert result.status.value == "done", result.sources
    return result


def exposure_findings(tmp: Path, rule: str) -> dict[str, Finding]:
    """The stored findings of ``rule``, by credential id."""
    store = Store.open(f"sqlite:///{tmp / 'audit.db'}")
    return {
        f.credential.credential_id: f
        for f in store.list_findings()
        if f.rule.value == rule and f.credential is not None
    }


# --- sub-folders -------------------------------------------------------------------------------


def grant_outsider(fake: ExposureFake, resource: str) -> str:
    """Alice (who left) grants an outsider roles/editor on ``resource``; the binding's id."""
    fake.state.bind(resource, "roles/editor", OUTSIDER)
    fake.state.audit_entry(
        resource,
        GRANTED_AT,
        "cloudresourcemanager.googleapis.com",
        "SetIamPolicy",
        "alice@example.com",
        resource,
        binding_deltas=[{"action": "ADD", "role": "roles/editor", "member": OUTSIDER}],
        insert_id=f"ev-grant-{resource}",
    )
    return f"{resource}/roles/editor/{OUTSIDER}"


def seed_folders(fake: ExposureFake) -> None:
    """organizations/5 > folders/10 > folders/11, a project in each folder; only the org configured."""
    fake.state.add_folder(FOLDER, parent=ORG)
    fake.state.add_folder(SUBFOLDER, parent=FOLDER)
    fake.state.add_project("nested", parent=FOLDER)
    fake.state.add_project("deep", parent=SUBFOLDER)


NO_INVENTORY = {"secret_manager": False, "kms": False}


def test_a_role_a_leaver_granted_on_a_sub_folder_is_found(tmp_path: Path, fake: ExposureFake) -> None:
    seed_folders(fake)
    binding = grant_outsider(fake, SUBFOLDER)
    audit(tmp_path, fake, NOW, organization=ORG, exposure=NO_INVENTORY)
    read = {r for (method, r) in fake.state.exposure_calls if method == "logging.ListLogEntries"}
    assert read == {ORG, FOLDER, SUBFOLDER, "projects/nested", "projects/deep"}
    found = exposure_findings(tmp_path, "persistence-left-by-leaver")
    assert set(found) == {binding}
    assert found[binding].status.value == "open"
    assert found[binding].account.scope == f"exposure:{SUBFOLDER}"


def test_a_role_granted_on_a_sub_folder_resolves_once_revoked(tmp_path: Path, fake: ExposureFake) -> None:
    seed_folders(fake)
    binding = grant_outsider(fake, SUBFOLDER)
    audit(tmp_path, fake, NOW, organization=ORG, exposure=NO_INVENTORY)
    assert exposure_findings(tmp_path, "persistence-left-by-leaver")[binding].status.value == "open"
    holder = fake.state.policy_holder(SUBFOLDER)
    holder.bindings = [b for b in holder.bindings if OUTSIDER not in b["members"]]
    audit(tmp_path, fake, NOW + timedelta(hours=1), organization=ORG, exposure=NO_INVENTORY)
    assert exposure_findings(tmp_path, "persistence-left-by-leaver")[binding].status.value == "resolved"
