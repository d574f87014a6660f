"""What leavers could carry away from Google Cloud, end to end: the real google-cloud-logging,
google-cloud-secret-manager and google-cloud-kms clients (plaintext gRPC) and the IAM / Resource
Manager clients against the local fakes (``tests/support/gcp_exposure.py``); full audits through
the pipeline, findings read back from the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from offboard_audit.config import Config, build_config
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Finding, FindingStatus
from offboard_audit.core.runs import RunResult, SourceRun
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.storage.store import Store
from tests.support.gcp_exposure import DATA_ACCESS, SM, ExposureFake

NOW = datetime.now(UTC).replace(microsecond=0)
LEFT = NOW - timedelta(days=10)
READ_AT = NOW - timedelta(days=20)
LONG_AGO = NOW - timedelta(days=200)
HR = (
    "employee_id,email,name,status,termination_date,aliases,manager_email\n"
    f"E1,alice@example.com,Alice Leaver,terminated,{LEFT.isoformat()},,boss@example.com\n"
    "E2,bob@example.com,Bob Active,active,,,\n"
    f"E3,carol@example.com,Carol Signer,terminated,{LEFT.isoformat()},,\n"
)
SECRETS = "secretmanager.googleapis.com"
KMS = "cloudkms.googleapis.com"
DEPLOY = "svc-deploy@p1.iam.gserviceaccount.com"
RUNNER = "svc-runner@p1.iam.gserviceaccount.com"
SIGNER = "projects/p1/locations/global/keyRings/release/cryptoKeys/release-signer"
EXPOSURE_RULES = ("secret-exposed-to-leaver", "persistence-left-by-leaver")


@dataclass
class World:
    fake: ExposureFake
    tmp: Path
    ids: dict[str, str]

    @property
    def state(self) -> Any:
        return self.fake.state

    def config(self, **exposure: Any) -> Config:
        raw = {
            "database": {"url": f"sqlite:///{self.tmp / 'audit.db'}"},
            "policy": {"max_new_terminations": 1.0},
            "sources": [
                {"name": "hr", "type": "hr_csv", "path": str(self.tmp / "hr.csv")},
                self.fake.source_table("gcp", projects=["p1", "p2"], exposure=exposure),
            ],
        }
        return build_config(raw, base_dir=self.tmp, env={})

    def run(self, now: datetime = NOW, **exposure: Any) -> RunResult:
        config = self.config(**exposure)
        return Pipeline(config, Store.open(config.database_url), SourceContext(self.tmp)).run(now)

    def stored(self) -> dict[tuple[str, str, str], Finding]:
        store = Store.open(f"sqlite:///{self.tmp / 'audit.db'}")
        out = {}
        for f in store.list_findings():
            if f.rule.value in EXPOSURE_RULES:
                assert f.person is not None and f.credential is not None
                out[(f.rule.value, f.person.employee_id, f.credential.credential_id)] = f
        return out

    def open_keys(self) -> set[tuple[str, str, str, str]]:
        return {
            (r, p, c, f.severity.value)
            for (r, p, c), f in self.stored().items()
            if f.status is FindingStatus.OPEN
        }

    def log_calls(self, resource: str = "projects/p1") -> int:
        return int(self.state.exposure_calls[("logging.ListLogEntries", resource)])


def exposure_run(result: RunResult) -> SourceRun:
    return next(s for s in result.sources if s.name == "gcp/exposure")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    (tmp_path / "hr.csv").write_text(HR)
    fake = ExposureFake().start()
    try:
        w = World(fake, tmp_path, {})
        _seed(w)
        yield w
    finally:
        fake.stop()


def _seed(w: World) -> None:
    st = w.state
    st.add_project("p1")
    st.add_project("p2")
    st.enable_data_access("p1")  # p2 has no Data Access audit logs
    st.add_service_account("p1", "svc-deploy")
    st.add_service_account("p1", "svc-runner")
    deploy_key = st.add_key(DEPLOY, READ_AT)
    runner_key = st.add_key(RUNNER, READ_AT, disabled=True)
    st.bind("p1", "roles/editor", "user:mallory@outside.example")
    signing = st.add_secret(
        "p1",
        "signing-key",
        LONG_AGO,
        [(LONG_AGO, "ENABLED")],
        labels={"purpose": "signing"},
        annotations={"owner": "sec-team@example.com"},
    )
    db = st.add_secret("p1", "db-password", LONG_AGO, [(LONG_AGO, "ENABLED")])
    token = st.add_secret("p1", "api-token", LONG_AGO, [(LONG_AGO, "ENABLED")])
    st.add_secret("p2", "payroll", LONG_AGO, [(LONG_AGO, "ENABLED")])
    st.add_crypto_key(
        "p1",
        "release",
        "release-signer",
        "ASYMMETRIC_SIGN",
        LONG_AGO,
        [(LONG_AGO, "ENABLED")],
        labels={"owner": "release-team"},
    )
    st.add_crypto_key("p1", "release", "made-only", "ASYMMETRIC_SIGN", LONG_AGO, [(LONG_AGO, "ENABLED")])
    w.ids.update(
        signing="projects/p1/secrets/signing-key",
        db="projects/p1/secrets/db-password",
        deploy_key=deploy_key.name,
        runner_key=runner_key.name,
        binding="projects/p1/roles/editor/user:mallory@outside.example",
    )
    p1 = "projects/p1"
    access = SM + "AccessSecretVersion"
    # alice (left) read two secrets, the signing one (critical), while employed
    st.audit_entry(
        p1,
        READ_AT,
        SECRETS,
        access,
        "alice@example.com",
        f"{signing.name}/versions/1",
        log=DATA_ACCESS,
        insert_id="ev-sign",
    )
    st.audit_entry(
        p1,
        READ_AT + timedelta(hours=1),
        SECRETS,
        access,
        "alice@example.com",
        f"{db.name}/versions/latest",
        log=DATA_ACCESS,
        insert_id="ev-db",
    )
    # a read refused: not an exposure
    st.audit_entry(
        p1,
        READ_AT,
        SECRETS,
        access,
        "alice@example.com",
        f"{token.name}/versions/1",
        status_code=7,
        log=DATA_ACCESS,
    )
    # bob (active) read the api token: nothing
    st.audit_entry(
        p1,
        READ_AT,
        SECRETS,
        access,
        "bob@example.com",
        f"{token.name}/versions/1",
        log=DATA_ACCESS,
        insert_id="ev-bob",
    )
    # alice made keys for two other service accounts (one disabled since) and granted an outsider
    for key in (deploy_key, runner_key):
        sa = key.name.split("/")[3]
        st.audit_entry(
            p1,
            READ_AT,
            "iam.googleapis.com",
            "google.iam.admin.v1.CreateServiceAccountKey",
            "alice@example.com",
            f"projects/-/serviceAccounts/{sa}",
            request={"name": f"projects/-/serviceAccounts/{sa}"},
            response={"name": key.name},
            insert_id=f"ev-key-{sa.split('@')[0]}",
        )
    st.audit_entry(
        p1,
        READ_AT,
        "cloudresourcemanager.googleapis.com",
        "SetIamPolicy",
        "alice@example.com",
        "projects/p1",
        binding_deltas=[{"action": "ADD", "role": "roles/editor", "member": "user:mallory@outside.example"}],
        insert_id="ev-grant",
    )
    # carol (left) created a signing key and signed with it; she only created another one
    for key_id, insert in (("release-signer", "ev-create"), ("made-only", "ev-create-2")):
        st.audit_entry(
            p1,
            READ_AT - timedelta(days=1),
            KMS,
            "CreateCryptoKey",
            "carol@example.com",
            "projects/p1/locations/global/keyRings/release",
            request={"parent": "projects/p1/locations/global/keyRings/release", "cryptoKeyId": key_id},
            insert_id=insert,
        )
    st.audit_entry(
        p1,
        READ_AT,
        KMS,
        "AsymmetricSign",
        "carol@example.com",
        f"{SIGNER}/cryptoKeyVersions/1",
        log=DATA_ACCESS,
        insert_id="ev-sign-kms",
    )


def test_leavers_exposure_findings_are_exact(world: World) -> None:
    result = world.run()
    assert result.status.value == "done", result.sources
    assert world.open_keys() == {
        ("secret-exposed-to-leaver", "E1", world.ids["signing"], "critical"),
        ("secret-exposed-to-leaver", "E1", world.ids["db"], "high"),
        ("persistence-left-by-leaver", "E1", world.ids["deploy_key"], "high"),
        ("persistence-left-by-leaver", "E1", world.ids["binding"], "high"),
        ("secret-exposed-to-leaver", "E3", SIGNER, "high"),
    }
    found = world.stored()
    signing = found[("secret-exposed-to-leaver", "E1", world.ids["signing"])]
    assert [(a.at, a.how.value, a.event_id, a.action) for a in signing.exposure] == [
        (READ_AT, "read", "ev-sign", "AccessSecretVersion")
    ]
    assert (signing.owner.via.value, signing.owner.email) == ("owner-tag", "sec-team@example.com")  # type: ignore[union-attr]
    assert signing.account.account_id == "user:alice@example.com"
    db = found[("secret-exposed-to-leaver", "E1", world.ids["db"])]
    assert (db.owner.via.value, db.owner.email) == ("manager", "boss@example.com")  # type: ignore[union-attr]
    key = found[("persistence-left-by-leaver", "E1", world.ids["deploy_key"])]
    assert key.credential.kind.value == "service_account_key"  # type: ignore[union-attr]
    assert DEPLOY in key.reason and "enabled" in key.reason
    kms = found[("secret-exposed-to-leaver", "E3", SIGNER)]
    assert [(a.how.value, a.event_id) for a in kms.exposure] == [
        ("created", "ev-create"),
        ("used", "ev-sign-kms"),
    ]
    assert (kms.credential.kind.value, kms.owner.email) == ("kms_key", "release-team")  # type: ignore[union-attr]


def test_an_active_persons_read_and_a_refused_read_raise_nothing(world: World) -> None:
    world.run()
    stored = world.stored()
    assert not [k for k in stored if k[1] == "E2"]
    assert not [k for k in stored if k[2] == "projects/p1/secrets/api-token"]


def test_the_tool_never_reads_a_secret_value_and_reads_versions_only_of_touched_secrets(world: World) -> None:
    world.run()
    assert world.state.exposure_calls_of("secretmanager.AccessSecretVersion") == 0
    versions = {r for (m, r) in world.state.exposure_calls if m == "secretmanager.ListSecretVersions"}
    n = world.state.number_of("p1")
    assert versions == {f"projects/{n}/secrets/signing-key", f"projects/{n}/secrets/db-password"}


def test_a_secret_rotated_since_the_access_resolves_only_once_the_old_version_is_retired(
    world: World,
) -> None:
    world.run()
    key = ("secret-exposed-to-leaver", "E1", world.ids["db"])
    assert world.stored()[key].status is FindingStatus.OPEN
    db = world.state.secrets[f"projects/{world.state.number_of('p1')}/secrets/db-password"]
    db.versions.append(type(db.versions[0])(2, NOW - timedelta(days=1), "ENABLED"))
    world.run(NOW + timedelta(hours=1))
    assert world.stored()[key].status is FindingStatus.OPEN  # version 1 can still be accessed
    db.versions[0].state = "DESTROYED"
    world.run(NOW + timedelta(hours=2))
    assert world.stored()[key].status is FindingStatus.RESOLVED


def test_a_kms_key_resolves_when_a_new_version_is_current_and_the_old_one_disabled(world: World) -> None:
    world.run()
    key = ("secret-exposed-to-leaver", "E3", SIGNER)
    signer = world.state.keys[SIGNER]
    signer.versions.append(type(signer.versions[0])(2, NOW - timedelta(days=1), "ENABLED"))
    world.run(NOW + timedelta(hours=1))
    assert world.stored()[key].status is FindingStatus.OPEN
    signer.versions[0].state = "DISABLED"
    world.run(NOW + timedelta(hours=2))
    assert world.stored()[key].status is FindingStatus.RESOLVED


def test_a_key_left_for_another_service_account_resolves_once_disabled(world: World) -> None:
    world.run()
    key = ("persistence-left-by-leaver", "E1", world.ids["deploy_key"])
    assert world.stored()[key].status is FindingStatus.OPEN
    world.state.service_accounts[DEPLOY].keys[world.ids["deploy_key"].rsplit("/", 1)[1]].disabled = True
    world.run(NOW + timedelta(hours=1))
    assert world.stored()[key].status is FindingStatus.RESOLVED


def test_disabled_data_access_logs_are_a_warning_never_a_clean_bill(world: World) -> None:
    result = world.run()
    run = exposure_run(result)
    assert run.status.value == "ok"
    p2 = [w for w in run.warnings if w.startswith("p2:")]
    assert len(p2) == 2 and all("not enabled" in w and "unknown, not 'nobody'" in w for w in p2)
    assert {SECRETS, KMS} == {s for w in p2 for s in (SECRETS, KMS) if s in w}
    assert not [w for w in run.warnings if w.startswith("p1:")]  # DATA_READ on for allServices


def test_data_access_logs_exempting_a_member_are_a_warning(world: World) -> None:
    world.state.audit_configs["p1"] = []
    world.state.enable_data_access("p1", SECRETS, exempted=["user:alice@example.com"])
    world.state.enable_data_access("p1", KMS)
    run = exposure_run(world.run())
    assert [w for w in run.warnings if w.startswith("p1:")] == [
        "p1: Data Access audit logs for secretmanager.googleapis.com exempt user:alice@example.com: their "
        "reads of secret versions (AccessSecretVersion) are not logged (unknown, not 'none')"
    ]


def test_a_failed_logging_call_fails_the_scope_keeps_findings_stale_and_resolves_nothing(
    world: World,
) -> None:
    world.run()
    key = ("secret-exposed-to-leaver", "E1", world.ids["db"])
    world.state.exposure_failures[("logging.ListLogEntries", "projects/p1")] = "PERMISSION_DENIED"
    db = world.state.secrets[f"projects/{world.state.number_of('p1')}/secrets/db-password"]
    db.versions[0].state = "DESTROYED"  # would resolve the finding, were the scope read
    result = world.run(NOW + timedelta(hours=1))
    run = exposure_run(result)
    assert [f.scope for f in run.failed_scopes] == ["exposure:p1"]
    assert "entries.list projects/p1, page 1: PermissionDenied" in run.failed_scopes[0].error
    assert result.status.value == "failed_sources"
    stored = world.stored()[key]
    assert stored.status is FindingStatus.OPEN and stored.stale


def test_a_page_error_keeps_the_pages_before_it_and_resumes_from_there(world: World) -> None:
    world.state.log_page_size = 3
    world.state.fail_log_page["projects/p1"] = 2
    first = exposure_run(world.run())
    assert [f.scope for f in first.failed_scopes] == ["exposure:p1"]
    assert "page 2" in first.failed_scopes[0].error
    assert dict(first.counts)["events_read"] == 3  # the first page is stored with its checkpoint
    assert world.stored() == {}  # nothing found (nor resolved) from a half-read project
    del world.state.fail_log_page["projects/p1"]
    world.state.log_requests.clear()
    again = exposure_run(world.run(NOW + timedelta(hours=1)))
    assert again.failed_scopes == ()
    p1 = [r for r in world.state.log_requests if list(r.resource_names) == ["projects/p1"]]
    # resumed after the first page's last entry (READ_AT - 1 day + ...): the three entries are not re-sent
    assert f'timestamp>="{(READ_AT).strftime("%Y-%m-%dT%H:%M:%S")}' in p1[0].filter
    assert dict(again.counts)["events_read"] == 10 - 3 + 1  # the rest, and the entry at the checkpoint
    assert len(world.open_keys()) == 5


def test_paging_reads_every_page_once(world: World) -> None:
    world.state.log_page_size = 4
    run = exposure_run(world.run())
    assert world.log_calls() == 3  # 10 entries in pages of 4
    assert dict(run.counts)["events_read"] == 10
    assert dict(run.counts)["log_objects"] == 3 + 1  # p1's three pages and p2's empty one
    assert len(world.open_keys()) == 5


def test_an_incremental_rerun_reads_only_entries_after_the_checkpoint(world: World) -> None:
    world.run()
    assert world.log_calls() == 1
    world.state.log_requests.clear()
    later = NOW + timedelta(hours=1)
    quiet = exposure_run(world.run(later))
    assert world.log_calls() == 2
    p1 = [r.filter for r in world.state.log_requests if list(r.resource_names) == ["projects/p1"]]
    assert f'timestamp>="{NOW.strftime("%Y-%m-%dT%H:%M:%S")}.000000Z"' in p1[0]  # from the last run's now
    assert dict(quiet.counts)["events_read"] == 0
    st = world.state
    st.audit_entry(
        "projects/p1",
        later + timedelta(minutes=5),
        SECRETS,
        SM + "AccessSecretVersion",
        "carol@example.com",
        f"projects/{st.number_of('p1')}/secrets/api-token/versions/1",
        log=DATA_ACCESS,
        insert_id="ev-new",
    )
    fresh = exposure_run(world.run(later + timedelta(hours=1)))
    assert world.log_calls() == 3
    assert (dict(fresh.counts)["events_read"], dict(fresh.counts)["events_new"]) == (1, 1)
    assert ("secret-exposed-to-leaver", "E3", "projects/p1/secrets/api-token", "high") in world.open_keys()


def test_a_role_granted_to_another_member_resolves_once_revoked(world: World) -> None:
    world.run()
    key = ("persistence-left-by-leaver", "E1", world.ids["binding"])
    assert world.stored()[key].status is FindingStatus.OPEN
    holder = world.state.policy_holder("p1")
    holder.bindings = [b for b in holder.bindings if "user:mallory@outside.example" not in b["members"]]
    world.run(NOW + timedelta(hours=1))
    assert world.stored()[key].status is FindingStatus.RESOLVED


def test_key_material_and_a_secret_value_the_leaver_supplied_are_exposed_though_stamped_after_the_entry(
    world: World,
) -> None:
    """The audit entry is dated when the call arrived; the key version an import made and the
    secret version an AddSecretVersion made are created during the call, a moment later. Alice
    supplied both values: her import of signing material is critical, her secret value high."""
    st = world.state
    p1 = "projects/p1"
    stamped = READ_AT + timedelta(milliseconds=300)
    imported = st.add_crypto_key("p1", "release", "imported", "ASYMMETRIC_SIGN", LONG_AGO, [])
    imported.versions.append(type(world.state.keys[SIGNER].versions[0])(1, stamped, "ENABLED", "ij-1"))
    st.audit_entry(
        p1,
        READ_AT,
        KMS,
        "ImportCryptoKeyVersion",
        "alice@example.com",
        imported.name,
        request={"parent": imported.name, "importJob": "ij-1"},
        response={"name": f"{imported.name}/cryptoKeyVersions/1"},
        insert_id="ev-import",
    )
    written = st.add_secret("p1", "partner-token", LONG_AGO, [(stamped, "ENABLED")])
    st.audit_entry(
        p1,
        READ_AT,
        SECRETS,
        SM + "AddSecretVersion",
        "alice@example.com",
        written.name,
        request={"parent": written.name},
        response={"name": f"{written.name}/versions/1"},
        insert_id="ev-add-version",
    )
    world.run()
    found = world.stored()
    key = found[("secret-exposed-to-leaver", "E1", imported.name)]
    assert (key.status, key.severity.value) == (FindingStatus.OPEN, "critical")
    assert [a.event_id for a in key.exposure] == ["ev-import"]
    secret = found[("secret-exposed-to-leaver", "E1", "projects/p1/secrets/partner-token")]
    assert (secret.status, [a.event_id for a in secret.exposure]) == (FindingStatus.OPEN, ["ev-add-version"])
