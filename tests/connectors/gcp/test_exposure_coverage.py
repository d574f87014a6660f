"""What the ``gcp_iam`` exposure reader covers: the same projects, organization and folders as
the IAM source (sub-folders included), and only the services inventoried (``secret_manager``,
``kms``): one switched off is not read, never taken as rotated. Full audits against the local
fakes (``tests/support/gcp_exposure.py``), findings read back from the store.
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
from tests.support.gcp_exposure import DATA_ACCESS, ExposureFake

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


# --- inventories switched off ------------------------------------------------------------------

READ_AT = NOW - timedelta(days=20)
LONG_AGO = NOW - timedelta(days=200)
SIGNING = "projects/p1/secrets/signing-key"
DB = "projects/p1/secrets/db-password"
SIGNER = "projects/p1/locations/global/keyRings/release/cryptoKeys/release-signer"


def seed_secrets(fake: ExposureFake) -> None:
    """Alice (who left) read two secrets of p1 and signed with a Cloud KMS key there, all long
    since made and never rotated."""
    st = fake.state
    st.add_project("p1")
    st.enable_data_access("p1")
    sm = "google.cloud.secretmanager.v1.SecretManagerService.AccessSecretVersion"
    for secret_id in ("signing-key", "db-password"):
        secret = st.add_secret("p1", secret_id, LONG_AGO, [(LONG_AGO, "ENABLED")])
        st.audit_entry(
            "projects/p1",
            READ_AT,
            "secretmanager.googleapis.com",
            sm,
            "alice@example.com",
            f"{secret.name}/versions/1",
            log=DATA_ACCESS,
            insert_id=f"ev-{secret_id}",
        )
    st.add_crypto_key("p1", "release", "release-signer", "ASYMMETRIC_SIGN", LONG_AGO, [(LONG_AGO, "ENABLED")])
    st.audit_entry(
        "projects/p1",
        READ_AT,
        "cloudkms.googleapis.com",
        "AsymmetricSign",
        "alice@example.com",
        f"{SIGNER}/cryptoKeyVersions/1",
        log=DATA_ACCESS,
        insert_id="ev-kms",
    )


def exposed(tmp: Path) -> dict[str, tuple[str, bool]]:
    """(status, stale) of each secret-exposed-to-leaver finding, by credential id."""
    found = exposure_findings(tmp, "secret-exposed-to-leaver")
    return {cid: (f.status.value, f.stale) for cid, f in found.items()}


@pytest.mark.parametrize(
    ("switched_off", "unread"),
    [
        ({"secret_manager": False}, {SIGNING, DB}),
        ({"kms": False}, {SIGNER}),
        ({"secret_manager": False, "kms": False}, {SIGNING, DB, SIGNER}),
    ],
)
def test_switching_an_inventory_off_keeps_its_findings_open_and_stale(
    tmp_path: Path, fake: ExposureFake, switched_off: dict[str, bool], unread: set[str]
) -> None:
    seed_secrets(fake)
    audit(tmp_path, fake, NOW, projects=["p1"])
    assert exposed(tmp_path) == {cid: ("open", False) for cid in (SIGNING, DB, SIGNER)}
    # Nothing changed in Google Cloud; the operator turns an inventory off.
    result = audit(tmp_path, fake, NOW + timedelta(hours=1), projects=["p1"], exposure=switched_off)
    assert exposed(tmp_path) == {cid: ("open", cid in unread) for cid in (SIGNING, DB, SIGNER)}
    run = next(s for s in result.sources if s.name == "gcp/exposure")
    assert any(w.startswith(f"{len(unread)} secret finding(s) are judged on") for w in run.warnings)


def test_with_an_inventory_off_the_other_one_still_resolves(tmp_path: Path, fake: ExposureFake) -> None:
    """Kept is not frozen: the service still inventoried replaces its stored state as before."""
    seed_secrets(fake)
    audit(tmp_path, fake, NOW, projects=["p1"])
    fake.state.keys[SIGNER].versions[0].state = "DESTROYED"
    db = fake.state.secrets[f"projects/{fake.state.number_of('p1')}/secrets/db-password"]
    db.versions[0].state = "DESTROYED"
    audit(tmp_path, fake, NOW + timedelta(hours=1), projects=["p1"], exposure={"secret_manager": False})
    assert exposed(tmp_path) == {SIGNING: ("open", True), DB: ("open", True), SIGNER: ("resolved", False)}
    # Switched back on, Secret Manager is read again: the retired version resolves its finding.
    audit(tmp_path, fake, NOW + timedelta(hours=2), projects=["p1"])
    assert exposed(tmp_path) == {
        SIGNING: ("open", False),
        DB: ("resolved", False),
        SIGNER: ("resolved", False),
    }
