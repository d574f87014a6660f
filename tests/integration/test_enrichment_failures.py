"""An optional enrichment that fails never downgrades or resolves a finding (issue 17, item 2).

Any connector may add evidence on top of what it lists (GCP's Policy Analyzer last
authentication is one; ``tests/connectors/gcp/test_cli.py`` drives that one end to end). Here a
fake source reports ``EnrichmentFailure`` like any connector would: the engine keeps the last
known values (marked stale), reports the source degraded with a warning, and closes no finding
whose credential is still there; a credential the read shows gone or inactive still closes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest

from offboard_audit.core.lifecycle import unproven_ids, update_findings
from offboard_audit.core.people import PersonChange
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import (
    Account,
    EnrichmentFailure,
    FindingStatus,
    PersonStatus,
    Rule,
    Severity,
    SourceData,
    finding_id,
)
from offboard_audit.core.runs import SourceStatus
from offboard_audit.core.stored import StoredFinding
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.storage.store import Store
from tests.support.configs import config_with
from tests.support.fakes import T0, FakeAccountSource, FakeHRSource, account, credential, leaver, person

NOW = T0 + timedelta(days=10)
USED = T0 + timedelta(days=3)  # bob's key was used after he left


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store.open(f"sqlite:///{tmp_path / 'audit.db'}")
    return Store.open(request.getfixturevalue("postgres_url"))


@dataclass
class EnrichedSource(FakeAccountSource):
    """Lists keys without their last use; the detail pass adds it (an optional enrichment), or
    reports the scope's enrichment failed when ``enrichment_error`` is set."""

    last_use: dict[str, object] | None = None
    enrichment_error: str | None = None

    def detail(self, accounts: Sequence[Account]) -> SourceData:
        asked = {a.account_id for a in accounts}
        creds = [c for c in self.credentials if c.account_id in asked]
        if self.enrichment_error:
            failures = tuple(
                EnrichmentFailure(s, self.enrichment_error) for s in sorted({a.scope for a in accounts})
            )
            return SourceData(credentials=tuple(creds), enrichment_failures=failures)
        uses = self.last_use or {}
        enriched = [replace(c, last_used_at=uses.get(c.credential_id)) for c in creds]
        return SourceData(credentials=tuple(enriched))

    def collect_for(self, p: object) -> SourceData:
        data = self.collect()
        detail = self.detail(list(data.accounts))
        return replace(
            data,
            credentials=detail.credentials,
            enrichment_failures=detail.enrichment_failures,
        )


def org() -> tuple[FakeHRSource, EnrichedSource]:
    hr = FakeHRSource(people=[person("E1", "alice@example.com"), leaver("E2", T0, email="bob@example.com")])
    bob = account("bob", emails=("bob@example.com",), scope="prod")
    sys = EnrichedSource(
        accounts=[bob],
        credentials=[credential(bob, "K-bob"), credential(bob, "K-bob-2")],
        last_use={"K-bob": USED},
    )
    return hr, sys


def make(tmp_path: Path, store: Store, hr: FakeHRSource, sys: FakeAccountSource) -> Pipeline:
    cfg = config_with(tmp_path, account_sources=[sys.name])
    return Pipeline(cfg, store, SourceContext(base_dir=tmp_path), instances={"hr": hr, sys.name: sys})


def by_credential(findings) -> dict[str, tuple[str, FindingStatus]]:
    return {f.credential.credential_id: (f.rule.value, f.status) for f in findings if f.credential}


def test_a_failed_enrichment_keeps_the_critical_finding_with_its_last_known_use_and_degrades_the_source(
    tmp_path, store
):
    hr, sys = org()
    p = make(tmp_path, store, hr, sys)
    first = p.run(NOW)
    assert by_credential(first.findings) == {
        "K-bob": ("used-after-termination", FindingStatus.OPEN),
        "K-bob-2": ("credential-after-termination", FindingStatus.OPEN),
    }

    sys.enrichment_error = "last-use evidence unavailable: HTTP 500"
    second = p.run(NOW + timedelta(hours=1))

    (src,) = [s for s in second.sources if s.name == "sys"]
    assert src.status is SourceStatus.DEGRADED and not src.stale
    assert any("HTTP 500" in w and "prod" in w for w in src.warnings)
    assert dict(src.counts)["kept_last_known"] == 1
    assert by_credential(second.findings) == by_credential(first.findings)
    (kept,) = [f for f in second.findings if f.rule is Rule.USED_AFTER_TERMINATION]
    assert kept.severity is Severity.CRITICAL
    assert kept.credential is not None and kept.credential.last_used_at == USED
    assert kept.credential.last_used_stale
    assert "(as of an earlier read: this run could not read its last use)" in kept.reason
    (stored_kept,) = store.list_findings([FindingStatus.OPEN.value], finding_ids=[kept.finding_id])
    assert stored_kept.reason == kept.reason
    # Nothing resolved, nothing new: the stored findings are exactly the first run's.
    assert store.list_findings([FindingStatus.RESOLVED.value]) == []
    assert sorted(f.finding_id for f in store.list_findings([FindingStatus.OPEN.value])) == sorted(
        f.finding_id for f in first.findings
    )
    # The snapshot keeps the last known value for the next run (it is not overwritten with None).
    (stored_key,) = [c for c in store.load_snapshot("sys").credentials if c.credential_id == "K-bob"]
    assert stored_key.last_used_at == USED

    third = p.run(NOW + timedelta(hours=2))  # still failing: still the same
    assert by_credential(third.findings) == by_credential(first.findings)


def test_a_failed_enrichment_still_lets_a_credential_the_read_shows_inactive_close(tmp_path, store):
    hr, sys = org()
    p = make(tmp_path, store, hr, sys)
    first = p.run(NOW)
    sys.enrichment_error = "timeout"
    sys.credentials = [replace(c, active=False) if c.credential_id == "K-bob" else c for c in sys.credentials]

    second = p.run(NOW + timedelta(hours=1))

    (closed,) = [f for f in first.findings if f.rule is Rule.USED_AFTER_TERMINATION]
    (resolved,) = store.list_findings([FindingStatus.RESOLVED.value])
    assert resolved.finding_id == closed.finding_id
    assert "K-bob" not in by_credential(second.findings)


def test_a_stored_critical_finding_without_stored_evidence_is_not_resolved_by_a_failed_enrichment(
    tmp_path, store
):
    """A webhook (targeted) run found the key used after termination; targeted runs store no
    snapshot, so a full run whose enrichment fails has no last known value to keep: the critical
    finding must still not close."""
    hr = FakeHRSource(
        people=[person("E1", "alice@example.com"), person("E2", "bob@example.com"), person("E3")]
    )
    _, sys = org()
    p = make(tmp_path, store, hr, sys)
    p.run(NOW - timedelta(days=30))  # bob still active: nothing about him
    change = PersonChange(
        "E2", PersonStatus.TERMINATED, T0, "bob@example.com", effective_at=T0, origin="test"
    )
    targeted = p.run_person("E2", NOW, change).run
    (critical,) = [f for f in targeted.findings if f.rule is Rule.USED_AFTER_TERMINATION]

    sys.enrichment_error = "HTTP 403"
    hr.people = [person("E1", "alice@example.com"), leaver("E2", T0, email="bob@example.com"), person("E3")]
    p.run(NOW + timedelta(hours=1))

    (stored,) = store.list_findings(finding_ids=[critical.finding_id])
    assert stored.status is FindingStatus.OPEN and stored.severity is Severity.CRITICAL


def test_unproven_ids_keep_open_only_findings_whose_credential_is_still_active() -> None:
    bob = account("bob", scope="prod")
    active, gone = credential(bob, "K1"), credential(bob, "K2", active=False)
    keep = unproven_ids([bob], [active, gone])
    stored = {
        fid: StoredFinding(fid, FindingStatus.OPEN, "sys", "prod", "", False, None, None, "uid-bob")
        for fid in (
            finding_id(Rule.USED_AFTER_TERMINATION, "sys", "bob", "K1"),
            finding_id(Rule.USED_AFTER_TERMINATION, "sys", "bob", "K2"),
        )
    }
    update = update_findings(stored, [], {("sys", "prod")}, keep_open=keep)
    assert [c.finding_id for c in update.closed] == [
        finding_id(Rule.USED_AFTER_TERMINATION, "sys", "bob", "K2")
    ]
