"""Issue 17 items 5-8 and 11, in process (injected sources, clock and engine): incomplete jobs and
their retries, one job per person at a time, the notification outbox, job records after a
takeover, and the bounded replay table. The fault tests driven from outside a daemon process are
in ``test_daemon_faults.py``."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from offboard_audit.config.sections import NotificationConfig, WebhookConfig
from offboard_audit.core.errors import ConfigError
from offboard_audit.core.jobs import HREventType, JobState, NotificationState
from offboard_audit.core.people import PersonChange
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Person, PersonStatus, SourceData
from offboard_audit.daemon.notify import Notifier
from offboard_audit.engine.revocation import PassInterrupted, RevocationEngine
from offboard_audit.storage.actions import load_actions
from offboard_audit.storage.outbox import OutboxStore
from offboard_audit.storage.store import Store
from offboard_audit.storage.webhook_store import WebhookStore
from tests.support.configs import config_with
from tests.support.daemon_world import NOW, World, accept, wait_job, world
from tests.support.fake_connector import FakeRevoker, locked_state


def metric(w: World, name: str, **labels: str) -> float:
    """A sample of the daemon's /metrics exposition, parsed with prometheus_client's parser."""
    for family in text_string_to_metric_families(w.daemon.metrics.render()):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


# --- item 5: a job whose read of its person failed is incomplete, retried with backoff ---------


@dataclass
class FlakyRead:
    """Makes the targeted read of the world's ``tgt`` source fail ``failures`` times."""

    failures: int
    calls: list[str] = field(default_factory=list)

    def install(self, w: World) -> None:
        original = w.tgt.collect_for

        def collect_for(person: Person) -> SourceData:
            self.calls.append(person.employee_id)
            if self.failures > 0:
                self.failures -= 1
                raise ConnectionError("ListAccessKeys: Throttling: Rate exceeded")
            return original(person)

        w.tgt.collect_for = collect_for  # type: ignore[method-assign]


def test_job_whose_read_of_the_person_failed_is_incomplete_and_retried_with_backoff_until_done(
    tmp_path: Path,
) -> None:
    w = world(tmp_path, real_engine=True)
    w.daemon.jobs.retry_backoff = timedelta(seconds=10)
    w.daemon.jobs.retry_max_backoff = timedelta(seconds=25)
    w.daemon.run_full("audit")
    flaky = FlakyRead(failures=3)
    flaky.install(w)

    job = w.daemon.run_job(accept(w, "E2").job_id)
    assert job is not None and job.state is JobState.INCOMPLETE, job
    assert "failed sources: tgt" in job.detail and job.detail.startswith("the read of E2 failed in tgt")
    assert job.finished_at is None and job.next_attempt_at == NOW + timedelta(seconds=10)
    assert [(a.source, a.status) for a in job.actions] == [("full", "applied")]  # what was read
    assert w.changes() == ["F-bob"]
    assert metric(w, "offboard_audit_webhook_jobs_total", kind="terminate", outcome="incomplete") == 1
    assert metric(w, "offboard_audit_webhook_jobs_incomplete") == 1

    # Not before its time; then with doubling backoff, bounded by retry_max_backoff.
    assert w.daemon.process_due() == 0
    waits = []
    for _ in range(2):
        w.clock.now = job.next_attempt_at
        assert w.daemon.process_due() == 1
        job = wait_job_state(w, job.job_id, JobState.INCOMPLETE, after_attempts=job.attempts)
        assert job.next_attempt_at is not None
        waits.append((job.next_attempt_at - w.clock.now).total_seconds())
    assert waits == [20.0, 25.0]

    # The read succeeds: the job is done, with every action of that person.
    w.clock.now = job.next_attempt_at
    assert w.daemon.process_due() == 1
    done = wait_job(w.store, job.job_id)
    assert w.daemon.gate.wait_idle(10) == 0  # its outcome counted in the metrics too
    assert done.state is JobState.DONE and done.attempts == 4, done
    assert sorted(a.source for a in done.actions if a.status == "applied") == ["full", "tgt"]
    assert sorted(w.changes()) == ["F-bob", "K-bob"]  # each key changed once
    assert flaky.calls == ["E2"] * 4
    assert metric(w, "offboard_audit_webhook_jobs_incomplete") == 0
    assert metric(w, "offboard_audit_webhook_jobs_total", kind="terminate", outcome="incomplete") == 3
    assert metric(w, "offboard_audit_webhook_jobs_total", kind="terminate", outcome="done") == 1


def wait_job_state(w: World, job_id: str, state: JobState, after_attempts: int) -> Any:
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = WebhookStore(w.store).job(job_id)
        if job is not None and job.state is state and job.attempts > after_attempts:
            # Stored is not finished: the job still counts its outcome in the metrics. Its worker
            # leaves the daemon's work gate when it is done.
            assert w.daemon.gate.wait_idle(10) == 0, "the job's worker did not finish"
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not reach {state} again")


def test_a_rehire_cancels_an_incomplete_termination(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.daemon.run_full("audit")
    FlakyRead(failures=1).install(w)
    job = w.daemon.run_job(accept(w, "E2").job_id)
    assert job is not None and job.state is JobState.INCOMPLETE
    w.daemon.run_job(accept(w, "E2", HREventType.REHIRED, effective_at=NOW).job_id)
    cancelled = WebhookStore(w.store).job(job.job_id)
    assert cancelled is not None and cancelled.state is JobState.CANCELLED
    w.clock.now = NOW + timedelta(hours=1)
    assert w.daemon.process_due() == 0


def test_retry_backoff_settings_are_checked() -> None:
    from offboard_audit.config import build_config

    base: dict[str, Any] = {"sources": [{"name": "hr", "type": "hr_csv", "path": "hr.csv"}]}
    ok = build_config({**base, "webhook": {"retry_backoff": "5s", "retry_max_backoff": "1m"}}, env={})
    assert (ok.webhook.retry_backoff, ok.webhook.retry_max_backoff) == (
        timedelta(seconds=5),
        timedelta(minutes=1),
    )
    assert WebhookConfig().retry_backoff == timedelta(seconds=30)
    with pytest.raises(ConfigError, match="retry_max_backoff"):
        build_config({**base, "webhook": {"retry_backoff": "5m", "retry_max_backoff": "1m"}}, env={})


# --- item 7: notifications are an outbox ---------------------------------------------------------


class Sink:
    """An httpx transport standing in for a chat webhook that is down, then up."""

    def __init__(self) -> None:
        self.down = True
        self.received: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        import json

        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        self.received.append(json.loads(request.content))
        return httpx.Response(200)


TOKEN_URL = "https://hooks.example.test/services/T0/B0/secret-token-123"


def sink_notifier(sink: Sink, **config: Any) -> Notifier:
    cfg = NotificationConfig(urls=(TOKEN_URL,), **config)
    return Notifier(cfg, {}, client=httpx.Client(transport=httpx.MockTransport(sink)))


def test_notifications_written_with_the_run_survive_the_daemon_and_are_sent_once_by_the_next_leader(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = Sink()
    w = world(tmp_path, carol_terminated=True, policy={"auto_revoke": False}, notifier=sink_notifier(sink))
    caplog.set_level(logging.INFO)
    run = w.daemon.run_full("audit")
    assert run is not None
    outbox = OutboxStore(w.store)
    (pending,) = outbox.of(f"run:{run.run_id}")
    assert pending.kind == "new_findings" and pending.state is NotificationState.PENDING
    assert w.daemon.deliver_notifications() == 0  # the sink is down: it stays pending, with backoff
    after = outbox.get(pending.notification_id)
    assert after is not None and after.attempts == 1 and after.next_attempt_at == NOW + timedelta(seconds=5)

    # This daemon is gone (nothing in memory survives); another one leads, and the sink is up.
    other = w.other_daemon("n2")
    other.notifier = other.dispatcher.notifier = sink_notifier(sink)
    sink.down = False
    assert other.deliver_notifications() == 0  # backoff holds across daemons
    w.clock.now = NOW + timedelta(seconds=5)
    assert other.deliver_notifications() == 1
    assert other.deliver_notifications() == 0 and w.daemon.deliver_notifications() == 0
    (body,) = sink.received
    assert body["kind"] == "new_findings" and body["id"] == pending.notification_id
    delivered = outbox.get(pending.notification_id)
    assert delivered is not None and delivered.state is NotificationState.DELIVERED
    assert TOKEN_URL not in caplog.text and "secret-token-123" not in caplog.text
    assert "https://hooks.example.test" in caplog.text  # scheme and host only


def test_an_undeliverable_notification_is_logged_and_shown_in_metrics(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sink = Sink()
    notifier = sink_notifier(sink, retries=1, retry_for=timedelta(0))
    w = world(tmp_path, carol_terminated=True, policy={"auto_revoke": False}, notifier=notifier)
    w.daemon.run_full("audit")
    w.daemon.deliver_notifications()
    w.clock.now += timedelta(minutes=1)
    w.daemon.deliver_notifications()
    (n,) = OutboxStore(w.store).of()
    assert n.state is NotificationState.UNDELIVERABLE and n.attempts == 2 and n.last_error == "ConnectError"
    assert metric(w, "offboard_audit_notifications_undeliverable") == 1
    assert metric(w, "offboard_audit_notifications_failed_total") == 1
    assert metric(w, "offboard_audit_notifications_pending") == 0
    lines = [r for r in caplog.records if "undeliverable" in r.getMessage()]
    assert (
        len(lines) == 1 and lines[0].levelno == logging.ERROR and "secret-token" not in lines[0].getMessage()
    )


def test_a_jobs_notifications_are_written_in_the_transaction_that_records_the_job(tmp_path: Path) -> None:
    sink = Sink()
    w = world(tmp_path, notifier=sink_notifier(sink))
    w.fake.status = "failed"
    w.daemon.run_full("audit")
    job = w.daemon.run_job(accept(w, "E2").job_id)
    assert job is not None and job.state is JobState.FAILED
    kinds = sorted(n.kind for n in OutboxStore(w.store).of(f"run:{job.run_id}"))
    assert kinds == ["failed_actions", "new_findings"]
    # A job recorded by another owner (taken over) writes no notification of the late one.
    events = WebhookStore(w.store)
    assert not events.finish_job(
        job.job_id,
        NOW,
        JobState.DONE,
        owner="n1",
        notifications=w.daemon.notifier.rows([], "x", NOW),
    )


# --- item 8: a taken-over job lists exactly its person's actions --------------------------------


class Killed(BaseException):
    """The dead daemon's process ending in the middle of a change."""


def test_jobs_taken_over_from_a_dead_daemon_list_exactly_their_own_persons_actions(tmp_path: Path) -> None:
    w = world(tmp_path, real_engine=True)
    w.daemon.run_full("audit")
    dead_node = "dead-host:4242:abc123"

    def die(_credential: str, _when: str) -> None:
        raise Killed

    dead = RevocationEngine(
        w.config,
        Store(w.store.engine),
        SourceContext(tmp_path),
        actor=f"daemon:{dead_node}",
        clock=w.clock,
        revokers={name: FakeRevoker(path, wait=die) for name, path in w.state_files.items()},
    )
    events = WebhookStore(w.store)
    jobs = {}
    for eid, name in (("E1", "alice"), ("E2", "bob")):
        job = accept(w, eid)
        assert events.start_job(job.job_id, NOW, dead_node, NOW + timedelta(seconds=1))
        jobs[eid] = job
        # The dead daemon's attempt: the person is terminated, their first key disabled, and the
        # process dies before the outcome is recorded (the action stays in "intent").
        left = NOW - timedelta(minutes=1)  # the event's effective_at (see accept())
        change = PersonChange(eid, PersonStatus.TERMINATED, left, None, effective_at=left, origin="test")
        targeted = w.daemon.pipeline.run_person(eid, NOW, change).run
        for path in w.state_files.values():
            with locked_state(path) as st:
                st["block"] = {f"K-{name}": "after", f"F-{name}": "after"}
                # The first intent cannot be re-read by the second dead pass: it stays an intent.
                st["unreadable"] = {"K-alice": "down", "F-alice": "down"} if eid == "E2" else {}
        # The pass reports what it did before it stopped (PassInterrupted), if it gets to.
        with pytest.raises((Killed, PassInterrupted)):
            dead.auto_revoke(targeted, NOW, eid)
        for path in w.state_files.values():
            with locked_state(path) as st:
                st["block"] = {}
                st["unreadable"] = {}
    intents = {a.person: a.action_id for a in load_actions(w.store) if a.status.value == "intent"}
    assert set(intents) == {"E1", "E2"}

    w.clock.now = NOW + timedelta(seconds=5)
    assert sorted(w.daemon.recover_jobs()) == sorted(j.job_id for j in jobs.values())
    finished = {eid: wait_job(w.store, j.job_id, timeout=30) for eid, j in jobs.items()}

    person_of = {a.action_id: a.person for a in load_actions(w.store)}
    for eid, job in finished.items():
        assert job.state is JobState.DONE, job
        listed = [a.action_id for a in job.actions]
        assert {person_of[i] for i in listed} == {eid}, (eid, job.actions)  # nobody else's
        assert intents[eid] in listed  # and its own, whichever pass settled it
        assert all(a.status == "applied" for a in job.actions)
    assert sorted(w.changes()) == ["F-alice", "F-bob", "K-alice", "K-bob"]  # each changed once


# --- item 11: the replay table stays bounded -----------------------------------------------------


def test_event_bodies_are_dropped_when_their_job_finishes_and_old_event_ids_are_forgotten(
    tmp_path: Path,
) -> None:
    w = world(tmp_path)
    w.daemon.run_full("audit")  # a good HR read: events received before it no longer count
    events = WebhookStore(w.store)
    job = accept(w, "E2")
    assert events.event(job.event_id or "").body == "{}"  # type: ignore[union-attr]
    w.daemon.run_job(job.job_id)
    assert events.event(job.event_id or "").body == ""  # type: ignore[union-attr]
    waiting = accept(w, "E1", effective_at=NOW + timedelta(days=30))  # a scheduled job keeps its body
    w.clock.now = NOW + timedelta(hours=1)
    w.daemon.run_full("audit")  # the newest good HR read

    # Within the retention every id is kept (a replay is still refused).
    w.clock.now = NOW + timedelta(hours=23)
    assert w.daemon.prune_events() == 0
    # After it, the finished job's event id is forgotten; the waiting one's is kept.
    w.clock.now = NOW + timedelta(days=1, minutes=1)
    assert w.daemon.prune_events() == 1
    assert events.event(job.event_id or "") is None
    assert events.event(waiting.event_id or "") is not None and events.event_count() == 1
    finished = events.job(job.job_id)
    assert finished is not None and finished.state is JobState.DONE  # the job record stays


def test_event_ids_received_since_the_last_good_hr_read_are_kept_for_the_breaker(tmp_path: Path) -> None:
    w = world(tmp_path)
    w.daemon.run_full("audit")
    job = accept(w, "E2")
    w.daemon.run_job(job.job_id)
    w.clock.now = NOW + timedelta(days=3)  # no HR read since: the breaker still counts E2
    assert w.daemon.prune_events() == 0
    assert WebhookStore(w.store).terminations_since(NOW - timedelta(hours=1)) == {"E2"}


def test_event_retention_must_cover_twice_the_signature_window(tmp_path: Path) -> None:
    config = config_with(tmp_path)
    assert config.webhook.event_retention == timedelta(days=1)
    from offboard_audit.config import build_config

    base: dict[str, Any] = {"sources": [{"name": "hr", "type": "hr_csv", "path": "hr.csv"}]}
    assert build_config({**base, "webhook": {"event_retention": "10m"}}, env={}).webhook.event_retention == (
        timedelta(minutes=10)
    )
    with pytest.raises(ConfigError, match="twice"):
        build_config({**base, "webhook": {"event_retention": "9m"}}, env={})


# --- PostgreSQL ----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_on_postgres_an_incomplete_job_is_retried_by_exactly_one_of_two_replicas(
    tmp_path: Path, postgres_url: str
) -> None:
    w = world(tmp_path, db_url=postgres_url)
    w.daemon.run_full("audit")
    FlakyRead(failures=1).install(w)
    job = w.daemon.run_job(accept(w, "E2").job_id)
    assert job is not None and job.state is JobState.INCOMPLETE and job.next_attempt_at is not None
    other = w.other_daemon("n2")
    w.clock.now = job.next_attempt_at
    claimed: list[int] = []
    barrier = threading.Barrier(2)

    def claim(d: Any) -> None:
        barrier.wait()
        claimed.append(d.process_due())

    threads = [threading.Thread(target=claim, args=(d,)) for d in (w.daemon, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(claimed) == [0, 1]
    done = wait_job(w.store, job.job_id)
    assert done.state is JobState.DONE and done.attempts == 2


@pytest.mark.postgres
def test_on_postgres_notifications_are_stored_once_and_delivered_once(
    tmp_path: Path, postgres_url: str
) -> None:
    sink = Sink()
    sink.down = False
    w = world(
        tmp_path,
        carol_terminated=True,
        policy={"auto_revoke": False},
        notifier=sink_notifier(sink),
        db_url=postgres_url,
    )
    run = w.daemon.run_full("audit")
    assert run is not None
    rows = w.daemon.notifier.rows(
        run_messages_of(run), f"run:{run.run_id}", NOW
    )  # the same message again: stored once
    assert OutboxStore(w.store).add(rows) == 0
    assert w.daemon.deliver_notifications() == 1 and w.other_daemon("n2").deliver_notifications() == 0
    assert [b["kind"] for b in sink.received] == ["new_findings"]


def run_messages_of(run: Any) -> Any:
    from offboard_audit.daemon.summary import run_messages

    return run_messages(run, "audit")


# --- issue 11 wiring: the audit anchor goes through the notification channel ----------------------


def test_the_audit_anchor_of_a_job_is_written_and_sent_as_a_notification(tmp_path: Path) -> None:
    from offboard_audit.report.audit_trail import AuditTrail, read_anchors

    sink = Sink()
    sink.down = False
    w = world(tmp_path, real_engine=True, notifier=sink_notifier(sink))
    anchors = tmp_path / "anchors.jsonl"
    w.daemon.reconciler.trail = AuditTrail(None, anchors)
    w.daemon.run_full("audit")
    job = w.daemon.run_job(accept(w, "E2").job_id)
    assert job is not None and job.state is JobState.DONE
    written, problems, exists = read_anchors(anchors)
    assert exists and not problems and written
    last = written[-1]
    w.daemon.deliver_notifications()
    sent = [b for b in sink.received if b["kind"] == "audit_anchor"]
    assert sent and sent[-1]["head_hash"] == last.hash and sent[-1]["head_seq"] == last.seq
    assert last.hash in sent[-1]["text"]
