"""A full run reads its account sources while it reads HR: both can take seconds (paged APIs) and
they meet only at matching. Proved with events, not timing: each side waits for the other to have
started, which a run reading one after the other can never satisfy."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from offboard_audit.core.errors import SourceError
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import HRRead, SourceData
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.storage.store import Store
from tests.support.configs import config_with
from tests.support.fakes import T0, FakeAccountSource, FakeHRSource, account, credential, leaver, person

WAIT = 10  # seconds; reached only when the run reads one source after the other


@dataclass
class Rendezvous:
    hr_started: threading.Event = field(default_factory=threading.Event)
    accounts_started: threading.Event = field(default_factory=threading.Event)


@dataclass
class WaitingHR(FakeHRSource):
    meet: Rendezvous = field(default_factory=Rendezvous)

    def read_people(self) -> HRRead:
        self.meet.hr_started.set()
        if not self.meet.accounts_started.wait(WAIT):
            raise SourceError("the account source was not being read while HR was")
        return super().read_people()


@dataclass
class WaitingAccounts(FakeAccountSource):
    meet: Rendezvous = field(default_factory=Rendezvous)

    def collect(self) -> SourceData:
        self.meet.accounts_started.set()
        if not self.meet.hr_started.wait(WAIT):
            raise SourceError("HR was not being read while the account source was")
        return super().collect()


def test_hr_and_the_account_sources_are_read_at_the_same_time(tmp_path: Path) -> None:
    meet = Rendezvous()
    hr = WaitingHR(people=[person("E1"), leaver("E2", T0)], meet=meet)
    bob = account("bob", attributes=(("employeeNumber", "E2"),))
    src = WaitingAccounts(accounts=[bob], credentials=[credential(bob, "K-bob")], meet=meet)
    store = Store.open(f"sqlite:///{tmp_path / 'audit.db'}")
    pipeline = Pipeline(
        config_with(tmp_path, account_sources=[src.name]),
        store,
        SourceContext(base_dir=tmp_path),
        instances={"hr": hr, src.name: src},
    )

    result = pipeline.run(T0 + timedelta(days=1))

    assert {s.name: s.error for s in result.sources} == {"hr": None, "sys": None}
    assert [(f.account.account_id, f.person and f.person.employee_id) for f in result.findings] == [
        ("bob", "E2")
    ]
    store.engine.dispose()
