"""Mutation holes in reading the account sources (offboard_audit/engine/collect.py), second batch:
the progress lines and warnings that name the source, the detail pass over several sources (one
with nothing to ask, or whose detail read fails, never stops the next), a targeted read getting no
detail pass, and the last known evidence kept for a scope whose optional enrichment failed.

The functions are driven directly, on a SQLite store, the way ``Pipeline._reconcile`` calls them.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest

from offboard_audit.config import SourceConfig
from offboard_audit.core.records import EnrichmentFailure, Link, ScopeFailure, SourceData
from offboard_audit.core.runs import SourceStatus
from offboard_audit.engine.collect import (
    AccountRead,
    ReadMode,
    collect,
    detail_pass,
    keep_last_known,
    settle,
    source_run,
)
from offboard_audit.storage.store import Store
from tests.support.configs import config_with
from tests.support.fakes import T0, FakeAccountSource, account, credential, leaver

NOW = T0 + timedelta(days=10)
LOGIN = T0 + timedelta(days=1)  # bob's last login, as stored by an earlier read
USED = T0 + timedelta(days=3)  # bob's key's last use, as stored by an earlier read
LOGGER = "offboard_audit.engine.collect"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'audit.db'}")


def configs(tmp_path: Path, *names: str) -> dict[str, SourceConfig]:
    return {s.name: s for s in config_with(tmp_path, account_sources=list(names)).sources if s.name in names}


def read_of(cfg: SourceConfig, sys: FakeAccountSource, store: Store) -> AccountRead:
    """A full read of ``sys``, settled against the store (as the pipeline does)."""
    read = collect(AccountRead(cfg, sys), None, lambda _line: None)
    settle(read, store)
    return read


def bob_leaver_links(*reads: AccountRead) -> list[Link]:
    """Every account of ``reads`` linked to a leaver, so the detail pass asks about all of them."""
    bob = leaver("E2", T0, email="bob@example.com")
    return [Link(a, (bob,), "email") for r in reads for a in r.accounts]


# --- collect -------------------------------------------------------------------------------


def test_collect_reports_a_progress_line_naming_the_source_and_its_system(tmp_path: Path) -> None:
    lines: list[str] = []
    cfg = configs(tmp_path, "sys")["sys"]
    read = collect(AccountRead(cfg, FakeAccountSource(accounts=[account("a1")])), None, lines.append)
    assert read.error is None and read.data is not None
    assert lines == ["collecting sys (fake)"]


def test_a_failed_source_is_logged_as_a_warning_naming_the_source_and_the_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = configs(tmp_path, "sys")["sys"]
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        read = collect(AccountRead(cfg, FakeAccountSource(fail="API unreachable")), None, lambda _l: None)
    assert read.error == "API unreachable" and read.data is None
    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert messages == ["source sys failed: API unreachable"]


# --- detail_pass -----------------------------------------------------------------------------


def test_a_source_with_nothing_to_ask_does_not_stop_the_detail_pass_of_the_next_source(
    tmp_path: Path, store: Store
) -> None:
    cfg = configs(tmp_path, "quiet", "sys")
    quiet_src = FakeAccountSource(name="quiet", accounts=[account("carol", source="quiet")])
    bob = account("bob", emails=("bob@example.com",))
    sys_src = FakeAccountSource(
        accounts=[bob],
        credentials=[credential(bob, "K-bulk")],
        detail_credentials={"bob": [credential(bob, "K-detail")]},
    )
    quiet, sys = read_of(cfg["quiet"], quiet_src, store), read_of(cfg["sys"], sys_src, store)
    lines: list[str] = []
    # Only bob (in "sys", the second source) belongs to a leaver; "quiet" has nobody to ask about.
    detail_pass([quiet, sys], bob_leaver_links(sys), NOW, store, lines.append)

    assert quiet_src.detail_requests == []
    assert sys_src.detail_requests == [["bob"]]
    assert [c.credential_id for c in sys.credentials] == ["K-detail"]
    assert lines == ["detail pass on 1 accounts in sys"]


def test_a_failed_detail_read_marks_its_scopes_stale_and_the_next_source_still_gets_its_detail_pass(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = configs(tmp_path, "broken", "sys")
    old = account("dave", source="broken", scope="prod", last_login_at=LOGIN)
    store.save_snapshot("broken", [old], [credential(old, "K-old")], "run-0")
    # The bulk read of "broken" now shows dave without his key; only the detail pass could tell.
    broken_src = FakeAccountSource(
        name="broken", accounts=[account("dave", source="broken", scope="prod")], detail_fail="HTTP 503"
    )
    bob = account("bob", emails=("bob@example.com",))
    sys_src = FakeAccountSource(accounts=[bob], detail_credentials={"bob": [credential(bob, "K-detail")]})
    broken, sys = read_of(cfg["broken"], broken_src, store), read_of(cfg["sys"], sys_src, store)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        detail_pass([broken, sys], bob_leaver_links(broken, sys), NOW, store, lambda _l: None)

    messages = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert messages == ["source broken: detail pass failed: RuntimeError: HTTP 503"]
    # The failed scope carries the stored (last known) data, stale: never a clean, complete read.
    assert broken.stale_scopes == {"prod"} and broken.stale == {("broken", "prod")}
    assert [(a.account_id, a.last_login_at) for a in broken.accounts] == [("dave", LOGIN)]
    assert [c.credential_id for c in broken.credentials] == ["K-old"]
    run = source_run(broken)
    assert run.status is SourceStatus.FAILED and run.stale
    assert run.failed_scopes == (ScopeFailure("prod", "detail pass failed: RuntimeError: HTTP 503"),)
    # The failure of one source's detail read does not skip the next source's.
    assert sys_src.detail_requests == [["bob"]]
    assert [c.credential_id for c in sys.credentials] == ["K-detail"] and not sys.stale


def test_a_targeted_read_gets_no_detail_pass(tmp_path: Path, store: Store) -> None:
    # collect_for(person) already read everything that may be the person's, in full.
    cfg = configs(tmp_path, "sys")["sys"]
    bob = account("bob", emails=("bob@example.com",))
    sys_src = FakeAccountSource(accounts=[bob], detail_credentials={"bob": [credential(bob, "K-detail")]})
    read = AccountRead(cfg, sys_src, mode=ReadMode.TARGETED, data=SourceData(accounts=(bob,)))
    settle(read, store)
    lines: list[str] = []
    detail_pass([read], bob_leaver_links(read), NOW, store, lines.append)
    assert sys_src.detail_requests == []
    assert read.credentials == [] and lines == []


# --- keep_last_known -------------------------------------------------------------------------


def test_a_scope_whose_enrichment_failed_keeps_the_stored_last_login_and_last_use_marked_stale(
    tmp_path: Path, store: Store
) -> None:
    cfg = configs(tmp_path, "sys")["sys"]
    bob = account("bob", scope="prod", last_login_at=LOGIN)
    carol = account("carol", scope="dev", last_login_at=LOGIN)
    store.save_snapshot(
        "sys",
        [bob, carol],
        [credential(bob, "K-bob", last_used_at=USED), credential(carol, "K-carol", last_used_at=USED)],
        "run-0",
    )
    # This read lists both accounts and keys without their evidence; only "prod"'s enrichment
    # failed. In "dev" the enrichment worked: no last login or use there is the truth.
    fresh_bob, fresh_carol = account("bob", scope="prod"), account("carol", scope="dev")
    data = SourceData(
        accounts=(fresh_bob, fresh_carol),
        credentials=(credential(fresh_bob, "K-bob"), credential(fresh_carol, "K-carol")),
        enrichment_failures=(EnrichmentFailure("prod", "last-use evidence unavailable"),),
        scopes=("prod", "dev"),
    )
    read = AccountRead(cfg, FakeAccountSource(), data=data)
    settle(read, store)
    assert read.unenriched_scopes == {"prod"}

    keep_last_known([read], store)

    accounts = {a.account_id: (a.last_login_at, a.last_login_stale) for a in read.accounts}
    creds = {c.credential_id: (c.last_used_at, c.last_used_stale) for c in read.credentials}
    assert accounts == {"bob": (LOGIN, True), "carol": (None, False)}
    assert creds == {"K-bob": (USED, True), "K-carol": (None, False)}
    assert read.kept_last_known == 2
    assert ("kept_last_known", 2) in source_run(read).counts
