"""A person rehired through the HR webhook keeps their findings ``open`` until the next full run
closes them (the rehire job reads no system). Meanwhile ``revoke --apply`` (or the daemon's next
pass) must not disable the keys of somebody who, as stored now, is no leaver.

Before, the revocation engine planned from the stored findings as they were made, and disabled
the rehired person's keys.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from offboard_audit.core.jobs import HREventType, JobState
from offboard_audit.core.records import PersonStatus
from offboard_audit.engine.revocation import RevocationEngine
from tests.support.daemon_world import NOW, accept, world


def test_revoke_apply_after_a_webhook_rehire_does_not_disable_the_rehired_persons_keys(
    tmp_path: Path,
) -> None:
    w = world(tmp_path, real_engine=True, carol_terminated=True, policy={"auto_revoke": False})
    assert w.daemon.run_full("audit") is not None  # audit only: carol's keys are open findings
    assert w.changes("apply") == []

    rehired = w.daemon.run_job(accept(w, "E3", HREventType.REHIRED).job_id)
    assert rehired is not None and rehired.state is JobState.DONE, rehired
    (carol,) = [p for p in w.store.load_people() if p.employee_id == "E3"]
    assert carol.status is PersonStatus.ACTIVE

    engine = w.engine_factory()
    assert isinstance(engine, RevocationEngine)
    report = engine.revoke(NOW + timedelta(minutes=5), apply=True)

    assert report.refused is None and report.outcomes == ()
    assert w.changes("apply") == []
    assert report.plan is not None
    held = {h.credential_id: h.reason for h in report.plan.held if h.person == "E3"}
    assert set(held) == {"K-carol", "F-carol"}
    assert all("no longer departed" in why for why in held.values()), held
