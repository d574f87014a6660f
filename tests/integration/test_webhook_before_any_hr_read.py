"""Before any full HR read, the HR webhook revokes nothing, however many events came first.

design.md: the webhook's breaker counts its terminations since the last good HR read; with no HR
read stored there is no workforce to count against, and ``webhook_breaker_reason`` says "no HR read
is stored yet". The people earlier events recorded (known only from the webhook) are no HR read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from offboard_audit.core.jobs import JobState
from tests.support.daemon_world import accept, world

NO_HR_READ = "no HR read is stored yet"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str | None:
    """None: the world's own SQLite file."""
    return None if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


def test_a_second_webhook_termination_before_any_hr_read_revokes_nothing(
    tmp_path: Path, db_url: str | None
) -> None:
    w = world(tmp_path, real_engine=True, db_url=db_url)
    # alice: recorded from the event
    first = w.daemon.run_job(accept(w, "E1", email="alice@example.com").job_id)
    assert first is not None and first.state is JobState.FAILED and NO_HR_READ in (first.error or "")

    # bob: alice is stored now, from the webhook
    second = w.daemon.run_job(accept(w, "E2", email="bob@example.com").job_id)

    assert second is not None and second.state is JobState.FAILED, second
    assert NO_HR_READ in (second.error or "")
    assert w.changes() == []  # nobody's keys were touched
