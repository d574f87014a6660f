"""Mutation holes in what a run reports per account source (offboard_audit/engine/collect.py,
``source_run``): the error of a source that failed with nothing stored, the counts of the stored
data a failed source falls back to, the counts of a read that kept last known values, and the
error naming each failed scope. A source that failed or was only partly read is never clean."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import ScopeFailure
from offboard_audit.core.runs import RunResult, SourceRun, SourceStatus
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.storage.store import Store
from tests.integration.test_enrichment_failures import EnrichedSource
from tests.support.configs import config_with
from tests.support.fakes import T0, FakeAccountSource, FakeHRSource, account, credential, leaver, person

NOW = T0 + timedelta(days=10)
LATER = NOW + timedelta(hours=1)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'audit.db'}")


def make(tmp_path: Path, store: Store, sys: FakeAccountSource) -> Pipeline:
    hr = FakeHRSource(people=[person("E1", "alice@example.com"), leaver("E2", T0, email="bob@example.com")])
    cfg = config_with(tmp_path, account_sources=[sys.name])
    return Pipeline(cfg, store, SourceContext(base_dir=tmp_path), instances={"hr": hr, sys.name: sys})


def sys_run(store: Store, result: RunResult) -> SourceRun:
    """The source's run as the result reports it, checked equal to what the store recorded."""
    (src,) = [s for s in result.sources if s.name == "sys"]
    (stored,) = [s for s in store.source_runs(result.run_id) if s.name == "sys"]
    assert stored == src
    return src


def two_scope_source() -> FakeAccountSource:
    alice = account("alice", emails=("alice@example.com",), scope="111")
    bob = account("bob", emails=("bob@example.com",), scope="222")
    return FakeAccountSource(
        accounts=[alice, bob], credentials=[credential(alice, "K-alice"), credential(bob, "K-bob")]
    )


def test_a_source_failing_with_nothing_stored_says_in_its_error_that_it_contributes_no_findings(
    tmp_path: Path, store: Store
) -> None:
    sys = two_scope_source()
    sys.fail = "AccessDenied: iam:ListUsers"
    src = sys_run(store, make(tmp_path, store, sys).run(NOW))

    assert src.status is SourceStatus.FAILED and src.stale
    assert (
        src.error
        == "AccessDenied: iam:ListUsers (failed, no earlier data: this source contributes no findings)"
    )
    assert src.counts == (("accounts", 0), ("credentials", 0))


def test_a_failed_source_counts_the_stored_accounts_and_credentials_it_falls_back_to(
    tmp_path: Path, store: Store
) -> None:
    sys = two_scope_source()
    sys.credentials.append(credential(sys.accounts[1], "K-bob-2"))
    p = make(tmp_path, store, sys)
    p.run(NOW)

    sys.fail = "AccessDenied: iam:ListUsers"
    src = sys_run(store, p.run(LATER))
    assert src.status is SourceStatus.FAILED and src.stale
    assert src.error == "AccessDenied: iam:ListUsers"  # earlier data exists: nothing more to say
    assert src.counts == (("accounts", 2), ("credentials", 3))


def test_a_read_that_kept_last_known_values_counts_them_besides_its_accounts_and_credentials(
    tmp_path: Path, store: Store
) -> None:
    bob = account("bob", emails=("bob@example.com",), scope="prod")
    sys = EnrichedSource(
        accounts=[bob],
        credentials=[credential(bob, "K-bob"), credential(bob, "K-bob-2")],
        last_use={"K-bob": T0 + timedelta(days=3)},
    )
    p = make(tmp_path, store, sys)
    p.run(NOW)

    sys.enrichment_error = "last-use evidence unavailable: HTTP 500"
    src = sys_run(store, p.run(LATER))
    assert src.status is SourceStatus.DEGRADED
    assert src.counts == (("accounts", 1), ("credentials", 2), ("kept_last_known", 1))


def test_several_failed_scopes_are_each_named_by_their_scope_in_one_error_split_by_semicolons(
    tmp_path: Path, store: Store
) -> None:
    sys = two_scope_source()
    p = make(tmp_path, store, sys)
    p.run(NOW)

    sys.failed_scopes = [
        ScopeFailure("111", "AccessDenied: iam:ListUsers"),
        ScopeFailure("222", "Throttling: Rate exceeded"),
    ]
    src = sys_run(store, p.run(LATER))
    assert src.status is SourceStatus.FAILED and src.stale
    assert src.error == "111: AccessDenied: iam:ListUsers; 222: Throttling: Rate exceeded"
    assert [f.scope for f in src.failed_scopes] == ["111", "222"]


def test_a_failure_of_the_unnamed_scope_is_named_by_the_source(tmp_path: Path, store: Store) -> None:
    alice = account("alice", emails=("alice@example.com",))
    sys = FakeAccountSource(accounts=[alice], credentials=[credential(alice, "K-alice")])
    p = make(tmp_path, store, sys)
    p.run(NOW)

    sys.failed_scopes = [ScopeFailure("", "AccessDenied: iam:ListUsers")]
    src = sys_run(store, p.run(LATER))
    assert src.status is SourceStatus.FAILED and src.stale
    assert src.error == "sys: AccessDenied: iam:ListUsers"
