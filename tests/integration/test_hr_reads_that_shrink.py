"""Full HR reads that lose people (issue 10, items 6, 10 and 11), through the real CSV HR
source and the pipeline, on SQLite and on PostgreSQL: terminations are sticky, a bad row keeps
the last good record, the breaker counts missing people and small organisations, and
``accept_hr`` releases the breaker for its own run."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import PersonStatus, Rule
from offboard_audit.core.runs import RunResult, SourceRun
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.storage.store import Store
from tests.support.configs import HR_CSV_HEADER, config_with
from tests.support.fakes import FakeAccountSource, account, credential

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
ALICE = "E1,alice@example.com,Alice,active,,"
BOB = "E2,bob@example.com,Bob,terminated,2026-05-01,"
CAROL = "E3,carol@example.com,Carol,terminated,2026-05-02,"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store.open(f"sqlite:///{tmp_path / 'audit.db'}")
    return Store.open(request.getfixturevalue("postgres_url"))


def staff(n: int) -> list[str]:
    return [f"S{i},s{i}@example.com,S{i},active,," for i in range(n)]


class Org:
    """The real hr_csv source on ``hr.csv`` and one fake account source."""

    def __init__(
        self, tmp_path: Path, store: Store, rows: list[str], policy: dict[str, object] | None = None
    ):
        self.path = tmp_path / "hr.csv"
        self.write(rows)
        self.store = store
        accts = [account(n, emails=(f"{n}@example.com",)) for n in ("alice", "bob", "carol")]
        self.sys = FakeAccountSource(
            accounts=accts, credentials=[credential(a, f"K-{a.account_id}") for a in accts]
        )
        config = config_with(tmp_path, account_sources=["sys"], policy=policy)
        self.pipeline = Pipeline(config, store, SourceContext(base_dir=tmp_path), instances={"sys": self.sys})

    def write(self, rows: list[str]) -> None:
        self.path.write_text(HR_CSV_HEADER + "\n".join(rows) + "\n")

    def run(self, hours: float = 0, accept_hr: bool = False) -> RunResult:
        return self.pipeline.run(NOW + timedelta(hours=hours), accept_hr=accept_hr)

    def open_findings(self, employee_id: str) -> set[str]:
        return {f.finding_id for f in self.store.list_findings(["open"], person=employee_id)}

    def person(self, employee_id: str) -> tuple[PersonStatus, datetime | None]:
        (p,) = [p for p in self.store.load_people() if p.employee_id == employee_id]
        return p.status, p.terminated_at


def hr_run(result: RunResult) -> SourceRun:
    return next(s for s in result.sources if s.name == "hr")


def orphans(result: RunResult) -> set[str]:
    return {f.account.account_id for f in result.findings if f.rule is Rule.ORPHAN_ACCOUNT}


def test_departed_people_dropped_from_the_end_of_the_export_stay_terminated_with_open_findings(
    tmp_path: Path, store: Store
) -> None:
    org = Org(tmp_path, store, [ALICE, *staff(20), BOB, CAROL])
    org.run()
    bob, carol = org.open_findings("E2"), org.open_findings("E3")
    assert bob and carol

    org.write([ALICE, *staff(20)])  # the export lost its last rows: the two leavers
    result = org.run(1)

    assert result.circuit_breaker is None
    assert org.open_findings("E2") == bob and org.open_findings("E3") == carol
    assert orphans(result) == set()  # their accounts still belong to them
    assert org.person("E2") == (PersonStatus.TERMINATED, datetime(2026, 5, 1, tzinfo=UTC))
    hr = hr_run(result)
    assert dict(hr.counts)["kept_terminated"] == 2 and dict(hr.counts)["missing"] == 2
    assert any("sticky" in w and "E2, E3" in w for w in hr.warnings)
    # Still absent on the next read: still kept, and no longer "missing" from the last read.
    again = org.run(2)
    assert org.open_findings("E2") == bob and "missing" not in dict(hr_run(again).counts)


def test_a_bad_row_keeps_the_last_good_record_of_that_person(tmp_path: Path, store: Store) -> None:
    org = Org(tmp_path, store, [ALICE, *staff(20), BOB, CAROL])
    org.run()
    bob = org.open_findings("E2")

    org.write(
        [
            "E1,alice@example.com,Alice,retired,,",  # unknown status
            *staff(20),
            "E2,bob@example.com,Bob,terminated,31/05/2026,",  # not an ISO date
            CAROL,
        ]
    )
    result = org.run(1)

    assert org.open_findings("E2") == bob
    assert org.person("E2") == (PersonStatus.TERMINATED, datetime(2026, 5, 1, tzinfo=UTC))
    assert org.person("E1") == (PersonStatus.ACTIVE, None)
    assert "alice" not in orphans(result)
    hr = hr_run(result)
    assert hr.status.value == "degraded" and any("last good record of E1, E2" in w for w in hr.warnings)


def test_an_explicit_active_row_clears_a_sticky_termination(tmp_path: Path, store: Store) -> None:
    org = Org(tmp_path, store, [ALICE, *staff(20), BOB, CAROL])
    org.run()
    org.write([ALICE, *staff(20), CAROL])
    org.run(1)
    assert org.person("E2")[0] is PersonStatus.TERMINATED

    org.write([ALICE, *staff(20), "E2,bob@example.com,Bob,active,,", CAROL])  # rehired
    org.run(2)
    assert org.person("E2") == (PersonStatus.ACTIVE, None)
    assert org.open_findings("E2") == set()


def test_breaker_trips_when_too_many_people_of_the_last_read_are_missing(
    tmp_path: Path, store: Store
) -> None:
    org = Org(tmp_path, store, [ALICE, *staff(30), BOB, CAROL])
    org.run()
    carol = org.open_findings("E3")
    # Seven of 33 (21%) rows vanish, alice's among them, and in the same run carol's key is
    # deleted in the system.
    org.write([*staff(24), BOB, CAROL])
    org.sys.credentials = [c for c in org.sys.credentials if c.credential_id != "K-carol"]

    result = org.run(1)

    assert result.circuit_breaker is not None
    assert "7 of the 33 people" in result.circuit_breaker and "max_missing_people" in result.circuit_breaker
    # A suspicious read is not the new baseline, removes nobody (alice's account is not an
    # orphan) and calls nothing resolved.
    assert {p.employee_id for p in store.load_people()} >= {"E1", "S25", "S29"}
    assert orphans(result) == set()
    assert org.open_findings("E3") == carol
    assert org.run(2).circuit_breaker is not None  # holds until accepted

    accepted = org.run(3, accept_hr=True)
    assert accepted.circuit_breaker is None
    assert org.pipeline.accepted_breaker is not None and "max_missing_people" in org.pipeline.accepted_breaker
    assert org.open_findings("E3") == set() and orphans(accepted) == {"alice"}
    assert not {"E1", "S29"} & {p.employee_id for p in store.load_people()}
    assert org.run(4).circuit_breaker is None


def test_a_feed_that_lists_the_leavers_as_active_again_trips_the_breaker_and_resolves_nothing(
    tmp_path: Path, store: Store
) -> None:
    gone = [f"T{i},t{i}@example.com,T{i},terminated,2026-04-0{i + 1}," for i in range(4)]
    org = Org(tmp_path, store, [ALICE, *staff(30), BOB, CAROL, *gone])
    org.run()
    bob, carol = org.open_findings("E2"), org.open_findings("E3")
    assert bob and carol
    # An export job that reset every status to 'active': the 6 leavers come back, nobody is
    # newly terminated or missing.
    flipped = [
        "E2,bob@example.com,Bob,active,,",
        "E3,carol@example.com,Carol,active,,",
        *(f"T{i},t{i}@example.com,T{i},active,," for i in range(4)),
    ]
    org.write([ALICE, *staff(30), *flipped])

    result = org.run(1)

    assert result.circuit_breaker is not None
    assert (
        "6 of 6 people terminated in the last good HR read (100.0%) are active again"
        in result.circuit_breaker
    )
    assert "max_rehires" in result.circuit_breaker
    # Not the new baseline: the leavers stay terminated, their findings open, nothing resolved.
    assert org.person("E2") == (PersonStatus.TERMINATED, datetime(2026, 5, 1, tzinfo=UTC))
    assert org.person("T0")[0] is PersonStatus.TERMINATED
    assert org.open_findings("E2") == bob and org.open_findings("E3") == carol
    assert store.list_findings(["resolved"]) == []
    assert org.run(2).circuit_breaker is not None  # holds until accepted
    assert org.open_findings("E2") == bob

    accepted = org.run(3, accept_hr=True)
    assert accepted.circuit_breaker is None
    assert org.pipeline.accepted_breaker is not None and "max_rehires" in org.pipeline.accepted_breaker
    assert org.person("E2") == (PersonStatus.ACTIVE, None) and org.open_findings("E2") == set()


def test_one_leaver_rehired_does_not_trip_the_breaker(tmp_path: Path, store: Store) -> None:
    gone = [f"T{i},t{i}@example.com,T{i},terminated,2026-04-0{i + 1}," for i in range(4)]
    org = Org(tmp_path, store, [ALICE, *staff(20), BOB, CAROL, *gone])
    org.run()
    org.write([ALICE, *staff(20), "E2,bob@example.com,Bob,active,,", CAROL, *gone])  # 1 of 6
    assert org.run(1).circuit_breaker is None
    assert org.person("E2") == (PersonStatus.ACTIVE, None) and org.open_findings("E2") == set()


def test_terminated_people_dropped_from_the_export_do_not_trip_the_breaker(
    tmp_path: Path, store: Store
) -> None:
    gone = [f"T{i},t{i}@example.com,T{i},terminated,2026-04-0{i + 1}," for i in range(4)]
    org = Org(tmp_path, store, [ALICE, *staff(15), *gone])  # 20 people, 4 of them terminated
    org.run()
    org.write([ALICE, *staff(15)])  # the export dropped its 4 leavers: 20%, more than 3
    result = org.run(1)
    assert result.circuit_breaker is None
    assert dict(hr_run(result).counts)["kept_terminated"] == 4
    assert {f"T{i}" for i in range(4)} <= {p.employee_id for p in store.load_people()}
    # One active person more missing on top of them still counts alone (1 of 20, not 5).
    org.write([*staff(15)])
    assert org.run(2).circuit_breaker is None
    org.write(staff(11))  # 4 more active people missing now: 4 of 16, more than 3
    reason = org.run(3).circuit_breaker
    assert reason is not None and "are missing from this one and not terminated" in reason


def test_missing_people_up_to_min_breaker_count_do_not_trip_the_breaker(tmp_path: Path, store: Store) -> None:
    org = Org(tmp_path, store, [ALICE, *staff(8), BOB, CAROL])  # 11 people
    org.run()
    org.write([ALICE, *staff(5), BOB, CAROL])  # 3 missing: 27%, but not more than 3
    assert org.run(1).circuit_breaker is None


def test_one_new_termination_in_a_small_organisation_does_not_trip_the_breaker(
    tmp_path: Path, store: Store
) -> None:
    org = Org(tmp_path, store, [ALICE, *staff(9)])  # 10 people
    org.run()
    org.write([ALICE, *staff(8), "S8,s8@example.com,S8,terminated,2026-05-30,"])  # 10%
    assert org.run(1).circuit_breaker is None
    gone = [f"S{i},s{i}@example.com,S{i},terminated,2026-05-31," for i in range(4)]
    org.write([ALICE, *gone, *staff(9)[4:8], "S8,s8@example.com,S8,terminated,2026-05-30,"])
    # 4 more of the 9 still at work (S8 left in the last good read): 44% and more than
    # min_breaker_count (3)
    reason = org.run(2).circuit_breaker
    assert reason is not None and "4 of 9 people" in reason and "min_breaker_count = 3" in reason


def test_min_breaker_count_and_max_missing_people_are_configurable(tmp_path: Path, store: Store) -> None:
    org = Org(tmp_path, store, [ALICE, *staff(9)], policy={"min_breaker_count": 0, "max_missing_people": 0.5})
    org.run()
    org.write([ALICE, *staff(8), "S8,s8@example.com,S8,terminated,2026-05-30,"])
    reason = org.run(1).circuit_breaker
    assert reason is not None and "1 of 10 people" in reason
    org.run(2, accept_hr=True)
    org.write([ALICE, *staff(5)])  # 4 of 10 missing: 40%, under 50%
    assert org.run(3).circuit_breaker is None


def test_accept_hr_never_releases_a_failed_hr_read(tmp_path: Path, store: Store) -> None:
    org = Org(tmp_path, store, [ALICE, *staff(5), BOB])
    org.run()
    org.path.unlink()
    result = org.run(1, accept_hr=True)
    assert result.circuit_breaker is not None and "HR source failed" in result.circuit_breaker
    assert org.pipeline.accepted_breaker is None
    assert org.person("E2")[0] is PersonStatus.TERMINATED


def test_unchanged_hr_rows_write_nothing(tmp_path: Path, store: Store) -> None:
    org = Org(tmp_path, store, [ALICE, *staff(5), BOB])
    org.run()
    before = {s.person.employee_id: s.version for s in store.load_person_states()}
    org.run(1)
    assert {s.person.employee_id: s.version for s in store.load_person_states()} == before
    # A person whose row is unchanged keeps the same stored record (and version).
    org.sys.credentials = [replace(c, active=False) for c in org.sys.credentials]
    org.run(2)
    assert {s.person.employee_id: s.version for s in store.load_person_states()} == before
