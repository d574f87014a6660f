"""The daemon's job runner, targeted reconcile, scheduled reconciles, rehire, locks and
notifications, in process with injected sources, engine and clock (no network)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from offboard_audit.config.sections import NotificationConfig
from offboard_audit.core.jobs import HREvent, HREventType, Job, JobKind, JobState
from offboard_audit.core.records import FindingStatus
from offboard_audit.daemon.notify import Notifier
from offboard_audit.daemon.service import Daemon
from offboard_audit.storage.locks import FULL_RECONCILE, Locks
from offboard_audit.storage.webhook_store import WebhookStore, new_job_id
from tests.support.daemon_world import NOW, World, accept, wait_job, world


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
    result, person = w.fake.auto_calls[-1]
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
    assert "audit only" in done.detail and w.fake.auto_calls == []  # auto_revoke off: audit only
    still = {f.finding_id: f.status for f in w.store.list_findings(person="E3")}
    assert all(still[i] is FindingStatus.OPEN for i in carol_open)
    assert len(w.store.list_findings(["open"], person="E2")) == 2


def test_one_webhook_termination_in_a_small_organisation_is_revoked(tmp_path: Path) -> None:
    # 3 people: one termination is 33%, above the 5% share, but not above min_breaker_count (3).
    w = world(tmp_path, staff=0, real_engine=True)
    w.daemon.run_full("audit")
    done = w.daemon.run_job(accept(w, "E2").job_id)
    assert done is not None and done.state is JobState.DONE, done
    assert sorted(w.changes()) == ["F-bob", "K-bob"]


def test_tripped_webhook_breaker_revokes_nothing_through_the_real_engine(tmp_path: Path) -> None:
    w = world(tmp_path, staff=0, policy={"min_breaker_count": 0}, real_engine=True)
    w.daemon.run_full("audit")
    done = w.daemon.run_job(accept(w, "E2").job_id)
    assert done is not None and done.state is JobState.FAILED
    assert "max_new_terminations" in (done.error or "") and "circuit breaker" in (done.error or "")
    assert done.actions == () and w.changes() == []


def test_no_stored_hr_read_means_no_revocation_from_a_webhook(tmp_path: Path) -> None:
    w = world(tmp_path, real_engine=True)
    done = w.daemon.run_job(accept(w, "E2", email="bob@example.com").job_id)
    assert done is not None and done.state is JobState.FAILED
    assert "no HR read" in (done.error or "") and w.changes() == []


def test_webhook_terminations_since_the_last_hr_read_add_up_towards_the_breaker(tmp_path: Path) -> None:
    # 20 people: the 4th webhook termination is 20% > 5% and 4 > min_breaker_count (3).
    w = world(tmp_path, staff=17, real_engine=True)
    w.daemon.run_full("audit")
    for staff in ("S0", "S1", "S2"):
        job = w.daemon.run_job(accept(w, staff).job_id)
        assert job is not None and job.state is JobState.DONE, job
    fourth = w.daemon.run_job(accept(w, "E2").job_id)
    assert fourth is not None and fourth.state is JobState.FAILED
    assert "4 of 20 people" in (fourth.error or "") and "HR webhook" in (fourth.error or "")
    assert w.changes() == []  # bob's keys stay: the real engine refused


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
    assert [p for _, p in w.fake.auto_calls if p is not None] == ["E2"]  # the audit itself had None
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
    assert w.fake.undo_calls == ["E2"] and [a.status for a in done.actions] == ["restored"]
    w.clock.now = NOW + timedelta(days=2)
    assert w.daemon.process_due() == 0
    assert [p for _, p in w.fake.auto_calls if p is not None] == []


def test_rehire_without_undo_on_rehire_changes_no_credential(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.daemon.run_full("audit")
    done = w.daemon.run_job(accept(w, "E2", HREventType.REHIRED).job_id)
    assert done is not None and done.state is JobState.DONE and w.fake.undo_calls == []


def test_full_reconcile_is_skipped_while_another_process_holds_the_reconcile_lock(tmp_path: Path) -> None:
    w = world(tmp_path)
    other = Locks(w.store, "someone-else")
    held = other.try_acquire(FULL_RECONCILE)
    assert held is not None
    try:
        assert w.daemon.run_full("audit") is None
        assert w.store.latest_run("audit") is None and w.tgt.collect_calls == 0
    finally:
        held.release()
    assert w.daemon.run_full("audit") is not None


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
    cfg = NotificationConfig(
        urls=("https://hooks.example.test/T0/secret-token",),
        retries=retries,
        backoff=timedelta(seconds=1),
        retry_for=timedelta(0),
    )
    return Notifier(cfg, {}, client=httpx.Client(transport=httpx.MockTransport(hook)))


def deliver_until_settled(w: World, attempts: int = 10) -> None:
    """Leader steps of the outbox dispatcher, moving the clock past each backoff."""
    for _ in range(attempts):
        w.daemon.deliver_notifications()
        w.clock.now += timedelta(minutes=15)


def test_new_critical_or_high_findings_are_posted_with_a_slack_text_field_after_retries(
    tmp_path: Path,
) -> None:
    hook = Hook([500, 503])
    w = world(tmp_path, carol_terminated=True, policy={"auto_revoke": False}, notifier=notifier_with(hook))
    w.daemon.run_full("audit")
    deliver_until_settled(w)
    assert len(hook.bodies) == 3  # two failures, then delivered
    body = hook.bodies[-1]
    assert body["kind"] == "new_findings" and "2 new critical/high finding(s)" in body["text"]
    assert body["id"] == hook.bodies[0]["id"]  # one id across attempts: receivers deduplicate by it
    assert w.daemon.dispatcher.sent == 1 and w.daemon.dispatcher.failures == 0


def test_failed_actions_and_a_tripped_breaker_are_notified_and_a_dead_hook_never_fails_the_run(
    tmp_path: Path,
) -> None:
    hook = Hook([500] * 100)
    policy = {"min_breaker_count": 0}  # 3 people: one termination trips the breaker
    w = world(tmp_path, staff=0, policy=policy, notifier=notifier_with(hook, retries=1))
    assert w.daemon.run_full("audit") is not None
    job = w.daemon.run_job(accept(w, "E2").job_id)
    assert job is not None and job.state is JobState.FAILED
    deliver_until_settled(w)
    kinds = {b["kind"] for b in hook.bodies}
    assert "circuit_breaker" in kinds
    assert w.daemon.dispatcher.failures >= 1 and w.daemon.dispatcher.sent == 0


def test_failed_actions_are_notified(tmp_path: Path) -> None:
    hook = Hook([])
    w = world(tmp_path, notifier=notifier_with(hook))
    w.fake.status = "failed"
    w.daemon.run_full("audit")
    job = w.daemon.run_job(accept(w, "E2").job_id)
    assert job is not None and job.state is JobState.FAILED
    deliver_until_settled(w)
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
    audit_calls = len(w.fake.auto_calls)
    job = orphan(w, "E2", JobState.RUNNING, "dead-host:4242:abc123", NOW - timedelta(seconds=1))
    other = w.other_daemon("n2")

    claims = recover_together(w.daemon, other)

    assert sorted(len(c) for c in claims) == [0, 1] and [job.job_id] in claims
    winner = "n1" if claims[0] else "n2"
    finished = wait_job(w.store, job.job_id)
    assert finished.state is JobState.DONE, finished
    assert [p for _, p in w.fake.auto_calls[audit_calls:]] == ["E2"]  # the reconcile ran once
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
    assert [p for _, p in w.fake.auto_calls if p is not None] == ["E2"]


def test_job_with_a_live_lease_is_not_stolen_until_the_lease_expires(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.daemon.run_full("audit")
    lease = NOW + timedelta(seconds=30)
    job = orphan(w, "E2", JobState.RUNNING, "alive-host:1:abcdef", lease)
    other = w.other_daemon("n2")

    assert recover_together(w.daemon, other) == [[], []]
    held = WebhookStore(w.store).job(job.job_id)
    assert held is not None and held.state is JobState.RUNNING and held.node == "alive-host:1:abcdef"
    assert held.takeovers == () and [p for _, p in w.fake.auto_calls if p is not None] == []

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
    from offboard_audit.daemon.webhook import job_json

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
