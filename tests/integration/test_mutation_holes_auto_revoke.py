"""``RevocationEngine.auto_revoke`` (the daemon's pass after a run) in process, on SQLite, with the
fake JSON-file connector: the real pipeline and the real engine (issue 10, mutation survivors).

What no other test pinned down: the delete stage of credentials revoked in an earlier pass (a
run no longer lists their findings, so the pass reads them from the store), a pass about one
person deleting and reading only that person's, a credential seen active again after it was
revoked being revoked again, and the refusal naming the run whose HR circuit breaker tripped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

import pytest

from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Finding, FindingStatus
from offboard_audit.engine.revocation import RevocationEngine
from offboard_audit.storage.store import Store
from tests.support.revocation import NOW, Env

LATE = NOW + timedelta(days=8)  # past delete_after = 7d since the disable at NOW


class RecordingStore(Store):
    """The same database; remembers every finding ``list_findings`` hands out."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.engine)
        self.handed: list[Finding] = []

    def list_findings(
        self,
        statuses: Sequence[str] | None = None,
        person: str | None = None,
        finding_ids: Sequence[str] | None = None,
    ) -> list[Finding]:
        found = super().list_findings(statuses, person, finding_ids)
        self.handed.extend(found)
        return found


def revoked_a_week_ago(env: Env) -> None:
    """delete_after = 7d; everything revocable disabled at NOW; the audit after it sees them revoked."""
    env.reload({"delete_after": "7d"})
    first = env.engine().auto_revoke(env.audit(), NOW)
    assert first.refused is None
    assert {(o.credential_id, o.stage) for o in first.outcomes} >= {("AK1", "disable"), ("AK2", "disable")}
    env.audit(NOW + timedelta(hours=1))
    revoked = {f.credential.credential_id for f in env.store.list_findings(["revoked"]) if f.credential}
    assert {"AK1", "AK2"} <= revoked


def test_an_auto_pass_deletes_credentials_revoked_a_retention_ago_though_its_run_no_longer_lists_them(
    env: Env,
) -> None:
    revoked_a_week_ago(env)
    result = env.audit(LATE)
    assert not any(f.status is FindingStatus.REVOKED for f in result.findings)

    report = env.engine(LATE).auto_revoke(result, LATE)

    assert report.refused is None
    assert {(o.credential_id, o.action, o.status) for o in report.outcomes} == {
        ("AK1", "delete_key", "applied"),
        ("AK2", "delete_key", "applied"),
    }
    assert env.world.credential("AK1").get("exists") is False
    assert env.world.credential("AK2").get("exists") is False


def test_an_auto_pass_about_one_person_deletes_only_that_persons_revoked_credentials(env: Env) -> None:
    revoked_a_week_ago(env)
    result = env.audit(LATE)

    report = env.engine(LATE).auto_revoke(result, LATE, person="E2")

    assert report.refused is None
    assert {(o.credential_id, o.action, o.status) for o in report.outcomes} == {
        ("AK2", "delete_key", "applied")
    }
    assert env.world.credential("AK2").get("exists") is False
    assert env.world.credential("AK1").get("exists") is not False


@pytest.mark.parametrize("person", [None, "E2"], ids=["everybody", "one-person"])
def test_an_auto_pass_reads_from_the_store_only_the_revoked_findings_of_its_scope(
    env: Env, person: str | None
) -> None:
    # Its run brings the open findings; the store is asked only for what the run cannot list
    # (the revoked ones), and a pass about one person only for that person's.
    revoked_a_week_ago(env)
    result = env.audit(LATE)
    store = RecordingStore(env.store)
    engine = RevocationEngine(
        env.config, store, SourceContext(base_dir=env.config.base_dir), "test", clock=lambda: LATE
    )

    report = engine.auto_revoke(result, LATE, person=person)

    assert report.refused is None and report.outcomes
    assert store.handed, "the revoked findings were read from the store"
    assert {f.status for f in store.handed} == {FindingStatus.REVOKED}
    owners = {f.person.employee_id if f.person else None for f in store.handed}
    assert owners == ({"E1", "E2"} if person is None else {"E2"})


def test_an_auto_pass_revokes_again_a_credential_its_run_saw_active_after_the_revocation(env: Env) -> None:
    first = env.engine().auto_revoke(env.audit(), NOW)
    assert ("AK1", "applied") in {(o.credential_id, o.status) for o in first.outcomes}

    # Someone turns the key back on; the next run sees it active again.
    env.world.update(
        lambda st: next(c for c in st["credentials"] if c["id"] == "AK1").update({"active": True})
    )
    later = NOW + timedelta(hours=1)
    result = env.audit(later)
    assert any(
        f.credential is not None and f.credential.credential_id == "AK1" and f.status is FindingStatus.OPEN
        for f in result.findings
    )

    report = env.engine(later).auto_revoke(result, later)

    assert report.refused is None
    assert [(o.credential_id, o.action, o.status) for o in report.outcomes] == [
        ("AK1", "deactivate_key", "applied")
    ]
    assert report.plan is not None
    assert [a.note for a in report.plan.actions] == [
        f"revoked at {NOW.isoformat()} but seen active again since"
    ]
    assert env.world.credential("AK1")["active"] is False


def test_an_auto_pass_after_a_run_whose_hr_breaker_tripped_is_refused_naming_the_run(env: Env) -> None:
    result = replace(env.audit(), circuit_breaker="HR read returned nobody")

    report = env.engine().auto_revoke(result, NOW)

    assert report.refused == f"HR circuit breaker tripped in run {result.run_id}: HR read returned nobody"
    assert report.outcomes == () and env.world.changes() == []
