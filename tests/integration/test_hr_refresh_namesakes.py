"""With two HR sources, an employee id can name two people (one per source). The targeted
reconcile that an HR refresh starts for somebody it found newly departed must be about that
leaver, not about their active namesake of the other source.

Before, the job reconciled whichever namesake came first (sources in name order): the active one,
so it found nothing, revoked nothing and said ``done``, and the leaver's keys kept working until
the next full reconcile.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from offboard_audit.core.jobs import JobKind, JobState
from offboard_audit.core.protocols import SourceContext
from offboard_audit.daemon.runs import RevocationEngineLike
from offboard_audit.daemon.service import Daemon, DaemonOptions
from offboard_audit.storage.store import Store
from offboard_audit.storage.webhook_store import WebhookStore
from tests.support.configs import config_with
from tests.support.daemon_world import NOW, Clock, FakeEngine, wait_job
from tests.support.fakes import FakeAccountSource, FakeHRSource, account, credential, leaver, person


def test_an_hr_refresh_job_reconciles_the_namesake_who_left_not_the_active_one(tmp_path: Path) -> None:
    # E5 is eve at subsidiary A and another eve at subsidiary B; B's eve leaves.
    hr_a = FakeHRSource(
        name="hr-a",
        people=[person("E1", "alice@a.example", source="hr-a"), person("E5", "eve@a.example", source="hr-a")],
    )
    hr_b = FakeHRSource(
        name="hr-b",
        people=[person("E9", "zoe@b.example", source="hr-b"), person("E5", "eve@b.example", source="hr-b")],
    )
    eve_a = account("eve-a", emails=("eve@a.example",))
    eve_b = account("eve-b", emails=("eve@b.example",))
    sys = FakeAccountSource(
        accounts=[eve_a, eve_b], credentials=[credential(eve_a, "K-eve-a"), credential(eve_b, "K-eve-b")]
    )
    config = config_with(tmp_path, hr_names=["hr-a", "hr-b"], policy={"auto_revoke": True})
    store = Store.open(config.database_url)
    engine = FakeEngine()

    def factory() -> RevocationEngineLike:
        return engine

    clock = Clock(NOW)
    daemon = Daemon(
        config,
        store,
        SourceContext(tmp_path),
        DaemonOptions(node="n1", serve_http=False, webhook=False),
        clock=clock,
        engine_factory=factory,
        instances={"hr-a": hr_a, "hr-b": hr_b, "sys": sys},
    )
    assert daemon.run_full("audit") is not None  # the baseline: nobody has left
    left_at = NOW + timedelta(minutes=5)
    hr_b.people[1] = leaver("E5", left_at, email="eve@b.example", source="hr-b")
    clock.now = NOW + timedelta(minutes=10)

    assert daemon.run_full("hr_refresh") is not None
    (queued,) = WebhookStore(store).jobs(employee_id="E5")
    assert queued.kind is JobKind.HR_REFRESH
    job = wait_job(store, queued.job_id)
    daemon.jobs.close()

    assert job.state is JobState.DONE, job
    (result, person_id) = engine.auto_calls[-1]
    assert person_id == "E5"
    keys = {
        (f.person.source if f.person else None, f.credential.credential_id if f.credential else None)
        for f in result.findings
    }
    assert keys == {("hr-b", "K-eve-b")}
