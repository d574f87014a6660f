"""Snapshot writes are diffs: only changed, new and gone rows are touched, and only the source's own
rows outside the scopes kept from an earlier read. On SQLite and on a real PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from offboard_audit.core.records import Account, Credential
from offboard_audit.storage.store import Store
from tests.support.fakes import T0, account, credential


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store.open(f"sqlite:///{tmp_path / 'audit.db'}")
    return Store.open(request.getfixturevalue("postgres_url"))


def keys(
    accounts: tuple[Account, ...], creds: tuple[Credential, ...]
) -> tuple[set[str], set[tuple[str, str]]]:
    return {a.account_id for a in accounts}, {(c.account_id, c.credential_id) for c in creds}


def test_one_changed_key_among_siblings_is_rewritten_alone(store: Store) -> None:
    x = account("x")
    k1, k2, k3 = (credential(x, f"K{i}") for i in (1, 2, 3))
    assert store.save_snapshot("sys", [x], [k1, k2, k3], "r1") == 4
    k2_off = replace(k2, active=False, last_used_at=T0)

    written = store.save_snapshot("sys", [x], [k1, k2_off, k3], "r2")

    assert written == 2  # the old K2 row out, the new one in
    stored = store.load_snapshot("sys")
    assert sorted(stored.credentials, key=lambda c: c.credential_id) == [k1, k2_off, k3]
    assert stored.accounts == (x,)


def test_a_gone_credential_is_deleted_without_its_siblings_or_another_sources_same_keys(store: Store) -> None:
    x, other_x = account("x"), account("x", source="other")
    mine = [credential(x, f"K{i}") for i in (1, 2, 3)]
    theirs = [credential(other_x, f"K{i}") for i in (1, 2, 3)]
    store.save_snapshot("sys", [x], mine, "r1")
    store.save_snapshot("other", [other_x], theirs, "r1")

    assert store.save_snapshot("sys", [x], mine[:2], "r2") == 1

    assert keys(*_parts(store, "sys")) == ({"x"}, {("x", "K1"), ("x", "K2")})
    assert keys(*_parts(store, "other")) == ({"x"}, {("x", "K1"), ("x", "K2"), ("x", "K3")})


def test_rows_of_a_kept_scope_stay_although_the_fresh_read_lacks_them(store: Store) -> None:
    here, there = account("here", scope="111"), account("there", scope="222")
    store.save_snapshot("sys", [here, there], [credential(here, "K"), credential(there, "K")], "r1")

    # Scope 222 failed this run: its rows are the last known ones and must survive the write.
    assert store.save_snapshot("sys", [], [], "r2", keep_scopes=["222"]) == 2

    assert keys(*_parts(store, "sys")) == ({"there"}, {("there", "K")})


def test_more_gone_rows_than_one_batch_are_all_deleted_and_new_ones_added(store: Store) -> None:
    people = [account(f"u{i:04d}") for i in range(1203)]
    creds = [credential(a, "K") for a in people]
    store.save_snapshot("sys", people, creds, "r1")
    newcomer = account("new")

    written = store.save_snapshot(
        "sys", [*people[:3], newcomer], [*creds[:3], credential(newcomer, "K")], "r2"
    )

    assert written == 2 * 1200 + 2  # 1,200 accounts and their keys gone; one account and key new
    accounts, found = keys(*_parts(store, "sys"))
    assert accounts == {"u0000", "u0001", "u0002", "new"}
    assert found == {("u0000", "K"), ("u0001", "K"), ("u0002", "K"), ("new", "K")}


def _parts(store: Store, source: str) -> tuple[tuple[Account, ...], tuple[Credential, ...]]:
    snap = store.load_snapshot(source)
    return snap.accounts, snap.credentials
