"""Mutation holes in a full run and the shared reconcile steps (offboard_audit/engine/pipeline.py):
how many threads read the account sources (``max_workers``; one source read on the caller's
thread), the progress line before storing, the fault-test points around the commit, which reads
count (a failed source does not stop the next one's snapshot; a failed scope's stored rows are
kept), who the stored people were changed by, and what the exposure stage gets (the account links,
the findings' first sighting) and gives back (its stale scopes).

Synchronisation is by events and barriers with timeouts, never by sleeping."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import pytest

from offboard_audit.config import Config
from offboard_audit.core.errors import SourceError
from offboard_audit.core.exposure import (
    Actor,
    Checkpoint,
    EventBatch,
    ExposureEvent,
    InventoryRead,
    ObjectRef,
    SecretState,
)
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import (
    CredentialKind,
    ExposureHow,
    FindingStatus,
    HRRead,
    Rule,
    ScopeFailure,
    SourceData,
)
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.engine.run_record import FaultPoints
from offboard_audit.storage.store import Store
from tests.support.configs import config_with
from tests.support.fakes import T0, FakeAccountSource, FakeHRSource, account, credential, leaver, person

NOW = T0 + timedelta(days=10)
WAIT = 5  # seconds; reached only when the run does not read the way the test expects


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'audit.db'}")
    yield s
    s.engine.dispose()


def _hr() -> FakeHRSource:
    return FakeHRSource(people=[person("E1"), leaver("E2", T0)])


def _bob(scope: str = "") -> FakeAccountSource:
    bob = account("bob", attributes=(("employeeNumber", "E2"),), scope=scope)
    return FakeAccountSource(accounts=[bob], credentials=[credential(bob, "K-bob")])


def _pipeline(
    tmp_path: Path,
    store: Store,
    hr: FakeHRSource,
    sources: Mapping[str, FakeAccountSource],
    max_workers: int = 4,
    reporter: list[str] | None = None,
    config: Config | None = None,
    faults: FaultPoints | None = None,
) -> Pipeline:
    cfg = config or config_with(tmp_path, account_sources=list(sources))
    return Pipeline(
        cfg,
        store,
        SourceContext(base_dir=tmp_path),
        reporter=reporter.append if reporter is not None else None,
        max_workers=max_workers,
        instances={"hr": hr, **sources},
        faults=faults or FaultPoints(),
    )


# --- how many threads read the account sources -------------------------------------------------


@dataclass
class SignallingHR(FakeHRSource):
    started: threading.Event = field(default_factory=threading.Event)

    def read_people(self) -> HRRead:
        self.started.set()
        return super().read_people()


@dataclass
class ThreadRecordingSource(FakeAccountSource):
    """Records the thread that reads it; when ``hold_until`` is armed, its read lasts until that
    event is set (so a pool with a free thread must start the next read on another one)."""

    threads: list[int] = field(default_factory=list)
    hold_until: threading.Event | None = None
    barrier: threading.Barrier | None = None

    def collect(self) -> SourceData:
        self.threads.append(threading.get_ident())
        if self.hold_until is not None and not self.hold_until.wait(WAIT):
            raise SourceError("the event this read waits for never came")
        if self.barrier is not None:
            self.barrier.wait()  # BrokenBarrierError (a failed read) when the other never comes
        return super().collect()


def _recording(name: str, **kw: object) -> ThreadRecordingSource:
    acct = account(f"{name}-user", source=name)
    return ThreadRecordingSource(
        name=name, accounts=[acct], credentials=[credential(acct, f"K-{name}")], **kw
    )  # type: ignore[arg-type]


def test_a_full_run_with_one_worker_reads_every_account_source_on_one_thread(
    tmp_path: Path, store: Store
) -> None:
    # "a" is still being read when "b" is handed to the pool (it lasts until HR is read, which
    # happens after both were handed over): a pool allowed a second thread would start one.
    hr = SignallingHR(people=[person("E1")])
    a = _recording("a", hold_until=hr.started)
    b = _recording("b")
    result = _pipeline(tmp_path, store, hr, {"a": a, "b": b}, max_workers=1).run(NOW)

    assert {s.name: s.error for s in result.sources} == {"hr": None, "a": None, "b": None}
    assert len(a.threads) == 1 and len(b.threads) == 1
    assert a.threads == b.threads  # one worker thread read both, one after the other


def _stored_people(tmp_path: Path, store: Store, sources: Mapping[str, FakeAccountSource]) -> None:
    _pipeline(tmp_path, store, _hr(), sources).run(NOW)


def test_a_targeted_run_reads_two_account_sources_at_the_same_time(tmp_path: Path, store: Store) -> None:
    a = _recording("a")
    b = _recording("b")
    _stored_people(tmp_path, store, {"a": a, "b": b})
    # Each read waits for the other to have started: read one after the other, both fail.
    meet = threading.Barrier(2, timeout=WAIT)
    a.barrier = b.barrier = meet

    result = _pipeline(tmp_path, store, _hr(), {"a": a, "b": b}).run_person("E2", NOW)

    assert {s.name: s.error for s in result.run.sources} == {"a": None, "b": None}


# --- progress, the commit's fault-test points -------------------------------------------------


def test_a_full_run_reports_storing_results_after_reading_and_before_it_ends(
    tmp_path: Path, store: Store
) -> None:
    lines: list[str] = []
    _pipeline(tmp_path, store, _hr(), {"sys": _bob()}, reporter=lines).run(NOW)

    # Collecting and reading HR go on at the same time: their order is not fixed.
    assert sorted(lines[:-1]) == [
        "collecting sys (fake)",
        "detail pass on 1 accounts in sys",
        "reading HR source hr",
    ]
    assert lines[-1] == "storing results"


class _Pauses:
    """Stands for stdin at a PAUSE_AT test point: notes the point and what was stored then."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.seen: list[tuple[str, int]] = []
        self.err = io.StringIO()

    def readline(self) -> str:
        self.seen.append((self.err.getvalue(), len(self.store.stored_findings())))
        return "\n"


def _paused_run(tmp_path: Path, store: Store, point: str) -> _Pauses:
    pauses = _Pauses(store)
    faults = FaultPoints(pause_at=point, stdin=pauses, stderr=pauses.err)
    _pipeline(tmp_path, store, _hr(), {"sys": _bob()}, faults=faults).run(NOW)
    return pauses


def test_a_full_run_pauses_at_before_commit_with_nothing_of_it_stored(tmp_path: Path, store: Store) -> None:
    pauses = _paused_run(tmp_path, store, "before-commit")

    assert pauses.seen == [("PAUSED before-commit\n", 0)]
    assert len(store.stored_findings()) == 1  # bob's key, stored once the run went on


def test_a_full_run_pauses_at_findings_stored_with_its_findings_written(tmp_path: Path, store: Store) -> None:
    pauses = _paused_run(tmp_path, store, "findings-stored")

    assert pauses.seen == [("PAUSED findings-stored\n", 1)]


# --- what a full run stores -----------------------------------------------------------------


def test_a_failed_account_source_does_not_stop_the_next_sources_snapshot(
    tmp_path: Path, store: Store
) -> None:
    down = FakeAccountSource(name="down", fail="unreachable")
    bob = account("bob", source="up", attributes=(("employeeNumber", "E2"),))
    up = FakeAccountSource(name="up", accounts=[bob], credentials=[credential(bob, "K-bob")])
    result = _pipeline(tmp_path, store, _hr(), {"down": down, "up": up}).run(NOW)

    assert [(s.name, s.status.value) for s in result.sources] == [
        ("hr", "ok"),
        ("down", "failed"),
        ("up", "ok"),
    ]
    snap = store.load_snapshot("up")
    assert [a.account_id for a in snap.accounts] == ["bob"]
    assert [c.credential_id for c in snap.credentials] == ["K-bob"]


def test_a_full_run_that_reads_the_leavers_key_gone_after_a_failed_source_resolves_it(
    tmp_path: Path, store: Store
) -> None:
    # The scopes of a source read after a failed one count as read: its finding closes there.
    down = FakeAccountSource(name="down", fail="unreachable")
    bob = account("bob", source="up", attributes=(("employeeNumber", "E2"),))
    up = FakeAccountSource(name="up", accounts=[bob], credentials=[credential(bob, "K-bob")])
    _pipeline(tmp_path, store, _hr(), {"down": down, "up": up}).run(NOW)
    (fid,) = store.stored_findings()

    up.credentials = []
    _pipeline(tmp_path, store, _hr(), {"down": down, "up": up}).run(NOW + timedelta(days=1))

    assert store.stored_findings()[fid].status is FindingStatus.RESOLVED


def test_a_failed_scope_keeps_its_stored_accounts_in_the_snapshot(tmp_path: Path, store: Store) -> None:
    east = account("east-user", scope="east")
    west = account("west-user", scope="west")
    sys = FakeAccountSource(
        accounts=[east, west], credentials=[credential(east, "K-e"), credential(west, "K-w")]
    )
    _pipeline(tmp_path, store, _hr(), {"sys": sys}).run(NOW)

    sys.failed_scopes = [ScopeFailure("west", "throttled")]
    _pipeline(tmp_path, store, _hr(), {"sys": sys}).run(NOW + timedelta(days=1))

    snap = store.load_snapshot("sys")
    assert sorted(a.account_id for a in snap.accounts) == ["east-user", "west-user"]
    assert sorted(c.credential_id for c in snap.credentials) == ["K-e", "K-w"]


def test_the_people_a_full_run_stores_are_changed_by_that_run(tmp_path: Path, store: Store) -> None:
    result = _pipeline(tmp_path, store, _hr(), {"sys": _bob()}).run(NOW)

    states = {s.person.employee_id: s.changed_by for s in store.load_person_states()}
    assert states == {"E1": f"hr:hr run {result.run_id}", "E2": f"hr:hr run {result.run_id}"}


# --- the exposure stage -----------------------------------------------------------------------

SECRET = SecretState(
    source="aws",
    scope="111",
    kind=CredentialKind.SECRET,
    secret_id="db-password",
    current_version_created_at=T0 - timedelta(days=100),
)


def _read_by_bob() -> EventBatch:
    # bob's IAM user (account "bob", linked to E2 by its employeeNumber only) read the secret.
    event = ExposureEvent(
        source="aws",
        scope="111",
        event_id="ev-1",
        at=T0 - timedelta(days=5),
        action="GetSecretValue",
        how=ExposureHow.READ,
        actor=Actor("arn:aws:iam::111:user/bob", kind="user", account_id="bob"),
        target=ObjectRef("111", CredentialKind.SECRET, "db-password"),
        stream="trail",
    )
    return EventBatch("trail", "111", (event,), Checkpoint("trail", "obj-1"), events_seen=1, objects_read=1)


@dataclass
class FakeExposure:
    name: str = "aws"
    system: str = "fake"
    batches: list[EventBatch] = field(default_factory=list)

    def read_events(self, checkpoints: Mapping[str, Checkpoint], now: object) -> Iterator[EventBatch]:
        yield from self.batches

    def inventory(self, wanted: Sequence[ObjectRef]) -> InventoryRead:
        return InventoryRead(secrets=(SECRET,), scopes=("111",))


def _exposure_config(tmp_path: Path, reader: FakeExposure) -> Config:
    cfg = config_with(tmp_path, account_sources=["aws"])
    sources = tuple(
        replace(s, plugin=replace(s.plugin, make_exposure=lambda _o, _c: reader)) if s.name == "aws" else s
        for s in cfg.sources
    )
    return replace(cfg, sources=sources)


def _exposure_findings(findings: Sequence[object]) -> list[object]:
    return [f for f in findings if f.rule is Rule.SECRET_EXPOSED_TO_LEAVER]  # type: ignore[attr-defined]


def _aws(*accounts_: object) -> FakeAccountSource:
    return FakeAccountSource(name="aws", accounts=list(accounts_))  # type: ignore[arg-type]


BOB_AWS = account("bob", source="aws", attributes=(("employeeNumber", "E2"),), scope="111")


def test_the_exposure_stage_matches_an_actor_through_its_account_link(tmp_path: Path, store: Store) -> None:
    reader = FakeExposure(batches=[_read_by_bob()])
    cfg = _exposure_config(tmp_path, reader)
    result = _pipeline(tmp_path, store, _hr(), {"aws": _aws(BOB_AWS)}, config=cfg).run(NOW)

    (f,) = _exposure_findings(result.findings)
    assert (f.person.employee_id, f.credential.credential_id, f.account.scope) == (
        "E2",
        "db-password",
        "exposure:111",
    )  # type: ignore[attr-defined]


def test_an_exposure_finding_keeps_its_first_sighting_on_later_runs(tmp_path: Path, store: Store) -> None:
    reader = FakeExposure(batches=[_read_by_bob()])
    cfg = _exposure_config(tmp_path, reader)
    _pipeline(tmp_path, store, _hr(), {"aws": _aws(BOB_AWS)}, config=cfg).run(NOW)

    later = NOW + timedelta(days=3)
    result = _pipeline(tmp_path, store, _hr(), {"aws": _aws(BOB_AWS)}, config=cfg).run(later)

    (f,) = _exposure_findings(result.findings)
    assert f.first_seen == NOW  # type: ignore[attr-defined]


def test_a_stale_exposure_scope_keeps_its_finding_open_even_when_a_read_names_that_scope(
    tmp_path: Path, store: Store
) -> None:
    reader = FakeExposure(batches=[_read_by_bob()])
    cfg = _exposure_config(tmp_path, reader)
    _pipeline(tmp_path, store, _hr(), {"aws": _aws(BOB_AWS)}, config=cfg).run(NOW)
    (fid,) = [k for k, v in store.stored_findings().items() if v.scope == "exposure:111"]

    # Now the trail object of scope 111 cannot be read: its exposure scope is stale. bob's
    # account is gone, so this run does not produce the finding again; and the account source
    # happens to report a scope of that very name, which a read of the accounts covers.
    reader.batches = [EventBatch("trail", "111", failure=ScopeFailure("111", "object unreadable"))]
    odd = account("svc", source="aws", scope="exposure:111")
    result = _pipeline(tmp_path, store, _hr(), {"aws": _aws(odd)}, config=cfg).run(NOW + timedelta(days=1))

    assert _exposure_findings(result.findings) == []
    assert store.stored_findings()[fid].status is FindingStatus.OPEN
