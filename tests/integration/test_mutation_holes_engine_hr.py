"""``engine/hr.py`` step by step (mutation survivors of ``read_hr``, ``hr_round``,
``save_people``, ``hr_source_run`` and ``update_person``), in process, on SQLite.

A failed HR read keeps the last known people of *that* source and says why, in the log and in
its source run; a good read's people are what it read. A tripped breaker that is not accepted
holds the previous read as the baseline and says how to accept it; an accepted one is noted on
every good source. A failed first source does not stop the next good one being stored. An HR
event that changes nothing leaves the people it concerned as they were; one that applies
replaces that person, and a row changed meanwhile is decided again (a bounded number of times).
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from offboard_audit.config import Config, SourceConfig
from offboard_audit.core.people import ChangeOutcome, PersonChange
from offboard_audit.core.records import Person, PersonStatus
from offboard_audit.core.runs import SourceRun, SourceStatus
from offboard_audit.core.stored import PersonState
from offboard_audit.engine.hr import (
    HRRound,
    HRState,
    hr_round,
    hr_source_run,
    read_hr,
    save_people,
    update_person,
)
from offboard_audit.storage.store import Store
from tests.support.configs import config_with
from tests.support.fakes import FakeHRSource, person

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
LEFT = datetime(2026, 5, 20, tzinfo=UTC)
HR_LOG = "offboard_audit.engine.hr"


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'hr.db'}")


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return config_with(tmp_path, account_sources=[], hr_names=["hr-a", "hr-b"])


def staff(source: str, prefix: str, n: int) -> list[Person]:
    return [person(f"{prefix}{i}", source=source) for i in range(1, n + 1)]


def read(config: Config, store: Store, name: str, fake: FakeHRSource) -> HRState:
    return read_hr(config.source(name), fake, store, lambda _line: None)


def round_of(
    config: Config, store: Store, reads: dict[str, FakeHRSource], accept_hr: bool = False
) -> HRRound:
    states = [read(config, store, name, fake) for name, fake in reads.items()]
    return hr_round(states, store, config, NOW, "run-2", accept_hr)


def src(config: Config, name: str) -> SourceConfig:
    return config.source(name)


# --- read_hr ---------------------------------------------------------------------------------


def test_reading_an_hr_source_reports_its_name(config: Config, store: Store) -> None:
    lines: list[str] = []
    read_hr(src(config, "hr-a"), FakeHRSource(people=staff("hr-a", "A", 1)), store, lines.append)
    assert lines == ["reading HR source hr-a"]


def test_a_good_read_gives_the_state_exactly_the_people_it_read(config: Config, store: Store) -> None:
    people = staff("hr-a", "A", 2)
    state = read(config, store, "hr-a", FakeHRSource(people=people))
    assert state.error is None
    assert state.read is not None and state.people == state.read.people == tuple(people)


def test_a_failed_read_keeps_the_last_known_people_of_that_source_only(config: Config, store: Store) -> None:
    store.save_people("hr-a", staff("hr-a", "A", 2), "run-1")
    store.save_people("hr-b", staff("hr-b", "B", 3), "run-1")
    state = read(config, store, "hr-a", FakeHRSource(fail="export unreachable"))
    assert state.read is None
    assert state.error == "export unreachable"
    assert state.people == tuple(store.load_people("hr-a"))
    assert {p.employee_id for p in state.people} == {"A1", "A2"}


def test_a_failed_read_logs_a_warning_naming_the_source_and_its_error(
    config: Config, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger=HR_LOG):
        read(config, store, "hr-a", FakeHRSource(fail="export unreachable"))
    assert [r.getMessage() for r in caplog.records if r.name == HR_LOG] == [
        "HR source hr-a failed: export unreachable"
    ]


# --- hr_round ----------------------------------------------------------------------------------


def tripping_reads() -> dict[str, FakeHRSource]:
    """Five of twenty people newly terminated: above 5 % and above 3 (the default policy)."""
    a = staff("hr-a", "A", 10)
    a[:5] = [replace(p, status=PersonStatus.TERMINATED, terminated_at=LEFT) for p in a[:5]]
    return {"hr-a": FakeHRSource(people=a), "hr-b": FakeHRSource(people=staff("hr-b", "B", 10))}


def seed_twenty(store: Store) -> None:
    store.save_people("hr-a", staff("hr-a", "A", 10), "run-1")
    store.save_people("hr-b", staff("hr-b", "B", 10), "run-1")


def test_a_tripped_read_not_accepted_says_the_previous_read_stays_the_baseline(
    config: Config, store: Store
) -> None:
    seed_twenty(store)
    hr = round_of(config, store, tripping_reads())
    assert hr.keep_baseline and not hr.trusted and hr.accepted_breaker is None
    assert hr.breaker is not None and hr.breaker.startswith("5 of 20 people")
    assert hr.breaker.endswith(
        "; the previous HR read stays the baseline until this one is accepted "
        "(offboard-audit audit --accept-hr)"
    )


def test_accepting_a_tripped_read_notes_the_released_breaker_on_every_good_source(
    config: Config, store: Store
) -> None:
    seed_twenty(store)
    hr = round_of(config, store, tripping_reads(), accept_hr=True)
    assert hr.breaker is None and not hr.keep_baseline and hr.trusted
    assert hr.accepted_breaker is not None and hr.accepted_breaker.startswith("5 of 20 people")
    note = f"circuit breaker released by --accept-hr for this run: {hr.accepted_breaker}"
    assert [s.notes for s in hr.states] == [[note], [note]]
    assert all(note in hr_source_run(s).warnings for s in hr.states)


def hr_a_failing_hr_b_reading(config: Config, store: Store, b_people: int) -> HRRound:
    """Two people stored for each of hr-a and hr-b; now hr-a fails and hr-b reads ``b_people``."""
    store.save_people("hr-a", staff("hr-a", "A", 2), "run-1")
    store.save_people("hr-b", staff("hr-b", "B", 2), "run-1")
    failing, reading = (
        FakeHRSource(fail="export unreachable"),
        FakeHRSource(people=staff("hr-b", "B", b_people)),
    )
    return round_of(config, store, {"hr-a": failing, "hr-b": reading})


def test_a_failed_hr_source_trips_the_breaker_without_holding_back_the_good_sources_read(
    config: Config, store: Store
) -> None:
    hr = hr_a_failing_hr_b_reading(config, store, 1)
    # A failed source is its own breaker: not the "previous read stays the baseline" one.
    assert hr.breaker == "HR source failed: hr-a"
    assert not hr.keep_baseline and not hr.trusted and hr.failed == ["hr-a"]
    # The failed source's last known people, and the good source's read (B2 is gone from it).
    assert sorted(p.employee_id for p in hr.people) == ["A1", "A2", "B1"]


# --- save_people -------------------------------------------------------------------------------


def test_a_failed_first_source_does_not_stop_the_next_good_source_being_stored(
    config: Config, store: Store
) -> None:
    hr = hr_a_failing_hr_b_reading(config, store, 3)
    save_people(hr, store, "run-2")
    assert [p.employee_id for p in store.load_people("hr-b")] == ["B1", "B2", "B3"]
    assert [p.employee_id for p in store.load_people("hr-a")] == ["A1", "A2"]


# --- hr_source_run -----------------------------------------------------------------------------


def test_a_failed_hr_source_run_is_stale_with_its_error_and_the_people_kept(
    config: Config, store: Store
) -> None:
    store.save_people("hr-a", staff("hr-a", "A", 2), "run-1")
    state = read(config, store, "hr-a", FakeHRSource(fail="export unreachable"))
    a = src(config, "hr-a")
    assert hr_source_run(state) == SourceRun(
        "hr-a", a.system, SourceStatus.FAILED, "export unreachable", (("people", 2),), stale=True
    )


def test_a_good_hr_source_run_counts_the_people_read_and_the_bad_rows(config: Config, store: Store) -> None:
    hr = round_of(config, store, {"hr-a": FakeHRSource(people=staff("hr-a", "A", 3))})
    run = hr_source_run(hr.states[0])
    assert run.status is SourceStatus.OK and run.error is None and not run.stale
    assert run.counts == (("people", 3), ("bad_rows", 0))


# --- update_person -----------------------------------------------------------------------------


def test_an_event_that_changes_nothing_leaves_the_people_it_concerned_as_they_were(store: Store) -> None:
    store.save_people("hr-a", staff("hr-a", "A", 2), "run-1")
    # Names A1 with A2's email: a conflict, nothing is written.
    change = PersonChange("A1", PersonStatus.TERMINATED, LEFT, email="a2@example.com", origin="evt-1")
    update = update_person(store, change, "hr-a", "job:1")
    assert update.decision.outcome is ChangeOutcome.CONFLICT and not update.applied
    assert update.before == update.after
    assert {p.employee_id for p in update.before} == {"A1", "A2"}
    assert store.load_people("hr-a") == staff("hr-a", "A", 2)


def test_an_applied_termination_replaces_that_person_and_keeps_their_namesake_of_another_source(
    store: Store,
) -> None:
    store.save_people("hr-a", staff("hr-a", "A", 1), "run-1")
    store.save_people("hr-b", staff("hr-b", "A", 1), "run-1")  # same employee id, other source
    change = PersonChange("A1", PersonStatus.TERMINATED, LEFT, origin="evt-1")
    update = update_person(store, change, "hr-a", "job:1")
    assert update.applied
    terminated = replace(person("A1", source="hr-a"), status=PersonStatus.TERMINATED, terminated_at=LEFT)
    assert set(update.before) == {person("A1", source="hr-a"), person("A1", source="hr-b")}
    assert update.after == (person("A1", source="hr-b"), terminated)
    assert store.load_people("hr-a") == [terminated]


def race(store: Store, monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    """Another writer renames the stored person just before each of the first ``times`` writes."""
    real = store.save_person_state
    raced: list[int] = []

    def racing(state: PersonState, before: PersonState | None, run_id: str) -> bool:
        if before is not None and len(raced) < times:
            raced.append(1)
            renamed = replace(before, person=replace(before.person, name=f"Renamed {len(raced)}"))
            assert real(renamed, before, "other-writer")
        return real(state, before, run_id)

    monkeypatch.setattr(store, "save_person_state", racing)
    return raced


def test_a_row_changed_meanwhile_is_decided_again_and_logged(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store.save_people("hr-a", staff("hr-a", "A", 1), "run-1")
    raced = race(store, monkeypatch, times=1)
    change = PersonChange("A1", PersonStatus.TERMINATED, LEFT, origin="evt-1")
    with caplog.at_level(logging.INFO, logger=HR_LOG):
        update = update_person(store, change, "hr-a", "job:1")
    assert raced == [1] and update.applied
    (stored,) = store.load_people("hr-a")
    assert (stored.status, stored.name) == (PersonStatus.TERMINATED, "Renamed 1")
    assert [r.getMessage() for r in caplog.records if r.name == HR_LOG] == [
        "person A1 changed while an HR event was applied to them: deciding again"
    ]


def test_a_row_that_keeps_changing_gives_up_naming_the_person(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.save_people("hr-a", staff("hr-a", "A", 1), "run-1")
    race(store, monkeypatch, times=100)
    change = PersonChange("A1", PersonStatus.TERMINATED, LEFT, origin="evt-1")
    with pytest.raises(RuntimeError) as err:
        update_person(store, change, "hr-a", "job:1")
    assert str(err.value) == "person 'A1' kept changing while an HR event was applied; try again"
    (stored,) = store.load_people("hr-a")
    assert stored.status is PersonStatus.ACTIVE


def test_a_failed_hr_read_with_no_earlier_people_is_a_failure_that_uses_no_stale_data(config: Config) -> None:
    src = config.source("hr-a")
    first = hr_source_run(HRState(src, error="hr.csv: not found"))
    assert first == SourceRun(
        "hr-a",
        src.system,
        SourceStatus.FAILED,
        "hr.csv: not found (failed, no earlier data: this source contributes no people)",
        (("people", 0),),
    )
    kept = tuple(staff("hr-a", "E", 2))
    later = hr_source_run(HRState(src, error="hr.csv: not found", people=kept))
    assert later == SourceRun(
        "hr-a", src.system, SourceStatus.FAILED, "hr.csv: not found", (("people", 2),), stale=True
    )
