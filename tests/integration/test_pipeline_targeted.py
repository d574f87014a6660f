"""A run about one person (the HR webhook path) is a scope of the one pipeline: it settles, details
and marks stale exactly like a full run, and records its status the same way (issue 12, item 1).

Before, the targeted copy ignored a detail pass's failed scopes (a failed detail read was not
marked stale: the bulk placeholders stood in for the leaver's real keys) and never wrote
``degraded``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest

from offboard_audit.core.people import PersonChange
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import FindingStatus, Person, PersonStatus, ScopeFailure, SourceData
from offboard_audit.core.runs import RunStatus, SourceStatus
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.storage.store import Store
from tests.support.configs import config_with
from tests.support.fakes import T0, FakeAccountSource, FakeHRSource, account, credential, leaver, person

NOW = T0 + timedelta(days=10)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store.open(f"sqlite:///{tmp_path / 'audit.db'}")
    return Store.open(request.getfixturevalue("postgres_url"))


def make(tmp_path: Path, store: Store, hr: FakeHRSource, *sources: FakeAccountSource) -> Pipeline:
    cfg = config_with(tmp_path, account_sources=[s.name for s in sources])
    instances = {"hr": hr, **{s.name: s for s in sources}}
    return Pipeline(cfg, store, SourceContext(base_dir=tmp_path), instances=instances)


def keys(findings) -> set[tuple[str, str | None, bool]]:
    return {
        (f.account.account_id, f.credential.credential_id if f.credential else None, f.stale)
        for f in findings
    }


def bulk_only_org() -> tuple[FakeHRSource, FakeAccountSource]:
    """bob left; the bulk pass of his scope knows only a report slot, the detail pass his key."""
    hr = FakeHRSource(people=[person("E1", "alice@example.com"), leaver("E2", T0, email="bob@example.com")])
    bob = account("bob", emails=("bob@example.com",), scope="111")
    alice = account("alice", emails=("alice@example.com",), scope="111")
    slot = replace(credential(bob, "report/access_key_1"), provisional=True)
    sys = FakeAccountSource(
        accounts=[alice, bob],
        credentials=[credential(alice, "AKIAALICE"), slot],
        detail_credentials={"bob": [credential(bob, "AKIABOB")]},
    )
    return hr, sys


@pytest.mark.parametrize("fault", ["raises", "reports_failed_scope"])
def test_a_failed_detail_read_in_a_targeted_run_keeps_the_leavers_key_stale_and_resolves_nothing(
    tmp_path, store, fault
):
    hr, sys = bulk_only_org()
    p = make(tmp_path, store, hr, sys)
    first = p.run(NOW)
    assert keys(first.findings) == {("bob", "AKIABOB", False)}

    if fault == "raises":
        sys.detail_fail = "Throttling: Rate exceeded"
    else:
        sys.detail_failed_scopes = [ScopeFailure("111", "AccessDenied on ListAccessKeys")]
    targeted = p.run_person("E2", NOW + timedelta(hours=1)).run

    # The source has no collect_for: it collected everything, and bob's detail failed. His scope's
    # stored data (with the real key) is used, marked stale, never the placeholder.
    (src,) = targeted.sources
    assert src.status is SourceStatus.FAILED and src.stale
    assert [f.scope for f in src.failed_scopes] == ["111"]
    assert keys(targeted.findings) == {("bob", "AKIABOB", True)}
    assert targeted.status is RunStatus.FAILED_SOURCES
    assert store.latest_run("targeted").status is RunStatus.FAILED_SOURCES
    (stored,) = store.list_findings(person="E2")
    assert stored.status is FindingStatus.OPEN and stored.stale
    assert store.list_findings([FindingStatus.RESOLVED.value]) == []


@dataclass
class WarningTargetedFake(FakeAccountSource):
    """Reads one person, with a warning (a skipped entry): the read is usable but degraded."""

    def collect_for(self, person: Person) -> SourceData:
        mine = [a for a in self.accounts if person.email in a.emails]
        ids = {a.account_id for a in mine}
        creds = tuple(c for c in self.credentials if c.account_id in ids)
        return SourceData(tuple(mine), creds, warnings=("skipped 1 entry without a uid",))


def test_a_targeted_run_with_a_degraded_source_is_recorded_degraded(tmp_path, store):
    hr = FakeHRSource(people=[person("E1", "alice@example.com"), person("E2", "bob@example.com")])
    bob = account("bob", source="tgt", emails=("bob@example.com",))
    tgt = WarningTargetedFake(name="tgt", accounts=[bob], credentials=[credential(bob, "K-bob")])
    p = make(tmp_path, store, hr, tgt)
    assert p.run(NOW).status is RunStatus.DONE  # the full read has no warning

    change = PersonChange(
        "E2", PersonStatus.TERMINATED, T0, "bob@example.com", effective_at=T0, origin="test"
    )
    outcome = p.run_person("E2", NOW + timedelta(hours=1), change)

    assert outcome.read_modes == (("tgt", "targeted"),)
    (src,) = outcome.run.sources
    assert src.status is SourceStatus.DEGRADED and src.warnings == ("skipped 1 entry without a uid",)
    assert outcome.run.status is RunStatus.DEGRADED
    latest = store.latest_run("targeted")
    assert latest is not None and latest.run_id == outcome.run.run_id and latest.status is RunStatus.DEGRADED
    assert keys(outcome.run.findings) == {("bob", "K-bob", False)}


def test_a_targeted_run_whose_source_fails_uses_that_persons_stored_data_marked_stale(tmp_path, store):
    hr, sys = bulk_only_org()
    p = make(tmp_path, store, hr, sys)
    p.run(NOW)
    sys.fail = "connection refused"
    targeted = p.run_person("E2", NOW + timedelta(hours=1)).run
    (src,) = targeted.sources
    assert src.status is SourceStatus.FAILED and src.stale and "connection refused" in (src.error or "")
    # alice's stored account is read back too, but only bob's links are kept.
    assert keys(targeted.findings) == {("bob", "AKIABOB", True)}
    assert store.latest_run("targeted").status is RunStatus.FAILED_SOURCES
