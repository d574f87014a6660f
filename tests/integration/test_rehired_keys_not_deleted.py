"""A person rehired through the HR webhook is no leaver any more: the delete stage
(``policy.delete_after``) must never delete the keys that were disabled while they were one.

Before, their findings stayed ``revoked`` (a revoked finding never closes), and once the
retention window had passed the daemon's full run deleted the rehired person's keys for good,
with or without ``[webhook] undo_on_rehire``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from offboard_audit.core.jobs import HREventType, JobState
from offboard_audit.core.records import PersonStatus
from tests.support.daemon_world import NOW, accept, people_csv, world


@pytest.mark.parametrize("undo_on_rehire", [False, True])
def test_the_delete_stage_never_deletes_the_keys_of_a_person_rehired_since(
    tmp_path: Path, undo_on_rehire: bool
) -> None:
    w = world(tmp_path, real_engine=True, carol_terminated=True, policy={"delete_after": "1d"})
    w.daemon.config = replace(w.config, webhook=replace(w.config.webhook, undo_on_rehire=undo_on_rehire))
    assert w.daemon.run_full("audit") is not None
    assert sorted(w.changes("apply")) == ["F-carol", "K-carol"]  # disabled, not deleted

    w.clock.now = NOW + timedelta(hours=1)
    rehired = w.daemon.run_job(accept(w, "E3", HREventType.REHIRED).job_id)
    assert rehired is not None and rehired.state is JobState.DONE, rehired
    (carol,) = [p for p in w.store.load_people() if p.employee_id == "E3"]
    assert carol.status is PersonStatus.ACTIVE
    w.hr(people_csv(20, carol_terminated=False))  # the HR export catches up

    # Long after the retention window, the daemon's full runs go on.
    for day in (2, 3):
        w.clock.now = NOW + timedelta(days=day)
        assert w.daemon.run_full("audit") is not None

    assert sorted(w.changes("apply")) == ["F-carol", "K-carol"]
    assert sorted(w.changes("undo")) == (["F-carol", "K-carol"] if undo_on_rehire else [])
