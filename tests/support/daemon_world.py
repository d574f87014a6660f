"""An in-process daemon world for job tests: an HR file, two injected account sources (one that
can read a single person, one that cannot), a clock, and either a fake engine or the *real*
revocation engine acting on fake systems whose every change is logged. (No tests here.)

Tests that assert "nothing was revoked" use ``real_engine=True``: the refusal then comes from
``offboard_audit.engine.revocation.RevocationEngine`` itself, and ``World.applied()`` reads what the
revokers really changed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from offboard_audit.config import Config
from offboard_audit.core.jobs import HREvent, HREventType, Job, JobKind, JobState
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Person, SourceData
from offboard_audit.core.runs import RunResult
from offboard_audit.daemon.notify import Notifier
from offboard_audit.daemon.runs import RevocationEngineLike
from offboard_audit.daemon.service import Daemon, DaemonOptions
from offboard_audit.engine.revocation import ActionOutcome, ApplyReport, RevocationEngine
from offboard_audit.storage.store import Store
from offboard_audit.storage.webhook_store import WebhookStore, new_job_id
from tests.support.configs import HR_CSV_HEADER, config_with
from tests.support.fake_connector import FakeRevoker, read_state_file
from tests.support.fakes import FakeAccountSource, account, credential

NOW = datetime(2026, 5, 4, 9, 0, tzinfo=UTC)
NAMES = ("alice", "bob", "carol")


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


def _system_state(path: Path, suffix: str, prefix: str) -> None:
    """The revoker's view of a fake source: the same accounts (and uids) and keys."""
    accounts = [{"id": f"{n}{suffix}", "username": f"{n}{suffix}"} for n in NAMES]
    creds = [
        {"account_id": f"{n}{suffix}", "id": f"{prefix}-{n}", "kind": "access_key", "active": True}
        for n in NAMES
    ]
    path.write_text(json.dumps({"accounts": accounts, "credentials": creds, "log": []}))


def _revocable(config: Config) -> Config:
    """The injected account sources get the fake connector's revoker actions (the revokers
    themselves are injected into the engine)."""

    def _never(_o: Any, _c: Any) -> Any:
        raise AssertionError("revokers are injected into the engine")

    sources = tuple(
        replace(
            s,
            plugin=replace(s.plugin, make_revoker=_never, revoker_actions=FakeRevoker.actions),
        )
        if s.type == "fake"
        else s
        for s in config.sources
    )
    return replace(config, sources=sources)


@dataclass
class World:
    config: Config
    store: Store
    tgt: TargetedFake
    full: FakeAccountSource
    engine: FakeEngine | None
    clock: Clock
    daemon: Daemon
    engine_factory: Any
    state_files: dict[str, Path] = field(default_factory=dict)

    def other_daemon(self, node: str) -> Daemon:
        return Daemon(
            self.config,
            Store(self.store.engine),
            SourceContext(self.config.base_dir),
            DaemonOptions(node=node, serve_http=False, webhook=False),
            clock=self.clock,
            engine_factory=self.engine_factory,
            instances={"tgt": self.tgt, "full": self.full},
        )

    @property
    def fake(self) -> FakeEngine:
        assert self.engine is not None, "this world runs the real revocation engine"
        return self.engine

    def changes(self, op: str = "apply") -> list[str]:
        """Credential ids the real engine's revokers changed (``apply`` or ``undo``), in order."""
        out: list[str] = []
        for path in self.state_files.values():
            out += [e["credential_id"] for e in read_state_file(path).get("log", []) if e["op"] == op]
        return out

    def hr(self, text: str) -> None:
        (self.config.base_dir / "hr.csv").write_text(text)


def world(
    tmp_path: Path,
    staff: int = 20,
    policy: dict[str, Any] | None = None,
    carol_terminated: bool = False,
    notifier: Notifier | None = None,
    db_url: str | None = None,
    real_engine: bool = False,
) -> World:
    (tmp_path / "hr.csv").write_text(people_csv(staff, carol_terminated))
    config = config_with(
        tmp_path, account_sources=["tgt", "full"], policy={"auto_revoke": True, **(policy or {})}
    )
    if db_url:
        config = replace(config, database_url=db_url)
    store = Store.open(config.database_url)
    accts = {n: account(n, source="tgt", emails=(f"{n}@example.com",)) for n in NAMES}
    tgt = TargetedFake(
        name="tgt",
        accounts=list(accts.values()),
        credentials=[credential(a, f"K-{n}") for n, a in accts.items()],
    )
    fulls = {n: account(f"{n}2", source="full", emails=(f"{n}@example.com",)) for n in NAMES}
    full = FakeAccountSource(
        name="full",
        accounts=list(fulls.values()),
        credentials=[credential(a, f"F-{n}") for n, a in fulls.items()],
    )
    clock = Clock(NOW)
    engine: FakeEngine | None = None
    state_files: dict[str, Path] = {}
    if real_engine:
        config = _revocable(config)
        state_files = {"tgt": tmp_path / "tgt-state.json", "full": tmp_path / "full-state.json"}
        _system_state(state_files["tgt"], "", "K")
        _system_state(state_files["full"], "2", "F")
        real = RevocationEngine(
            config,
            Store(store.engine),
            SourceContext(tmp_path),
            actor="daemon:test",
            clock=clock,
            revokers={name: FakeRevoker(path) for name, path in state_files.items()},
        )

        def factory() -> RevocationEngineLike:
            return real

    else:
        fake = engine = FakeEngine()

        def factory() -> RevocationEngineLike:
            return fake

    d = Daemon(
        config,
        store,
        SourceContext(tmp_path),
        DaemonOptions(node="n1", serve_http=False, webhook=False),
        clock=clock,
        engine_factory=factory,
        instances={"tgt": tgt, "full": full},
        notifier=notifier,
    )
    return World(config, store, tgt, full, engine, clock, d, factory, state_files)


def accept(
    w: World,
    employee_id: str,
    event: HREventType = HREventType.TERMINATED,
    effective_at: datetime | None = None,
    email: str | None = None,
) -> Job:
    """Store an accepted event with its job, as the webhook does (without HTTP)."""
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
