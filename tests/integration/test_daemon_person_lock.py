"""Issue 17 item 6: one job per person at a time, also on SQLite within one daemon. Two events
for the same person, submitted together to a daemon with four workers, never run concurrently
(the ``person:<id>`` lock is exclusive per acquisition, not per node) and neither fails with a
UNIQUE constraint error."""

from __future__ import annotations

import threading
from pathlib import Path

from offboard_audit.core.jobs import JobState
from offboard_audit.core.records import Person, SourceData
from tests.support.daemon_world import accept, wait_job, world


def test_two_events_for_the_same_person_never_run_at_once_and_neither_fails_with_a_unique_error(
    tmp_path: Path,
) -> None:
    w = world(tmp_path, real_engine=True)
    w.daemon.run_full("audit")
    inside = 0
    most = 0
    mutex = threading.Lock()
    second_arrived = threading.Event()
    original = w.tgt.collect_for

    def collect_for(person: Person) -> SourceData:
        nonlocal inside, most
        with mutex:
            inside += 1
            most = max(most, inside)
            if inside > 1:
                second_arrived.set()
        try:
            # The first read waits for a second one to join it (it must not): the overlap would
            # show at once; without it the wait ends after 2 s and the jobs go on one by one.
            second_arrived.wait(2.0)
            return original(person)
        finally:
            with mutex:
                inside -= 1

    w.tgt.collect_for = collect_for  # type: ignore[method-assign]
    first, second = accept(w, "E2"), accept(w, "E2")
    # Two worker threads of one daemon, each running one of the jobs.
    workers = [threading.Thread(target=w.daemon.run_job, args=(j.job_id,)) for j in (first, second)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=60)
    done = [wait_job(w.store, j.job_id, timeout=60) for j in (first, second)]

    assert most == 1 and not second_arrived.is_set()
    assert [j.state for j in done] == [JobState.DONE, JobState.DONE], done
    assert not any("UNIQUE" in (j.error or "") + j.detail for j in done)
    assert sorted(w.changes()) == ["F-bob", "K-bob"]  # each key disabled once
