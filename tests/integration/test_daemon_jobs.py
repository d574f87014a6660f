"""The daemon's job runner, targeted reconcile, scheduled reconciles, rehire, locks and
notifications, in process with injected sources, engine and clock (no network)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from offboard_audit.config import Config, NotificationConfig
from offboard_audit.daemon import FULL_LOCK, Daemon, DaemonOptions, DbLocks
from offboard_audit.notify import Notifier
from offboard_audit.protocols import SourceContext
from offboard_audit.records import FindingStatus, Person, RunResult, SourceData
from offboard_audit.revocation import ActionOutcome, ApplyReport
from offboard_audit.storage.store import Store
from offboard_audit.storage.webhook_store import (
    HREvent,
    HREventType,
    Job,
    JobKind,
    JobState,
    WebhookStore,
    new_job_id,
)
from tests.support.configs import HR_CSV_HEADER, config_with
from tests.support.fakes import FakeAccountSource, account, credential

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class TargetedFake(FakeAccountSource):
    """A fake source that can read one person; records who it was asked about."""

    asked: list[str] = field(default_factory=list)

    def collect_for(self, person: Person) -> SourceData:
        self.asked.append(person.employee_id)
        mine = [a for a in self.accounts if person.email in a.emails]
        ids = {a.account_id for a in mine}
        return SourceData(tuple(mine), tuple(c for c in self.credentials if c.account_id in ids))


@dataclass
class FakeEngine:
    auto_calls: list[tuple[RunResult, str | None]] = field(default_factory=list)
    undo_calls: list[str] = field(default_factory=list)
    status: str = "applied"

    def auto_revoke(self, result: RunResult, now: datetime, person: str | None = None) -> ApplyReport:
        self.auto_calls.append((result, person))
        if result.circuit_breaker:
            return ApplyReport(refused=f"HR circuit breaker tripped: {result.circuit_breaker}")
        outcomes = tuple(
            ActionOutcome(
                f"a-{i}",
                f.finding_id,
                f.source,
                "disable",
                self.status,
                "boom" if self.status == "failed" else None,
            )
            for i, f in enumerate(result.findings)
        )
        return ApplyReport(None, outcomes)

    def undo_person(self, employee_id: str, now: datetime, apply: bool = True) -> ApplyReport:
        self.undo_calls.append(employee_id)
        return ApplyReport(None, (ActionOutcome("u-1", None, "tgt", "disable", "restored"),))


def people_csv(extra_staff: int = 20, carol_terminated: bool = False) -> str:
    rows = ["E1,alice@example.com,Alice,active,,", "E2,bob@example.com,Bob,active,,"]
    rows.append(
        "E3,carol@example.com,Carol,terminated,2026-04-01T00:00:00+00:00,"
        if carol_terminated
        else "E3,carol@example.com,Carol,active,,"
    )
    rows += [f"S{i},s{i}@example.com,S{i},active,," for i in range(extra_staff)]
    return HR_CSV_HEADER + "\n".join(rows) + "\n"


@dataclass
class World:
    config: Config
    store: Store
    tgt: TargetedFake
    full: FakeAccountSource
    engine: FakeEngine
    clock: Clock
    daemon: Daemon

    def other_daemon(self, node: str) -> Daemon:
        return Daemon(
            self.config,
            Store(self.store.engine),
            SourceContext(self.config.base_dir),
            DaemonOptions(node=node, serve_http=False, webhook=False),
            clock=self.clock,
            engine_factory=lambda: self.engine,
            instances={"tgt": self.tgt, "full": self.full},
        )


def world(
    tmp_path: Path,
    staff: int = 20,
    policy: dict[str, Any] | None = None,
    carol_terminated: bool = False,
    notifier: Notifier | None = None,
    db_url: str | None = None,
) -> World:
    (tmp_path / "hr.csv").write_text(people_csv(staff, carol_terminated))
    config = config_with(
        tmp_path, account_sources=["tgt", "full"], policy={"auto_revoke": True, **(policy or {})}
    )
    if db_url:
        config = replace(config, database_url=db_url)
    store = Store.open(config.database_url)
    accts = {n: account(n, source="tgt", emails=(f"{n}@example.com",)) for n in ("alice", "bob", "carol")}
    tgt = TargetedFake(
        name="tgt",
        accounts=list(accts.values()),
        credentials=[credential(a, f"K-{n}") for n, a in accts.items()],
    )
    fulls = {
        n: account(f"{n}2", source="full", emails=(f"{n}@example.com",)) for n in ("alice", "bob", "carol")
    }
    full = FakeAccountSource(
        name="full",
        accounts=list(fulls.values()),
        credentials=[credential(a, f"F-{n}") for n, a in fulls.items()],
    )
    engine = FakeEngine()
    clock = Clock(NOW)
    d = Daemon(
        config,
        store,
        SourceContext(tmp_path),
        DaemonOptions(node="n1", serve_http=False, webhook=False),
        clock=clock,
        engine_factory=lambda: engine,
        instances={"tgt": tgt, "full": full},
        notifier=notifier,
    )
    return World(config, store, tgt, full, engine, clock, d)


def accept(
    w: World,
    employee_id: str,
    event: HREventType = HREventType.TERMINATED,
    effective_at: datetime | None = None,
    email: str | None = None,
) -> Job:
    eff = effective_at or w.clock.now - timedelta(minutes=1)
    future = event is HREventType.TERMINATED and eff > w.clock.now
    kind = {
        HREventType.TERMINATED: JobKind.TERMINATE,
        HREventType.REHIRED: JobKind.REHIRE,
        HREventType.UPDATED: JobKind.UPDATE,
    }[event]
    job = Job(
        new_job_id(),
        kind,
        employee_id,
        JobState.SCHEDULED if future else JobState.QUEUED,
        w.clock.now,
        event_id=f"evt-{new_job_id()}",
        due_at=eff if future else None,
        node="" if future else "n1",
    )
    ev = HREvent(job.event_id or "", event, employee_id, email, eff, w.clock.now, w.clock.now, "{}")
    assert WebhookStore(w.store).accept(ev, job)
    return job


def wait_job(store: Store, job_id: str, timeout: float = 10.0) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = WebhookStore(store).job(job_id)
        if job is not None and job.state.final:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish")


def test_termination_job_reads_only_that_person_where_possible_and_falls_back_to_full_collect(
    tmp_path: Path,
) -> None:
    w = world(tmp_path)
    assert w.daemon.run_full("audit") is not None  # baseline HR read; everybody active
    assert (w.tgt.collect_calls, w.full.collect_calls) == (1, 1)

    job = accept(w, "E2", email="bob@example.com")
    done = w.daemon.run_job(job.job_id)
    assert done is not None and done.state is JobState.DONE, done

    assert w.tgt.asked == ["E2"] and w.tgt.collect_calls == 1  # targeted: no full read of tgt
    assert w.full.collect_calls == 2 and w.full.detail_requests[-1] == ["bob2"]  # fallback + detail
    result, person = w.engine.auto_calls[-1]
    assert person == "E2" and result.circuit_breaker is None
    assert sorted((f.source, f.account.account_id) for f in result.findings) == [
        ("full", "bob2"),
        ("tgt", "bob"),
    ]
    assert all(f.person is not None and f.person.employee_id == "E2" for f in result.findings)
    assert {(a.status, a.source) for a in done.actions} == {("applied", "tgt"), ("applied", "full")}
    stored = {p.employee_id: p for p in w.store.load_people()}
    assert stored["E2"].terminated_at == NOW - timedelta(minutes=1) and stored["E1"].status.value == "active"
    assert w.daemon.run_job(job.job_id) is None  # a finished job is never run again


def test_targeted_run_leaves_other_peoples_findings_open(tmp_path: Path) -> None:
    w = world(tmp_path, carol_terminated=True, policy={"auto_revoke": False})
    w.daemon.run_full("audit")
    carol_open = [f.finding_id for f in w.store.list_findings(["open"], person="E3")]
    assert len(carol_open) == 2
    done = w.daemon.run_job(accept(w, "E2").job_id)
    assert done is not None and done.state is JobState.DONE
    assert "audit only" in done.detail and w.engine.auto_calls == []  # auto_revoke off: audit only
    still = {f.finding_id: f.status for f in w.store.list_findings(person="E3")}
    assert all(still[i] is FindingStatus.OPEN for i in carol_open)
    assert len(w.store.list_findings(["open"], person="E2")) == 2


def test_small_workforce_trips_the_breaker_on_the_webhook_path_and_nothing_is_revoked(tmp_path: Path) -> None:
    w = world(tmp_path, staff=0)  # 3 people: one termination is 33% > 5%
    w.daemon.run_full("audit")
    done = w.daemon.run_job(accept(w, "E2").job_id)
    assert done is not None and done.state is JobState.FAILED
    result, _ = w.engine.auto_calls[-1]
    assert result.circuit_breaker is not None and "max_new_terminations" in result.circuit_breaker
    assert done.actions == () and "circuit breaker" in (done.error or "")


def test_no_stored_hr_read_means_no_revocation_from_a_webhook(tmp_path: Path) -> None:
    w = world(tmp_path)
    done = w.daemon.run_job(accept(w, "E2", email="bob@example.com").job_id)
    assert done is not None and done.state is JobState.FAILED
    result, _ = w.engine.auto_calls[-1]
    assert result.circuit_breaker is not None and "no HR read" in result.circuit_breaker


def test_webhook_terminations_since_the_last_hr_read_add_up_towards_the_breaker(tmp_path: Path) -> None:
    w = world(tmp_path, staff=17)  # 20 people: the second webhook termination is 10% > 5%
    w.daemon.run_full("audit")
    first = w.daemon.run_job(accept(w, "E1").job_id)
    second = w.daemon.run_job(accept(w, "E2").job_id)
    assert first is not None and first.state is JobState.DONE
    assert second is not None and second.state is JobState.FAILED
    assert "HR webhook" in (w.engine.auto_calls[-1][0].circuit_breaker or "")


def test_future_termination_runs_once_when_due_even_with_two_replicas(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.daemon.run_full("audit")
    due = NOW + timedelta(hours=2)
    job = accept(w, "E2", effective_at=due)
    other = w.other_daemon("n2")
    assert w.daemon.process_due() == 0 and other.process_due() == 0
    w.clock.now = due + timedelta(seconds=1)
    claimed = w.daemon.process_due() + other.process_due()
    assert claimed == 1
    finished = wait_job(w.store, job.job_id)
    assert finished.state is JobState.DONE
    assert [p for _, p in w.engine.auto_calls if p is not None] == ["E2"]  # the audit itself had None
    assert w.daemon.process_due() + other.process_due() == 0


def test_rehire_cancels_pending_termination_and_undoes_when_configured(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.daemon.config = replace(w.config, webhook=replace(w.config.webhook, undo_on_rehire=True))
    w.daemon.run_full("audit")
    pending = accept(w, "E2", effective_at=NOW + timedelta(days=1))
    done = w.daemon.run_job(accept(w, "E2", HREventType.REHIRED).job_id)
    assert done is not None and done.state is JobState.DONE, done
    assert WebhookStore(w.store).job(pending.job_id).state is JobState.CANCELLED  # type: ignore[union-attr]
    assert [s.state for s in WebhookStore(w.store).scheduled("E2")] == ["cancelled"]
    assert w.engine.undo_calls == ["E2"] and [a.status for a in done.actions] == ["restored"]
    w.clock.now = NOW + timedelta(days=2)
    assert w.daemon.process_due() == 0
    assert [p for _, p in w.engine.auto_calls if p is not None] == []


def test_rehire_without_undo_on_rehire_changes_no_credential(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.daemon.run_full("audit")
    done = w.daemon.run_job(accept(w, "E2", HREventType.REHIRED).job_id)
    assert done is not None and done.state is JobState.DONE and w.engine.undo_calls == []


def test_full_reconcile_is_skipped_while_another_process_holds_the_reconcile_lock(tmp_path: Path) -> None:
    w = world(tmp_path)
    other = DbLocks(w.store.engine, "someone-else")
    held = other.try_acquire(FULL_LOCK)
    assert held is not None
    try:
        assert w.daemon.run_full("audit") is None
        assert w.store.latest_run("audit") is None and w.tgt.collect_calls == 0
    finally:
        held.release()
    assert w.daemon.run_full("audit") is not None


def test_sqlite_lease_lock_is_exclusive_until_released_or_expired(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'locks.db'}")
    clock = Clock(NOW)
    a, b = DbLocks(store.engine, "a", clock), DbLocks(store.engine, "b", clock)
    held = a.try_acquire("x", ttl=30, auto_renew=False)
    assert held is not None and b.try_acquire("x", ttl=30, auto_renew=False) is None
    assert held.renew()
    clock.now = NOW + timedelta(seconds=31)  # a stopped renewing: the lease expired
    taken = b.try_acquire("x", ttl=30, auto_renew=False)
    assert taken is not None and not held.renew()
    taken.release()
    assert a.try_acquire("x", ttl=30, auto_renew=False) is not None


@pytest.mark.postgres
def test_postgres_advisory_lock_is_exclusive_and_freed_by_release(postgres_url: str) -> None:
    store = Store.open(postgres_url)
    a, b = DbLocks(store.engine, "a"), DbLocks(store.engine, "b")
    held = a.try_acquire("x")
    assert held is not None and b.try_acquire("x") is None and held.renew()
    held.release()
    again = b.try_acquire("x")
    assert again is not None
    again.release()


# --- notifications ---------------------------------------------------------------------------


class Hook:
    """An httpx transport standing in for a chat webhook: answers from a script."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        import json

        self.bodies.append(json.loads(request.content))
        status = self.statuses.pop(0) if self.statuses else 200
        return httpx.Response(status)


def notifier_with(hook: Hook, retries: int = 3) -> Notifier:
    cfg = NotificationConfig(urls=("https://hooks.example.test/T0/secret-token",), retries=retries)
    return Notifier(cfg, {}, client=httpx.Client(transport=httpx.MockTransport(hook)), sleep=lambda _s: None)


def test_new_critical_or_high_findings_are_posted_with_a_slack_text_field_after_retries(
    tmp_path: Path,
) -> None:
    hook = Hook([500, 503])
    w = world(tmp_path, carol_terminated=True, policy={"auto_revoke": False}, notifier=notifier_with(hook))
    w.daemon.run_full("audit")
    w.daemon.notifier.close(timeout=5)
    assert len(hook.bodies) == 3  # two failures, then delivered
    body = hook.bodies[-1]
    assert body["kind"] == "new_findings" and "2 new critical/high finding(s)" in body["text"]
    assert w.daemon.notifier.sent == 1 and w.daemon.notifier.failures == 0


def test_failed_actions_and_a_tripped_breaker_are_notified_and_a_dead_hook_never_fails_the_run(
    tmp_path: Path,
) -> None:
    hook = Hook([500] * 100)
    w = world(tmp_path, staff=0, notifier=notifier_with(hook, retries=1))
    assert w.daemon.run_full("audit") is not None
    job = w.daemon.run_job(accept(w, "E2").job_id)
    assert job is not None and job.state is JobState.FAILED
    w.daemon.notifier.close(timeout=5)
    kinds = {b["kind"] for b in hook.bodies}
    assert "circuit_breaker" in kinds
    assert w.daemon.notifier.failures >= 1 and w.daemon.notifier.sent == 0


def test_failed_actions_are_notified(tmp_path: Path) -> None:
    hook = Hook([])
    w = world(tmp_path, notifier=notifier_with(hook))
    w.engine.status = "failed"
    w.daemon.run_full("audit")
    job = w.daemon.run_job(accept(w, "E2").job_id)
    assert job is not None and job.state is JobState.FAILED
    w.daemon.notifier.close(timeout=5)
    failed = [b for b in hook.bodies if b["kind"] == "failed_actions"]
    assert len(failed) == 1 and "2 action(s) failed" in failed[0]["text"] and "boom" in failed[0]["text"]


# --- recovery of jobs left by a daemon that died -------------------------------------------------


def orphan(w: World, employee_id: str, state: JobState, owner: str, lease_expires_at: datetime) -> Job:
    """A job as a daemon that was SIGKILLed leaves it: owned by ``owner``, never finished."""
    job = Job(
        new_job_id(),
        JobKind.TERMINATE,
        employee_id,
        state,
        w.clock.now - timedelta(minutes=1),
        event_id=f"evt-{new_job_id()}",
        started_at=w.clock.now - timedelta(minutes=1) if state is JobState.RUNNING else None,
        node=owner,
        lease_expires_at=lease_expires_at,
        attempts=1 if state is JobState.RUNNING else 0,
    )
    eff = w.clock.now - timedelta(minutes=2)
    ev = HREvent(job.event_id or "", HREventType.TERMINATED, employee_id, None, eff, eff, eff, "{}")
    assert WebhookStore(w.store).accept(ev, job)
    return job


def recover_together(*daemons: Daemon) -> list[list[str]]:
    """Every daemon runs its recovery scan at the same moment (threads released by a barrier)."""
    import threading

    barrier = threading.Barrier(len(daemons))
    claims: list[list[str]] = [[] for _ in daemons]

    def scan(i: int) -> None:
        barrier.wait()
        claims[i] = daemons[i].recover_jobs()

    threads = [threading.Thread(target=scan, args=(i,)) for i in range(len(daemons))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return claims


def test_running_job_of_a_dead_daemon_is_taken_over_by_exactly_one_of_two_replicas_and_completed_once(
    tmp_path: Path,
) -> None:
    takeover_race(world(tmp_path))


@pytest.mark.postgres
def test_on_postgres_a_dead_daemons_running_job_is_taken_over_by_exactly_one_replica(
    tmp_path: Path, postgres_url: str
) -> None:
    takeover_race(world(tmp_path, db_url=postgres_url))


def takeover_race(w: World) -> None:
    w.daemon.run_full("audit")
    audit_calls = len(w.engine.auto_calls)
    job = orphan(w, "E2", JobState.RUNNING, "dead-host:4242:abc123", NOW - timedelta(seconds=1))
    other = w.other_daemon("n2")

    claims = recover_together(w.daemon, other)

    assert sorted(len(c) for c in claims) == [0, 1] and [job.job_id] in claims
    winner = "n1" if claims[0] else "n2"
    finished = wait_job(w.store, job.job_id)
    assert finished.state is JobState.DONE, finished
    assert [p for _, p in w.engine.auto_calls[audit_calls:]] == ["E2"]  # the reconcile ran once
    assert finished.node == winner and finished.attempts == 2 and finished.lease_expires_at is None
    (t,) = finished.takeovers
    assert (t.previous_owner, t.new_owner, t.from_state) == (
        "dead-host:4242:abc123",
        winner,
        JobState.RUNNING,
    )
    assert t.lease_expired_at == NOW - timedelta(seconds=1)
    assert finished.detail.startswith("taken over from dead-host:4242:abc123")
    assert w.daemon.recover_jobs() == [] and other.recover_jobs() == []  # a finished job stays finished


def test_queued_job_of_a_dead_daemon_is_taken_over_and_started_once(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.daemon.run_full("audit")
    job = orphan(w, "E2", JobState.QUEUED, "dead-host:4242:abc123", NOW - timedelta(seconds=1))
    other = w.other_daemon("n2")

    claims = recover_together(w.daemon, other)

    assert sorted(len(c) for c in claims) == [0, 1]
    finished = wait_job(w.store, job.job_id)
    assert finished.state is JobState.DONE and finished.attempts == 1
    assert [t.from_state for t in finished.takeovers] == [JobState.QUEUED]
    assert [p for _, p in w.engine.auto_calls if p is not None] == ["E2"]


def test_job_with_a_live_lease_is_not_stolen_until_the_lease_expires(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.daemon.run_full("audit")
    lease = NOW + timedelta(seconds=30)
    job = orphan(w, "E2", JobState.RUNNING, "alive-host:1:abcdef", lease)
    other = w.other_daemon("n2")

    assert recover_together(w.daemon, other) == [[], []]
    held = WebhookStore(w.store).job(job.job_id)
    assert held is not None and held.state is JobState.RUNNING and held.node == "alive-host:1:abcdef"
    assert held.takeovers == () and [p for _, p in w.engine.auto_calls if p is not None] == []

    # The owner's heartbeat keeps it: renewing moves the lease on, so it is still not stolen.
    assert WebhookStore(w.store).renew_leases(
        "alive-host:1:abcdef", [job.job_id], lease + timedelta(seconds=30)
    )
    w.clock.now = lease + timedelta(seconds=1)
    assert w.daemon.recover_jobs() == [] and other.recover_jobs() == []

    # The heartbeat stops (the owner died): once the lease has run out the job is taken over.
    w.clock.now = lease + timedelta(seconds=31)
    assert w.daemon.recover_jobs() == [job.job_id]
    assert wait_job(w.store, job.job_id).state is JobState.DONE


def test_a_daemon_whose_job_was_taken_over_cannot_record_its_late_outcome(tmp_path: Path) -> None:
    w = world(tmp_path)
    events = WebhookStore(w.store)
    job = orphan(w, "E2", JobState.RUNNING, "slow-host:1:abcdef", NOW - timedelta(seconds=1))
    (claimed,) = events.claim_orphaned(NOW, "n2", NOW + timedelta(seconds=30))
    assert claimed.node == "n2"
    assert not events.finish_job(job.job_id, NOW, JobState.FAILED, error="late", owner="slow-host:1:abcdef")
    assert events.finish_job(job.job_id, NOW, JobState.DONE, owner="n2")
    assert events.job(job.job_id).state is JobState.DONE  # type: ignore[union-attr]


def test_webhook_job_reports_its_owner_lease_and_takeovers(tmp_path: Path) -> None:
    from offboard_audit.webhook import job_json

    w = world(tmp_path)
    events = WebhookStore(w.store)
    job = orphan(w, "E2", JobState.RUNNING, "dead-host:4242:abc123", NOW - timedelta(seconds=1))
    events.claim_orphaned(NOW, "n2", NOW + timedelta(seconds=30))
    body = job_json(events.job(job.job_id))  # type: ignore[arg-type]
    assert body["state"] == "running" and body["owner"] == "n2"
    assert body["lease_expires_at"] == (NOW + timedelta(seconds=30)).isoformat()
    assert body["takeovers"] == [
        {
            "at": NOW.isoformat(),
            "previous_owner": "dead-host:4242:abc123",
            "new_owner": "n2",
            "from_state": "running",
            "lease_expired_at": (NOW - timedelta(seconds=1)).isoformat(),
        }
    ]
