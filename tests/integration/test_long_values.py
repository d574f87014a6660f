"""Values longer than anyone expects are stored as they are, on SQLite and on PostgreSQL.

HR names, directory DNs, display names and credential ids come from other systems; PostgreSQL
enforces column lengths that SQLite ignores. A 300-character name or a 700-character DN must
not fail the whole audit (exit 4) on one database and pass on the other.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Rule
from offboard_audit.core.runs import SourceStatus
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.storage.store import Store
from tests.support.configs import config_with
from tests.support.fakes import T0, FakeAccountSource, FakeHRSource, account, credential, leaver

LONG_NAME = "Bob " + "Maximilian-" * 30  # ~334 characters
LONG_DN = "uid=bob," + ",".join(f"ou=unit{i:03d}" for i in range(60)) + ",dc=example,dc=org"  # ~700
LONG_KEY = "ssh-ed25519:" + "A" * 600


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store.open(f"sqlite:///{tmp_path / 'audit.db'}")
    return Store.open(request.getfixturevalue("postgres_url"))


def test_long_names_dns_and_credential_ids_are_audited_on_every_database(tmp_path, store):
    hr = FakeHRSource(people=[leaver("E2", T0, email="bob@example.com", name=LONG_NAME)])
    bob = account(LONG_DN, username="bob", emails=("bob@example.com",), uid="entry-uuid-" + "b" * 500)
    sys = FakeAccountSource(accounts=[bob], credentials=[credential(bob, LONG_KEY)])
    cfg = config_with(tmp_path, account_sources=[sys.name])
    result = Pipeline(cfg, store, SourceContext(base_dir=tmp_path), instances={"hr": hr, "sys": sys}).run(
        T0 + timedelta(days=1)
    )
    assert {s.status for s in result.sources} == {SourceStatus.OK}
    (finding,) = store.list_findings(["open"])
    assert finding.rule is Rule.CREDENTIAL_AFTER_TERMINATION
    assert finding.account.account_id == LONG_DN and finding.credential is not None
    assert finding.credential.credential_id == LONG_KEY and finding.person is not None
    assert finding.person.name == LONG_NAME
    assert store.load_people()[0].name == LONG_NAME
