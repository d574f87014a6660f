"""An HR webhook event that lands while a full reconcile is under way (the full run read HR and
loaded the stored people, then spends minutes reading the account sources) must not have its
findings closed by that full run: the run judged the person on the stored record it had loaded
before the event, so it cannot prove their credentials clean.

Before, the full run closed the findings the webhook's targeted run had just stored (``resolved``):
the leaver showed no open finding, and nothing was planned for them, until the next full run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import pytest

from offboard_audit.core.jobs import HREventType, Job, JobState
from offboard_audit.core.people import PersonChange
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Account, FindingStatus, PersonStatus, SourceData
from offboard_audit.core.runs import RunResult
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.storage.store import Store
from tests.support.configs import config_with
from tests.support.daemon_world import NOW as WORLD_NOW
from tests.support.daemon_world import accept, world
from tests.support.fakes import T0, FakeAccountSource, FakeHRSource, account, credential, leaver, person

NOW = T0 + timedelta(days=10)
EVENT_AT = NOW + timedelta(minutes=30)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store.open(f"sqlite:///{tmp_path / 'audit.db'}")
    return Store.open(request.getfixturevalue("postgres_url"))


@dataclass
class SlowSource(FakeAccountSource):
    """A source whose detail pass (after the full run has read HR and loaded the stored people)
    is where an HR webhook job for bob runs to completion: ``during_read`` is called once."""

    during_read: list[object] = field(default_factory=list)
    webhook_results: list[RunResult] = field(default_factory=list)

    def detail(self, accounts: Sequence[Account]) -> SourceData:
        if self.during_read:
            job = self.during_read.pop()
            assert callable(job)
            job()
        return super().detail(accounts)


def test_a_full_run_does_not_close_the_findings_of_a_termination_that_arrived_while_it_read(
    tmp_path: Path, store: Store
) -> None:
    # bob is active in the HR export (it lags the webhook); carol left earlier, so the full run
    # has a detail pass, the moment at which the webhook job runs.
    hr = FakeHRSource(
        people=[person("E1", "alice@example.com"), person("E2", "bob@example.com"), leaver("E3", T0)]
    )
    bob = account("bob", emails=("bob@example.com",))
    carol = account("carol", emails=("e3@example.com",))
    alice = account("alice", emails=("alice@example.com",))
    sys = SlowSource(
        accounts=[alice, bob, carol],
        credentials=[credential(alice, "K-alice"), credential(bob, "K-bob"), credential(carol, "K-carol")],
    )
    cfg = config_with(tmp_path)
    pipeline = Pipeline(cfg, store, SourceContext(base_dir=tmp_path), instances={"hr": hr, "sys": sys})
    pipeline.run(NOW)  # the baseline: only carol's key is a finding
    assert {f.account.account_id for f in store.list_findings([FindingStatus.OPEN.value])} == {"carol"}

    change = PersonChange(
        "E2",
        PersonStatus.TERMINATED,
        EVENT_AT,
        "bob@example.com",
        effective_at=EVENT_AT,
        origin="webhook e-1",
    )
    webhook = Pipeline(cfg, store, SourceContext(base_dir=tmp_path), instances={"hr": hr, "sys": sys})

    def webhook_job() -> None:
        sys.webhook_results.append(webhook.run_person("E2", EVENT_AT + timedelta(seconds=1), change).run)

    sys.during_read.append(webhook_job)
    full = pipeline.run(EVENT_AT + timedelta(minutes=1))

    # The webhook job ran inside the full run and stored bob's finding.
    (targeted,) = sys.webhook_results
    assert [(f.account.account_id, f.status) for f in targeted.findings] == [("bob", FindingStatus.OPEN)]
    assert full.finished_at is not None
    # bob is stored terminated (the event), and his finding stays open: the full run, which saw him
    # active, proves nothing about him.
    (bob_now,) = [p for p in store.load_people() if p.employee_id == "E2"]
    assert bob_now.status is PersonStatus.TERMINATED
    bobs = store.list_findings(person="E2")
    assert [(f.credential.credential_id if f.credential else None, f.status) for f in bobs] == [
        ("K-bob", FindingStatus.OPEN)
    ]
    assert store.list_findings([FindingStatus.RESOLVED.value]) == []


def test_a_full_run_does_not_revoke_again_a_person_rehired_while_it_read(tmp_path: Path) -> None:
    # carol left; the first full run revokes her keys in both systems.
    w = world(tmp_path, real_engine=True, carol_terminated=True)
    w.daemon.config = replace(w.config, webhook=replace(w.config.webhook, undo_on_rehire=True))
    assert w.daemon.run_full("audit") is not None
    assert sorted(w.changes("apply")) == ["F-carol", "K-carol"]

    # She is rehired while the next full run reads the systems (after it loaded the stored people,
    # before it stores its findings; the HR export still lists her as terminated): the rehire job
    # marks her active and restores her keys.
    rehire = accept(w, "E3", HREventType.REHIRED)
    jobs: list[Job | None] = []
    read_detail = w.full.detail

    def detail_during_which_the_rehire_runs(accounts: Sequence[Account]) -> SourceData:
        if not jobs:
            jobs.append(w.daemon.run_job(rehire.job_id))
        return read_detail(accounts)

    w.full.detail = detail_during_which_the_rehire_runs  # type: ignore[method-assign]
    w.clock.now = WORLD_NOW + timedelta(minutes=15)
    assert w.daemon.run_full("audit") is not None

    (done,) = jobs
    assert done is not None and done.state is JobState.DONE, done
    assert sorted(w.changes("undo")) == ["F-carol", "K-carol"]
    (carol,) = [p for p in w.store.load_people() if p.employee_id == "E3"]
    assert carol.status is PersonStatus.ACTIVE
    # The full run judged her on the record it loaded before the rehire: it must not revoke her
    # restored keys again.
    assert sorted(w.changes("apply")) == ["F-carol", "K-carol"]
