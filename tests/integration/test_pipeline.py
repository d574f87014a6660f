"""The audit pipeline end to end with in-memory sources, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import AccountKind, FindingStatus, PersonStatus, Rule, ScopeFailure
from offboard_audit.core.runs import SourceStatus
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


def org():
    alice = person("E1", "alice@example.com")
    bob = leaver("E2", T0, email="bob@example.com")
    carol = leaver("E3", T0, email="carol@example.com")
    hr = FakeHRSource(people=[alice, bob, carol])
    a_alice = account("alice", emails=("alice@example.com",))
    a_bob = account("bob", emails=("bob@example.com",))
    a_carol = account("carol", attributes=(("employeeNumber", "E3"),))
    a_orphan = account("mallory")
    a_svc = account("svc", kind=AccountKind.SERVICE)
    sys = FakeAccountSource(
        accounts=[a_alice, a_bob, a_carol, a_orphan, a_svc],
        credentials=[
            credential(a_alice, "K-alice"),
            credential(a_bob, "bob/access_key_1", last_used_at=T0 + timedelta(days=2)),
            credential(a_carol, "K-carol", last_used_at=T0 - timedelta(days=5)),
            credential(a_svc, "K-svc"),
        ],
        # The detail pass knows the real key id of bob's key.
        detail_credentials={"bob": [credential(a_bob, "AKIABOB", last_used_at=T0 + timedelta(days=2))]},
    )
    return hr, sys


def pipeline(
    tmp_path: Path, store: Store, hr: FakeHRSource, *sources: FakeAccountSource, policy=None
) -> Pipeline:
    cfg = config_with(tmp_path, account_sources=[s.name for s in sources], policy=policy)
    return Pipeline(
        cfg, store, SourceContext(base_dir=tmp_path), instances={"hr": hr, **{s.name: s for s in sources}}
    )


def rules(result):
    return sorted(
        (f.rule.value, f.account.account_id, f.credential.credential_id if f.credential else None)
        for f in result.findings
    )


def test_full_run_finds_leavers_orphans_and_uses_detail_only_for_departed(tmp_path, store):
    hr, sys = org()
    result = pipeline(tmp_path, store, hr, sys).run(NOW)
    assert rules(result) == [
        ("credential-after-termination", "carol", "K-carol"),
        ("orphan-account", "mallory", None),
        ("used-after-termination", "bob", "AKIABOB"),
    ]
    # Detail was asked only for the departed people's accounts, never for alice or the orphan.
    assert sorted(sys.detail_requests[0]) == ["bob", "carol"]
    assert all(s.status is SourceStatus.OK for s in result.sources)
    stored = store.list_findings(["open"])
    assert {f.finding_id for f in stored} == {f.finding_id for f in result.findings}


def test_rerun_keeps_ids_and_first_seen_and_resolves_what_disappeared(tmp_path, store):
    hr, sys = org()
    p = pipeline(tmp_path, store, hr, sys)
    first = p.run(NOW)
    # Carol's key is deactivated by someone; the orphan account is deleted.
    sys.credentials = [
        replace(c, active=False) if c.credential_id == "K-carol" else c for c in sys.credentials
    ]
    sys.accounts = [a for a in sys.accounts if a.account_id != "mallory"]
    second = p.run(NOW + timedelta(hours=1))
    bob_first = next(f for f in first.findings if f.account.account_id == "bob")
    bob_second = next(f for f in second.findings if f.account.account_id == "bob")
    assert bob_first.finding_id == bob_second.finding_id
    assert bob_second.first_seen == bob_first.first_seen
    resolved = {f.account.account_id for f in store.list_findings(["resolved"])}
    assert resolved == {"carol", "mallory"}
    history = store.finding_history(
        next(f.finding_id for f in first.findings if f.account.account_id == "carol")
    )
    assert [(h[1], h[2]) for h in history] == [(None, "open"), ("open", "resolved")]


def test_failed_source_is_failed_keeps_stale_data_and_resolves_nothing(tmp_path, store):
    hr, sys = org()
    p = pipeline(tmp_path, store, hr, sys)
    p.run(NOW)
    sys.fail = "connection refused"
    result = p.run(NOW + timedelta(hours=1))
    (src,) = [s for s in result.sources if s.name == "sys"]
    assert src.status is SourceStatus.FAILED and "connection refused" in (src.error or "")
    assert src.stale
    # The previous findings are still reported (stale), never silently "clean".
    assert rules(result) == [
        ("credential-after-termination", "carol", "K-carol"),
        ("orphan-account", "mallory", None),
        ("used-after-termination", "bob", "AKIABOB"),
    ]
    assert all(f.stale for f in result.findings)
    assert store.list_findings(["resolved"]) == []
    assert result.any_source_failed


def test_first_run_of_a_failed_source_reports_failed_not_clean(tmp_path, store):
    hr, sys = org()
    sys.fail = "timed out"
    result = pipeline(tmp_path, store, hr, sys).run(NOW)
    assert result.findings == ()
    assert result.any_source_failed
    assert result.sources[-1].status is SourceStatus.FAILED


def test_one_failed_scope_keeps_its_old_data_while_others_refresh(tmp_path, store):
    hr = FakeHRSource(
        people=[leaver("E2", T0, email="bob@example.com"), leaver("E3", T0, email="carol@example.com")]
    )
    bob = account("bob", emails=("bob@example.com",), scope="111")
    carol = account("carol", emails=("carol@example.com",), scope="222")
    sys = FakeAccountSource(
        accounts=[bob, carol], credentials=[credential(bob, "KB"), credential(carol, "KC")]
    )
    p = pipeline(tmp_path, store, hr, sys)
    p.run(NOW)
    # Account 111 fails now; in account 222 carol's key is gone.
    sys.failed_scopes = [ScopeFailure("111", "AccessDenied")]
    sys.credentials = [credential(bob, "KB")]
    result = p.run(NOW + timedelta(hours=1))
    assert rules(result) == [("credential-after-termination", "bob", "KB")]
    (bob_finding,) = result.findings
    assert bob_finding.stale
    assert {f.account.account_id for f in store.list_findings(["resolved"])} == {"carol"}
    assert result.sources[-1].failed_scopes == (ScopeFailure("111", "AccessDenied"),)


def test_failed_hr_read_uses_the_last_good_people_and_trips_the_breaker(tmp_path, store):
    hr, sys = org()
    p = pipeline(tmp_path, store, hr, sys)
    p.run(NOW)
    hr.fail = "HR API 500"
    sys.accounts = [a for a in sys.accounts if a.account_id != "mallory"]
    result = p.run(NOW + timedelta(hours=1))
    assert result.sources[0].status is SourceStatus.FAILED
    assert result.circuit_breaker and "HR source failed" in result.circuit_breaker
    # Findings still computed from the stored people; nothing resolved without a good HR read.
    assert ("used-after-termination", "bob", "AKIABOB") in rules(result)
    assert store.list_findings(["resolved"]) == []


def test_breaker_trips_when_too_many_people_newly_terminated(tmp_path, store):
    people = [person(f"E{i}", f"u{i}@example.com") for i in range(100)]
    hr = FakeHRSource(people=list(people))
    sys = FakeAccountSource(accounts=[], credentials=[])
    p = pipeline(tmp_path, store, hr, sys, policy={"max_new_terminations": 0.05})
    assert p.run(NOW).circuit_breaker is None
    # 6% of the workforce "terminated" at once: looks like a broken feed.
    hr.people = [
        replace(x, status=PersonStatus.TERMINATED, terminated_at=NOW) if i < 6 else x
        for i, x in enumerate(people)
    ]
    reason = p.run(NOW + timedelta(hours=1)).circuit_breaker
    assert reason is not None and "6 of 100" in reason
    # The suspicious read does not become the baseline: the breaker holds on the next run too ...
    again = p.run(NOW + timedelta(hours=2)).circuit_breaker
    assert again is not None and "6 of 100" in again
    # ... until an operator accepts it: the breaker is released for that very run, and after
    # that the same read is the baseline and passes.
    assert p.run(NOW + timedelta(hours=3), accept_hr=True).circuit_breaker is None
    assert p.accepted_breaker is not None and "6 of 100" in p.accepted_breaker
    assert p.run(NOW + timedelta(hours=4)).circuit_breaker is None


def test_unchanged_rerun_writes_no_snapshot_rows(tmp_path, store):
    hr, sys = org()
    p = pipeline(tmp_path, store, hr, sys)
    p.run(NOW)
    assert store.save_snapshot("sys", [], [], "probe", keep_scopes=[""]) == 0
    written = store.save_snapshot(
        "sys",
        [a for a in sys.accounts],
        [c for c in sys.credentials if c.account_id != "bob"] + sys.detail_credentials["bob"],
        "again",
    )
    assert written == 0


def test_revoked_credentials_close_as_revoked_after_an_applied_action(tmp_path, store):
    from sqlalchemy import insert

    from offboard_audit.storage.tables import ACTIONS

    hr, sys = org()
    p = pipeline(tmp_path, store, hr, sys)
    first = p.run(NOW)
    carol = next(f for f in first.findings if f.account.account_id == "carol")
    with store.begin() as conn:
        conn.execute(
            insert(ACTIONS).values(
                action_id="a1",
                plan_id="p1",
                finding_id=carol.finding_id,
                source="sys",
                system="fake",
                scope="",
                account_id="carol",
                username="carol",
                credential_id="K-carol",
                credential_kind="access_key",
                detail="",
                action="deactivate",
                stage="disable",
                reversible=True,
                status="applied",
                actor="test",
                created_at=NOW,
                updated_at=NOW,
            )
        )
    sys.credentials = [
        replace(c, active=False) if c.credential_id == "K-carol" else c for c in sys.credentials
    ]
    p.run(NOW + timedelta(hours=1))
    assert [f.finding_id for f in store.list_findings(["revoked"])] == [carol.finding_id]


def test_times_survive_the_database_with_their_offsets(tmp_path, store):
    hr, sys = org()
    pipeline(tmp_path, store, hr, sys).run(NOW)
    (bob,) = [p for p in store.load_people() if p.employee_id == "E2"]
    assert bob.terminated_at == T0 and bob.terminated_at.utcoffset() == timedelta(0)
    (f,) = [f for f in store.list_findings(["open"]) if f.rule is Rule.USED_AFTER_TERMINATION]
    assert f.credential is not None and f.credential.last_used_at == T0 + timedelta(days=2)
    assert f.status is FindingStatus.OPEN
