"""Mutation holes in keeping the last known evidence (offboard_audit/engine/collect.py:
``keep_last_known`` and its helpers ``_keep_newer``, ``_newer``, ``_stale_login``, ``_stale_use``).

When a scope's optional enrichment (the read of last login / last use) fails, the stored last
known values are put back where this read has none or an older one, marked stale, with their
precision; the newer of the two values wins; a value only this read has (or an equal one) stays
fresh; nothing crosses a recreated account or leaves the failed scopes; and the source counts
exactly how many values it carried.

Each test saves a snapshot to SQLite (what an earlier run stored), builds the read this run made
and calls ``keep_last_known`` as the pipeline does after the detail pass.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from offboard_audit.config import SourceConfig
from offboard_audit.core.records import Account, Credential, EnrichmentFailure, SourceData
from offboard_audit.engine.collect import AccountRead, keep_last_known
from offboard_audit.storage.store import Store
from tests.support.configs import config_with
from tests.support.fakes import T0, FakeAccountSource, account, credential

LOGIN = T0 + timedelta(days=2)  # the last login an earlier run stored
USE = T0 + timedelta(days=3)  # the last use an earlier run stored
COARSE = timedelta(days=14)  # e.g. Active Directory's lastLogonTimestamp lag


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'audit.db'}")


def sys_config(tmp_path: Path) -> SourceConfig:
    (cfg,) = [s for s in config_with(tmp_path).sources if s.name == "sys"]
    return cfg


def stored_bob(scope: str = "prod", uid: str = "uid-bob") -> tuple[Account, Credential, Credential]:
    bob = replace(account("bob", scope=scope, uid=uid, last_login_at=LOGIN), last_login_precision=COARSE)
    k1 = replace(credential(bob, "K1", last_used_at=USE), last_used_precision=COARSE)
    k2 = credential(bob, "K2", last_used_at=USE - timedelta(days=1))
    return bob, k1, k2


def save(store: Store, accounts: list[Account], credentials: list[Credential]) -> None:
    store.save_snapshot("sys", accounts, credentials, run_id="earlier")


def unenriched_read(
    tmp_path: Path,
    accounts: list[Account],
    credentials: list[Credential],
    scopes: tuple[str, ...] = ("prod",),
) -> AccountRead:
    """This run's read of ``sys``: listed fine, but the enrichment of ``scopes`` failed."""
    return AccountRead(
        sys_config(tmp_path),
        FakeAccountSource(),
        data=SourceData(accounts=tuple(accounts), credentials=tuple(credentials)),
        accounts=list(accounts),
        credentials=list(credentials),
        enrichment_failures=[EnrichmentFailure(s, "last-use evidence unavailable: HTTP 500") for s in scopes],
    )


def without_evidence(a: Account) -> Account:
    return replace(a, last_login_at=None, last_login_precision=None)


def unused(c: Credential) -> Credential:
    return replace(c, last_used_at=None, last_used_precision=None)


def by_id(read: AccountRead) -> tuple[dict[str, Account], dict[str, Credential]]:
    return {a.account_id: a for a in read.accounts}, {c.credential_id: c for c in read.credentials}


def test_a_failed_enrichment_puts_back_the_stored_last_login_and_uses_with_their_precision_marked_stale(
    tmp_path: Path, store: Store
) -> None:
    bob, k1, k2 = stored_bob()
    save(store, [bob], [k1, k2])
    # This run: bob is now disabled (the read says so), and no evidence came back.
    fresh_bob = replace(without_evidence(bob), enabled=False, display_name="Bob (left)")
    read = unenriched_read(tmp_path, [fresh_bob], [unused(k1), unused(k2)])

    keep_last_known([read], store)

    accounts, creds = by_id(read)
    got = accounts["bob"]
    assert got.last_login_at == LOGIN
    assert got.last_login_precision == COARSE
    assert got.last_login_stale is True
    # Only the evidence is carried: what the account is comes from this read.
    assert got.enabled is False and got.display_name == "Bob (left)"
    assert creds["K1"].last_used_at == USE
    assert creds["K1"].last_used_precision == COARSE
    assert creds["K1"].last_used_stale is True
    assert creds["K2"].last_used_at == USE - timedelta(days=1)
    assert creds["K2"].last_used_stale is True
    # One login and two uses carried: each counted.
    assert read.kept_last_known == 3


def test_the_kept_count_counts_every_carried_value_not_just_whether_any_was(
    tmp_path: Path, store: Store
) -> None:
    bob, k1, k2 = stored_bob()
    save(store, [bob], [k1, k2])
    # The fresh login is the same as stored (not carried); both uses are carried.
    read = unenriched_read(tmp_path, [bob], [unused(k1), unused(k2)])

    keep_last_known([read], store)

    assert read.kept_last_known == 2


def test_a_fresh_value_newer_than_the_stored_one_wins_and_is_not_marked_stale(
    tmp_path: Path, store: Store
) -> None:
    bob, k1, _ = stored_bob()
    save(store, [bob], [k1])
    later = LOGIN + timedelta(days=5)
    fresh_bob = replace(bob, last_login_at=later, last_login_precision=None)
    fresh_k1 = replace(k1, last_used_at=USE + timedelta(days=5), last_used_precision=None)
    read = unenriched_read(tmp_path, [fresh_bob], [fresh_k1])

    keep_last_known([read], store)

    accounts, creds = by_id(read)
    assert accounts["bob"].last_login_at == later
    assert accounts["bob"].last_login_precision is None
    assert accounts["bob"].last_login_stale is False
    assert creds["K1"].last_used_at == USE + timedelta(days=5)
    assert creds["K1"].last_used_stale is False
    assert read.kept_last_known == 0


def test_a_fresh_value_equal_to_the_stored_one_is_fresh_not_stale(tmp_path: Path, store: Store) -> None:
    bob, k1, _ = stored_bob()
    save(store, [bob], [k1])
    # The bulk listing itself read the same values again (the enrichment failed on something else).
    read = unenriched_read(tmp_path, [bob], [k1])

    keep_last_known([read], store)

    accounts, creds = by_id(read)
    assert accounts["bob"].last_login_at == LOGIN and accounts["bob"].last_login_stale is False
    assert creds["K1"].last_used_at == USE and creds["K1"].last_used_stale is False
    assert read.kept_last_known == 0


def test_nothing_is_carried_across_a_recreated_account(tmp_path: Path, store: Store) -> None:
    bob, k1, _ = stored_bob(uid="uid-old-bob")
    save(store, [bob], [k1])
    # Same name, new immutable identity: a different account; the old one's use is not its own.
    new_bob = without_evidence(replace(bob, uid="uid-new-bob"))
    read = unenriched_read(tmp_path, [new_bob], [unused(k1)])

    keep_last_known([read], store)

    accounts, creds = by_id(read)
    assert accounts["bob"].last_login_at is None and accounts["bob"].last_login_stale is False
    assert creds["K1"].last_used_at is None and creds["K1"].last_used_stale is False
    assert read.kept_last_known == 0


def test_a_new_account_with_nothing_stored_is_left_as_read(tmp_path: Path, store: Store) -> None:
    bob, k1, _ = stored_bob()
    save(store, [bob], [k1])
    carol = account("carol", scope="prod", uid="uid-carol")
    read = unenriched_read(
        tmp_path, [without_evidence(bob), carol], [unused(k1), credential(carol, "K-carol")]
    )

    keep_last_known([read], store)

    accounts, creds = by_id(read)
    assert accounts["carol"].last_login_at is None and accounts["carol"].last_login_stale is False
    assert creds["K-carol"].last_used_at is None and creds["K-carol"].last_used_stale is False
    assert accounts["bob"].last_login_at == LOGIN and accounts["bob"].last_login_stale is True
    assert read.kept_last_known == 2


def test_a_scope_whose_enrichment_succeeded_keeps_what_this_read_says(tmp_path: Path, store: Store) -> None:
    bob, k1, _ = stored_bob(scope="prod")
    dave = account("dave", scope="dev", uid="uid-dave", last_login_at=LOGIN)
    k_dave = credential(dave, "K-dave", last_used_at=USE)
    save(store, [bob, dave], [k1, k_dave])
    # dev was enriched fine this run and says: no login, no use on record. That is fresh truth.
    read = unenriched_read(
        tmp_path,
        [without_evidence(bob), without_evidence(dave)],
        [unused(k1), unused(k_dave)],
        scopes=("prod",),
    )

    keep_last_known([read], store)

    accounts, creds = by_id(read)
    assert accounts["dave"].last_login_at is None and accounts["dave"].last_login_stale is False
    assert creds["K-dave"].last_used_at is None and creds["K-dave"].last_used_stale is False
    assert accounts["bob"].last_login_stale is True and creds["K1"].last_used_stale is True
    assert read.kept_last_known == 2


def test_only_the_failed_scopes_stored_evidence_is_used_not_another_scopes(
    tmp_path: Path, store: Store
) -> None:
    """The stored evidence is loaded for the unenriched scopes only: an account id stored under
    another scope (it has since moved) lends the failed scope nothing."""
    bob, k1, _ = stored_bob(scope="dev")
    save(store, [bob], [k1])
    moved = without_evidence(replace(bob, scope="prod"))
    read = unenriched_read(tmp_path, [moved], [replace(unused(k1), scope="prod")], scopes=("prod",))

    keep_last_known([read], store)

    accounts, creds = by_id(read)
    assert accounts["bob"].last_login_at is None and accounts["bob"].last_login_stale is False
    assert creds["K1"].last_used_at is None and creds["K1"].last_used_stale is False
    assert read.kept_last_known == 0
