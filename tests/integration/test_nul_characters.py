"""Values with a NUL character are stored as they are, on SQLite and on PostgreSQL.

HR exports, directory attributes and credential details come from other systems and may carry a
NUL (JSON allows ``\\u0000``). PostgreSQL's text cannot hold one, and psycopg refused the whole
write: one such name failed every audit on PostgreSQL (exit 4, no findings for anyone) while
SQLite stored it. Stored values must also read back exactly, or the next run would see every such
account as changed (or as a different account).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from offboard_audit.core.chain_verify import verify_chain
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Rule
from offboard_audit.core.runs import SourceStatus
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.storage.actions import NewEvent, append_event, iter_events
from offboard_audit.storage.store import Store
from tests.support.configs import config_with
from tests.support.fakes import T0, FakeAccountSource, FakeHRSource, account, credential, leaver

# The escape character the PostgreSQL side uses is in the values too: it must survive as well.
NAME = "Bob\x00 Builder \ufffe0 \ufffee"
ACCOUNT_ID = "uid=bob\x00,dc=example,dc=org"
KEY_ID = "ssh-ed25519:AAAA\x00BBBB"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store.open(f"sqlite:///{tmp_path / 'audit.db'}")
    return Store.open(request.getfixturevalue("postgres_url"))


def test_names_ids_and_credentials_with_nul_are_audited_and_read_back_exactly(tmp_path, store):
    hr = FakeHRSource(people=[leaver("E2", T0, email="bob@example.com", name=NAME)])
    bob = account(ACCOUNT_ID, username="bob\x00", emails=("bob@example.com",), uid="uuid-\x00-b")
    sys = FakeAccountSource(accounts=[bob], credentials=[credential(bob, KEY_ID)])
    cfg = config_with(tmp_path, account_sources=[sys.name])
    instances = {"hr": hr, "sys": sys}
    first = Pipeline(cfg, store, SourceContext(base_dir=tmp_path), instances=instances).run(
        T0 + timedelta(days=1)
    )
    assert {s.status for s in first.sources} == {SourceStatus.OK}
    (finding,) = store.list_findings(["open"])
    assert finding.rule is Rule.CREDENTIAL_AFTER_TERMINATION
    assert finding.account.account_id == ACCOUNT_ID and finding.account.username == "bob\x00"
    assert finding.account.uid == "uuid-\x00-b"
    assert finding.credential is not None and finding.credential.credential_id == KEY_ID
    assert store.load_people()[0].name == NAME
    (stored,) = store.load_snapshot(sys.name).accounts
    assert stored.account_id == ACCOUNT_ID

    # The next run reads the same values: the same finding stays open, nothing is resolved.
    second = Pipeline(cfg, store, SourceContext(base_dir=tmp_path), instances=instances).run(
        T0 + timedelta(days=2)
    )
    assert {s.status for s in second.sources} == {SourceStatus.OK}
    assert [f.finding_id for f in store.list_findings(["open"])] == [finding.finding_id]
    assert store.list_findings(["resolved"]) == []


def test_audit_events_with_nul_verify(store):
    append_event(store, NewEvent("note", T0, "ops\x00admin", {"why": "a\x00b \ufffe0"}, run_id="r\x00"))
    (event,) = list(iter_events(store))
    assert event.actor == "ops\x00admin" and event.run_id == "r\x00"
    assert event.payload == {"why": "a\x00b \ufffe0"}
    assert verify_chain(iter_events(store)).ok
