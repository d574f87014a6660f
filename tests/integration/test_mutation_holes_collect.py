"""Mutation holes in reading the account sources (offboard_audit/engine/collect.py): which scopes
a full read covers (and so may resolve findings in), the detail pass's refined accounts, and the
warnings of a read whose optional enrichment failed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest

from offboard_audit.config import SourceConfig
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Account, FindingStatus, SourceData
from offboard_audit.core.runs import SourceStatus
from offboard_audit.engine.collect import AccountRead, ReadMode, read_scopes
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.storage.store import Store
from tests.integration.test_enrichment_failures import EnrichedSource
from tests.support.configs import config_with
from tests.support.fakes import T0, FakeAccountSource, FakeHRSource, account, credential, leaver, person

NOW = T0 + timedelta(days=10)
LOGIN = T0 + timedelta(days=2)  # bob's last login, which only the detail pass knows


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'audit.db'}")


def make(tmp_path: Path, store: Store, hr: FakeHRSource, sys: FakeAccountSource) -> Pipeline:
    cfg = config_with(tmp_path, account_sources=[sys.name])
    return Pipeline(cfg, store, SourceContext(base_dir=tmp_path), instances={"hr": hr, sys.name: sys})


def sys_config(tmp_path: Path) -> SourceConfig:
    (cfg,) = [s for s in config_with(tmp_path).sources if s.name == "sys"]
    return cfg


def full_read(tmp_path: Path, data: SourceData | None, mode: ReadMode = ReadMode.FULL) -> AccountRead:
    return AccountRead(sys_config(tmp_path), FakeAccountSource(), mode=mode, data=data)


# --- read_scopes ---------------------------------------------------------------------------


def test_a_full_read_covers_every_scope_it_reported_even_those_without_accounts(
    tmp_path: Path, store: Store
) -> None:
    data = SourceData(accounts=(account("a1", scope="111"),), scopes=("111", "222"))
    assert read_scopes(full_read(tmp_path, data), store) == {("sys", "111"), ("sys", "222")}


def test_a_full_read_of_nothing_from_a_source_with_nothing_stored_covers_its_unnamed_scope(
    tmp_path: Path, store: Store
) -> None:
    assert read_scopes(full_read(tmp_path, SourceData()), store) == {("sys", "")}


def test_a_targeted_or_failed_read_covers_no_scope(tmp_path: Path, store: Store) -> None:
    # A targeted read saw only what may be one person's: it can never resolve anybody else's
    # finding. (The pipeline calls read_scopes on full reads only; this is the function's guard.)
    data = SourceData(accounts=(account("a1", scope="111"),), scopes=("111",))
    assert read_scopes(full_read(tmp_path, data, ReadMode.TARGETED), store) == set()
    assert read_scopes(full_read(tmp_path, None), store) == set()


def test_a_leavers_account_gone_from_its_scope_resolves_the_finding_there(
    tmp_path: Path, store: Store
) -> None:
    # The scope "prod" is now empty: the source no longer reports it, but it is stored, so this
    # full read covered it and bob's finding there is resolved.
    hr = FakeHRSource(people=[person("E1", "alice@example.com"), leaver("E2", T0, email="bob@example.com")])
    alice = account("alice", emails=("alice@example.com",), scope="dev")
    bob = account("bob", emails=("bob@example.com",), scope="prod")
    sys = FakeAccountSource(accounts=[alice, bob], credentials=[credential(bob, "K-bob")])
    p = make(tmp_path, store, hr, sys)
    first = p.run(NOW)
    assert [(f.account.account_id, f.status) for f in first.findings] == [("bob", FindingStatus.OPEN)]

    sys.accounts, sys.credentials = [alice], []
    p.run(NOW + timedelta(hours=1))
    assert [f.account.account_id for f in store.list_findings([FindingStatus.RESOLVED.value])] == ["bob"]
    assert store.list_findings([FindingStatus.OPEN.value]) == []


# --- the detail pass -----------------------------------------------------------------------


@dataclass
class RefiningSource(FakeAccountSource):
    """The detail pass returns the asked accounts refined (their last login) and their keys."""

    def detail(self, accounts: Sequence[Account]) -> SourceData:
        keys = super().detail(accounts)
        refined = tuple(replace(a, last_login_at=LOGIN) for a in accounts)
        return replace(keys, accounts=refined)


def test_the_detail_pass_replaces_a_bulk_account_with_its_refined_copy(tmp_path: Path, store: Store) -> None:
    hr = FakeHRSource(people=[person("E1", "alice@example.com"), leaver("E2", T0, email="bob@example.com")])
    alice = account("alice", emails=("alice@example.com",), scope="dev")
    bob = account("bob", emails=("bob@example.com",), scope="prod")
    sys = RefiningSource(
        accounts=[alice, bob],
        credentials=[credential(bob, "K-bob")],
        detail_credentials={"bob": [credential(bob, "K-bob")]},
    )
    make(tmp_path, store, hr, sys).run(NOW)

    assert sys.detail_requests == [["bob"]]
    # The run stores what the detail pass saw of bob, not the bulk pass's copy.
    stored = {a.account_id: a.last_login_at for a in store.load_snapshot("sys").accounts}
    assert stored == {"alice": None, "bob": LOGIN}


# --- enrichment warnings -------------------------------------------------------------------


def test_a_failed_enrichment_warns_naming_the_scope_and_the_last_known_values_kept(
    tmp_path: Path, store: Store
) -> None:
    hr = FakeHRSource(people=[person("E1", "alice@example.com"), leaver("E2", T0, email="bob@example.com")])
    bob = account("bob", emails=("bob@example.com",), scope="prod")
    sys = EnrichedSource(
        accounts=[bob], credentials=[credential(bob, "K-bob")], last_use={"K-bob": T0 + timedelta(days=3)}
    )
    p = make(tmp_path, store, hr, sys)
    p.run(NOW)

    sys.enrichment_error = "last-use evidence unavailable: HTTP 500"
    second = p.run(NOW + timedelta(hours=1))
    (src,) = [s for s in second.sources if s.name == "sys"]
    assert src.status is SourceStatus.DEGRADED
    assert src.warnings == (
        "prod: last-use evidence unavailable: HTTP 500; nothing here is resolved or downgraded for lack of it",
        "kept the last known last login/last use of 1 account(s) and credential(s) from an earlier read (stale)",
    )
