"""The HR circuit breaker survives a dead or blocked run (issue 17, item 1).

A run's findings and its verdict (status, circuit breaker) become visible together, in one
transaction: an audit killed, or blocked by a held SQLite write lock, after it computed its
findings leaves nothing of itself behind, so ``revoke --apply`` keeps reading the last finished
run with the findings it stored. A run whose process is gone is marked ``abandoned`` (at once
when that process ran on this host, else once its lease runs out), is never the run ``revoke``
reads, and can no longer finish.

Faults come from outside the audit process: the pipeline's test hooks SIGKILL it or pause it at
a named point (``OFFBOARD_AUDIT_TEST_KILL_AT`` / ``OFFBOARD_AUDIT_TEST_PAUSE_AT``), and a second
process holds the SQLite write lock. Synchronisation is by pipes only.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Account, FindingStatus, SourceData
from offboard_audit.core.runs import RunStatus
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.engine.run_record import KILL_AT_ENV, PAUSE_AT_ENV, RunAbandoned
from offboard_audit.storage.store import Store
from offboard_audit.storage.tables import FINDINGS, RUNS, SOURCE_RUNS
from tests.support.configs import config_with
from tests.support.fake_connector import FakeWorld, fake_env
from tests.support.fakes import T0, FakeAccountSource, FakeHRSource, account, credential, leaver, person
from tests.support.processes import spawn

TIMEOUT = 180  # a blocked commit waits out SQLite's busy timeout twice
PEOPLE = 10
LEAVERS = 4  # 40% of the workforce newly terminated: the breaker (above 5% and above 3 people) trips


# --- a world with a mass termination ---------------------------------------------------------


LEAVER_IDS = {f"E{i}" for i in range(1, LEAVERS + 1)}


def _world(root: Path, db_url: str) -> FakeWorld:
    world = FakeWorld(root, db_url)
    world.write_hr([(f"E{i}", f"p{i}@example.com", f"P{i}", "active", "") for i in range(1, PEOPLE + 1)])
    world.write_state(
        [
            {"id": f"u{i}", "username": f"u{i}", "enabled": True, "attributes": [["employeeNumber", f"E{i}"]]}
            for i in range(1, PEOPLE + 1)
        ],
        [{"account_id": f"u{i}", "id": f"AK{i}", "kind": "access_key"} for i in range(1, PEOPLE + 1)],
    )
    world.write_config()
    return world


def _mass_termination(world: FakeWorld) -> None:
    world.write_hr(
        [
            (f"E{i}", f"p{i}@example.com", f"P{i}", "terminated" if i <= LEAVERS else "active", "2026-01-10")
            for i in range(1, PEOPLE + 1)
        ]
    )


def _cli(world: FakeWorld, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return world.run(*args, env=env, timeout=TIMEOUT)


@pytest.fixture
def opened() -> Iterator[list[Store]]:
    stores: list[Store] = []
    yield stores
    for s in stores:
        s.engine.dispose()


def _store(world: FakeWorld, opened: list[Store]) -> Store:
    store = Store.open(world.db_url)
    opened.append(store)
    return store


def _runs(store: Store) -> list[tuple[str, str]]:
    with store.begin() as conn:
        rows = conn.execute(select(RUNS.c.run_id, RUNS.c.status).order_by(RUNS.c.started_at, RUNS.c.run_id))
        return [(run_id, status) for run_id, status in rows]


def _lease_until(store: Store, run_id: str) -> datetime:
    with store.begin() as conn:
        value = conn.execute(select(RUNS.c.lease_until).where(RUNS.c.run_id == run_id)).scalar_one()
    assert isinstance(value, datetime)
    return value


def _nothing_of_the_run_is_acted_on(world: FakeWorld, store: Store, dead_run: str) -> None:
    """``revoke --apply`` changes nothing, and no stored finding names a leaver or the dead run."""
    revoke = _cli(world, "revoke", "--apply")
    assert revoke.returncode == 0, revoke.stderr
    assert world.changes() == []
    open_findings = store.list_findings([FindingStatus.OPEN.value])
    assert not [f for f in open_findings if f.person is not None and f.person.employee_id in LEAVER_IDS]
    with store.begin() as conn:
        assert (
            conn.execute(select(FINDINGS.c.finding_id).where(FINDINGS.c.run_id == dead_run)).first() is None
        )
        assert conn.execute(select(SOURCE_RUNS.c.id).where(SOURCE_RUNS.c.run_id == dead_run)).first() is None


def _abandoned_as_its_process_is_gone(store: Store, run_id: str, baseline: str) -> None:
    # Its lease has not run out yet, but its owner was a process on this host that is gone.
    assert _lease_until(store, run_id) > datetime.now(UTC)
    assert store.abandon_dead_runs() == [run_id]
    info = store.run_info(run_id)
    assert info is not None and info.status is RunStatus.ABANDONED
    latest = store.latest_run()
    assert latest is not None and latest.run_id == baseline  # an abandoned run speaks for nothing


def _killed_after_findings_are_stored(world: FakeWorld, store: Store) -> None:
    assert _cli(world, "audit").returncode == 0  # everybody active: the baseline
    ((baseline, _),) = _runs(store)
    _mass_termination(world)

    killed = _cli(world, "audit", env={KILL_AT_ENV: "findings-stored"})

    assert killed.returncode == -9, killed.stderr  # SIGKILLed right after storing its findings
    ((_, _), (dead, status)) = _runs(store)
    assert status == "running"
    _nothing_of_the_run_is_acted_on(world, store, dead)
    _abandoned_as_its_process_is_gone(store, dead, baseline)

    # The next audit reads the same HR file: the breaker trips and revocation refuses.
    again = _cli(world, "audit")
    assert "circuit breaker" in again.stderr + again.stdout
    refused = _cli(world, "revoke", "--apply")
    assert refused.returncode == 1 and "circuit breaker" in refused.stderr
    assert world.changes() == []


def test_an_audit_killed_right_after_storing_its_findings_lets_revoke_act_on_none_of_them_on_sqlite(
    tmp_path: Path, opened: list[Store]
) -> None:
    world = _world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    _killed_after_findings_are_stored(world, _store(world, opened))


@pytest.mark.postgres
def test_an_audit_killed_right_after_storing_its_findings_lets_revoke_act_on_none_of_them_on_postgresql(
    tmp_path: Path, postgres_url: str, opened: list[Store]
) -> None:
    world = _world(tmp_path, postgres_url)
    _killed_after_findings_are_stored(world, _store(world, opened))


_HOLD_WRITE_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
sys.stderr.write("LOCKED\\n"); sys.stderr.flush()
sys.stdin.readline()
conn.rollback()
"""


@pytest.mark.slow
def test_an_audit_blocked_by_another_processs_write_lock_at_its_finish_stores_nothing_revoke_can_act_on(
    tmp_path: Path, opened: list[Store]
) -> None:
    db = tmp_path / "db.sqlite"
    # A 3 s busy timeout (the URL's own setting; 30 s by default) keeps the wait short.
    world = _world(tmp_path, f"sqlite:///{db}?timeout=3")
    store = _store(world, opened)
    assert _cli(world, "audit").returncode == 0
    ((baseline, _),) = _runs(store)
    _mass_termination(world)

    audit = spawn(
        [sys.executable, "-m", "offboard_audit", "--config", str(world.config_path), "audit"],
        world.root,
        {**fake_env(), PAUSE_AT_ENV: "before-commit"},
    )
    audit.wait_for("PAUSED before-commit")  # every source read, nothing of the run stored
    locker = spawn([sys.executable, "-c", _HOLD_WRITE_LOCK, str(db)], world.root, fake_env())
    locker.wait_for("LOCKED")
    audit.release()
    # The lock outlives the busy timeout of the run's commit and of its attempt to record the
    # failure: the audit gives up with its run still "running".
    code, _, err = audit.finish()
    locker.release()
    assert locker.finish()[0] == 0

    assert code == 4 and "locked" in err, err  # the internal-error code: a locked database is not a finding
    ((_, _), (blocked, status)) = _runs(store)
    assert status == "running"
    _nothing_of_the_run_is_acted_on(world, store, blocked)
    _abandoned_as_its_process_is_gone(store, blocked, baseline)


# --- in process: an abandoned run cannot finish; the lease is renewed; the next run sweeps ------


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store.open(f"sqlite:///{tmp_path / 'audit.db'}")
    return Store.open(request.getfixturevalue("postgres_url"))


@dataclass
class HookedSource(FakeAccountSource):
    """Runs ``during_collect`` while the run is reading it (on a collecting thread, while HR is
    read), ``during_detail`` in its detail pass (after HR was read and merged, before the commit)."""

    during_collect: Any = None
    during_detail: Any = None

    def collect(self) -> SourceData:
        if self.during_collect is not None:
            self.during_collect()
        return super().collect()

    def detail(self, accounts: Sequence[Account]) -> SourceData:
        if self.during_detail is not None:
            self.during_detail()
        return super().detail(accounts)


def _org() -> tuple[FakeHRSource, HookedSource]:
    hr = FakeHRSource(people=[person("E1"), leaver("E2", T0)])
    bob = account("bob", attributes=(("employeeNumber", "E2"),))
    return hr, HookedSource(accounts=[bob], credentials=[credential(bob, "K-bob")])


def _pipeline(tmp_path: Path, store: Store, hr: FakeHRSource, sys_: HookedSource) -> Pipeline:
    cfg = config_with(tmp_path, account_sources=[sys_.name])
    return Pipeline(cfg, store, SourceContext(base_dir=tmp_path), instances={"hr": hr, sys_.name: sys_})


def test_a_run_marked_abandoned_while_it_ran_cannot_finish_and_stores_nothing(
    tmp_path: Path, store: Store
) -> None:
    hr, src = _org()
    p = _pipeline(tmp_path, store, hr, src)
    # Another process takes the run for dead (its lease "ran out") while it is reading.
    src.during_collect = lambda: store.abandon_dead_runs(datetime.now(UTC) + timedelta(days=1))

    with pytest.raises(RunAbandoned):
        p.run(T0 + timedelta(days=1))

    ((_, status),) = _runs(store)
    assert status == "abandoned"
    assert (
        store.list_findings() == []
        and store.load_people() == []
        and store.load_snapshot("sys").accounts == ()
    )
    assert store.latest_run() is None


class CountingRenewals(Store):
    """Signals every lease renewal of a running run."""

    renewals: threading.Semaphore

    def renew_run(self, run_id: str) -> bool:
        renewed = super().renew_run(run_id)
        self.renewals.release()
        return renewed


def test_a_running_run_renews_its_lease_so_nobody_takes_it_for_dead(tmp_path: Path) -> None:
    store = CountingRenewals.open(f"sqlite:///{tmp_path / 'audit.db'}")
    store.renewals = threading.Semaphore(0)
    store.run_lease = timedelta(seconds=0.4)  # renewed every 0.1 s
    hr, src = _org()
    seen: list[datetime] = []

    def while_reading() -> None:
        ((run_id, _),) = _runs(store)
        seen.append(_lease_until(store, run_id))
        for _ in range(2):
            assert store.renewals.acquire(timeout=TIMEOUT)
        seen.append(_lease_until(store, run_id))
        # A sweep at the first lease's end finds the run alive.
        assert store.abandon_dead_runs(seen[0] + timedelta(microseconds=1)) == []

    src.during_collect = while_reading
    result = _pipeline(tmp_path, store, hr, src).run(T0 + timedelta(days=1))

    assert seen[1] > seen[0]
    info = store.run_info(result.run_id)
    assert info is not None and info.status is RunStatus.DONE


def _run_of_another_host(store: Store, run_id: str) -> datetime:
    """A running run owned by a process on another host (nothing here can tell if it is alive)."""
    store.start_run(run_id, T0, "audit")
    with store.begin() as conn:
        conn.execute(RUNS.update().where(RUNS.c.run_id == run_id).values(owner="run@elsewhere:4242:0a1b2c3d"))
    return _lease_until(store, run_id)


def test_a_run_of_another_host_is_abandoned_once_its_lease_ran_out_and_not_before(store: Store) -> None:
    lease = _run_of_another_host(store, "remote-run")

    assert store.abandon_dead_runs(lease - timedelta(seconds=1)) == []
    info = store.run_info("remote-run")
    assert info is not None and info.status is RunStatus.RUNNING
    assert store.abandon_dead_runs(lease + timedelta(seconds=1)) == ["remote-run"]
    info = store.run_info("remote-run")
    assert info is not None and info.status is RunStatus.ABANDONED


def test_the_next_run_marks_a_run_whose_lease_ran_out_abandoned(tmp_path: Path, store: Store) -> None:
    store.run_lease = timedelta(microseconds=1)
    _run_of_another_host(store, "dead-run")  # nobody renews or finishes it
    store.run_lease = timedelta(minutes=2)
    hr, src = _org()

    result = _pipeline(tmp_path, store, hr, src).run(T0 + timedelta(days=1))

    dead = store.run_info("dead-run")
    assert dead is not None and dead.status is RunStatus.ABANDONED
    latest = store.latest_run()
    assert latest is not None and latest.run_id == result.run_id


def test_revoke_reads_past_an_abandoned_run_to_the_breaker_of_the_last_finished_one(
    tmp_path: Path, opened: list[Store]
) -> None:
    world = _world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    store = _store(world, opened)
    assert _cli(world, "audit").returncode == 0
    _mass_termination(world)
    tripped = _cli(world, "audit")  # finishes with the breaker tripped: its findings are stored
    assert "circuit breaker" in tripped.stderr + tripped.stdout
    # A later run whose process stopped (a daemon's SIGTERM, or a lease that ran out).
    store.start_run("later", datetime.now(UTC), "audit")
    assert store.mark_abandoned(["later"], datetime.now(UTC)) == ["later"]

    refused = _cli(world, "revoke", "--apply")

    assert refused.returncode == 1 and "circuit breaker" in refused.stderr
    assert world.changes() == []


_TARGETED_RUN = """
import os, sys
from datetime import UTC, datetime
from pathlib import Path
from offboard_audit.config import load_config
from offboard_audit.core.protocols import SourceContext
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.storage.store import Store
config = load_config(Path(sys.argv[1]), env=dict(os.environ))
store = Store.open(config.database_url)
ctx = SourceContext(base_dir=config.base_dir, env=dict(os.environ))
result = Pipeline(config, store, ctx).run_person(sys.argv[2], datetime.now(UTC)).run
print(result.circuit_breaker)
"""


def test_a_targeted_run_after_a_tripped_audit_holds_that_breaker_and_does_not_release_it_for_revoke(
    tmp_path: Path,
) -> None:
    world = _world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    assert _cli(world, "audit").returncode == 0
    _mass_termination(world)
    tripped = _cli(world, "audit")
    assert "circuit breaker" in tripped.stderr + tripped.stdout
    # A webhook reconcile of somebody still employed finishes after it: it has no breaker of its
    # own, and reports (and obeys) the one the unaccepted HR read tripped.
    targeted = subprocess.run(
        [sys.executable, "-c", _TARGETED_RUN, str(world.config_path), "E7"],
        cwd=world.root,
        env=fake_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert targeted.returncode == 0, targeted.stderr
    assert targeted.stdout.startswith("the HR circuit breaker holds since run "), targeted.stdout

    refused = _cli(world, "revoke", "--apply")

    assert refused.returncode == 1 and "circuit breaker" in refused.stderr
    assert world.changes() == []


def test_a_person_a_webhook_inserted_meanwhile_is_left_alone_without_aborting_the_runs_transaction(
    tmp_path: Path, store: Store
) -> None:
    from offboard_audit.core.stored import PersonState

    hr, src = _org()
    p = _pipeline(tmp_path, store, hr, src)
    first = p.run(T0 + timedelta(days=1))
    hr.people = [*hr.people, person("E3"), person("E4")]

    def webhook_inserts_e3() -> None:  # between the run's HR read and its commit
        e3 = person("E3", name="from the webhook")
        assert store.save_person_state(PersonState(e3, None, T0, "webhook"), None, "job:1")

    src.during_detail = webhook_inserts_e3
    second = p.run(T0 + timedelta(days=2))

    # The run committed (PostgreSQL would abort the whole transaction on a failed INSERT).
    info = store.run_info(second.run_id)
    assert info is not None and info.status.completed and info.run_id != first.run_id
    people = {x.employee_id: x for x in store.load_people()}
    assert people["E3"].name == "from the webhook" and "E4" in people
    (hr_run,) = [s for s in second.sources if s.name == "hr"]
    assert any("E3" in w and "webhook" in w for w in hr_run.warnings)
