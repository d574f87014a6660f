"""While the HR feed's circuit breaker holds, a webhook termination revokes nothing either.

A full HR read that trips the breaker is not stored until an operator accepts it: the feed is in
doubt, and design.md says to revoke nothing. A signed event for one person arriving meanwhile
must not slip through the webhook's own (smaller) breaker.
"""

from __future__ import annotations

from pathlib import Path

from offboard_audit.core.jobs import JobState
from tests.support.configs import HR_CSV_HEADER
from tests.support.daemon_world import accept, world


def test_a_webhook_termination_is_refused_while_a_tripped_hr_read_is_not_accepted(tmp_path: Path) -> None:
    w = world(tmp_path, staff=17, real_engine=True)
    assert w.daemon.run_full("audit") is not None  # the baseline: 20 people, all active
    # The next export marks 5 of 20 terminated (25%, and 5 > min_breaker_count): it trips.
    rows = ["E1,alice@example.com,Alice,active,,", "E2,bob@example.com,Bob,active,,"]
    rows += ["E3,carol@example.com,Carol,active,,"]
    rows += [
        f"S{i},s{i}@example.com,S{i},terminated,2026-01-01T00:00:00+00:00,"
        if i < 5
        else f"S{i},s{i}@example.com,S{i},active,,"
        for i in range(17)
    ]
    w.hr(HR_CSV_HEADER + "\n".join(rows) + "\n")
    tripped = w.daemon.run_full("audit")
    assert tripped is not None and tripped.circuit_breaker is not None

    done = w.daemon.run_job(accept(w, "E2").job_id)

    assert done is not None and done.state is JobState.FAILED, done
    assert "HR circuit breaker holds" in (done.error or "")
    assert w.changes() == []  # bob's keys stay: the real engine refused
