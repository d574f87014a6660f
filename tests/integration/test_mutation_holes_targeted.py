"""A run about one person: which stored people it considers, and which breaker holds it.

Holes mutation testing found (issue 10, batch 3) in ``Pipeline._candidates`` (the people a targeted
run looks up by index: never everybody with the indexed username rules, the people an account's
owner attributes name, an account labelled with no configured source), ``held_hr_breaker`` (the
newest *full* HR run decides) and ``webhook_breaker`` (webhook terminations count only since the
last HR read). In process, on SQLite.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from offboard_audit.core.jobs import HREvent, HREventType, Job, JobKind, JobState
from offboard_audit.core.people import PersonChange
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Person, PersonStatus, Rule
from offboard_audit.core.runs import RunResult
from offboard_audit.core.stored import PersonState
from offboard_audit.engine.hr import held_hr_breaker, webhook_breaker
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.storage.store import Store
from offboard_audit.storage.webhook_store import WebhookStore, new_job_id
from tests.support.configs import config_with
from tests.support.fakes import T0, FakeAccountSource, FakeHRSource, account, credential, person

NOW = T0 + timedelta(days=10)
TRIPPED = "5 of 20 people (25.0%) newly terminated since the last good HR read"


class NoBulkPeople(Store):
    """A store whose whole-workforce reads fail the test once ``armed``."""

    armed = False

    def load_people(self, source: str | None = None) -> list[Person]:
        assert not self.armed, "the run loaded every stored person"
        return super().load_people(source)

    def load_person_states(self, source: str | None = None):  # type: ignore[no-untyped-def]
        assert not self.armed, "the run loaded every stored person state"
        return super().load_person_states(source)


@pytest.fixture
def store(tmp_path: Path) -> NoBulkPeople:
    return NoBulkPeople(Store.open(f"sqlite:///{tmp_path / 'audit.db'}").engine)


def staff() -> list[Person]:
    """bob (E2) leaves; carol (E3) stays; 20 people in all."""
    people = [person("E1", "alice@example.com"), person("E2", "bob@example.com")]
    people.append(person("E3", "carol@example.com"))
    return people + [person(f"S{i}", f"s{i}@example.com") for i in range(17)]


def pipeline(
    tmp_path: Path, store: Store, sys: FakeAccountSource, rules: tuple[str, ...] | None = None
) -> Pipeline:
    cfg = config_with(tmp_path, account_sources=[sys.name])
    if rules is not None:
        cfg = replace(cfg, matching=replace(cfg.matching, username_rules=rules))
    hr = FakeHRSource(people=staff())
    return Pipeline(cfg, store, SourceContext(base_dir=tmp_path), instances={"hr": hr, sys.name: sys})


def terminate_bob(p: Pipeline, store: NoBulkPeople) -> set[tuple[str, Rule]]:
    """The baseline full read, then a webhook termination of bob: his findings (account, rule)."""
    p.run(NOW)
    store.armed = True
    change = PersonChange("E2", PersonStatus.TERMINATED, NOW - timedelta(hours=1), "bob@example.com")
    outcome = p.run_person("E2", NOW, change)
    return {(f.account.account_id, f.rule) for f in outcome.run.findings}


# --- the people a targeted run considers -------------------------------------------------------


@pytest.mark.parametrize(
    "rules", [("alias",), ("email_local",), ("alias", "email_local")], ids=["alias", "email_local", "both"]
)
def test_with_only_indexed_username_rules_a_targeted_run_never_loads_everybody(
    tmp_path: Path, store: NoBulkPeople, rules: tuple[str, ...]
) -> None:
    bob = account("bob.smith", emails=("bob@example.com",))
    sys = FakeAccountSource(accounts=[bob], credentials=[credential(bob, "K-bob")])
    findings = terminate_bob(pipeline(tmp_path, store, sys, rules), store)
    assert findings == {("bob.smith", Rule.CREDENTIAL_AFTER_TERMINATION)}


@pytest.mark.parametrize(
    "owner_attribute",
    [("employeeNumber", "E3"), ("mail", "carol@example.com")],
    ids=["employee-id-attribute", "email-attribute"],
)
def test_an_account_whose_owner_attribute_names_somebody_else_is_not_the_leavers(
    tmp_path: Path, store: NoBulkPeople, owner_attribute: tuple[str, str]
) -> None:
    # Named "bob" (bob's email before the @), but the source's owner attribute says carol's: a full
    # run links it to carol, so a run about bob must not take it (and revoke its key) for bob's.
    carols = account("bob", attributes=(owner_attribute,))
    bobs = account("bob.smith", emails=("bob@example.com",))
    sys = FakeAccountSource(
        accounts=[carols, bobs], credentials=[credential(carols, "K-carol"), credential(bobs, "K-bob")]
    )
    findings = terminate_bob(pipeline(tmp_path, store, sys), store)
    assert findings == {("bob.smith", Rule.CREDENTIAL_AFTER_TERMINATION)}


def test_an_account_labelled_with_no_configured_source_is_matched_by_the_default_attributes(
    tmp_path: Path, store: NoBulkPeople
) -> None:
    legacy = account("bob-legacy", source="legacy", emails=("bob@example.com",))
    sys = FakeAccountSource(accounts=[legacy], credentials=[credential(legacy, "K-legacy")])
    findings = terminate_bob(pipeline(tmp_path, store, sys), store)
    assert findings == {("bob-legacy", Rule.CREDENTIAL_AFTER_TERMINATION)}


# --- held_hr_breaker: the newest full HR run decides ----------------------------------------------


def record(store: Store, run_id: str, kind: str, hours: int, breaker: str | None = None) -> None:
    """A run of ``kind`` started ``hours`` after NOW that read nothing, finished a minute later."""
    started = NOW + timedelta(hours=hours)
    store.start_run(run_id, started, kind)
    assert store.finish_run(RunResult(run_id, started, started + timedelta(minutes=1), (), (), breaker))


@pytest.mark.parametrize(
    ("audit", "refresh", "held"),
    [
        ((0, TRIPPED), (1, None), None),
        ((1, TRIPPED), (0, None), f"the HR circuit breaker holds since run r-audit: {TRIPPED}"),
        ((0, None), (1, TRIPPED), f"the HR circuit breaker holds since run r-refresh: {TRIPPED}"),
    ],
    ids=["older-audit-tripped", "newer-audit-tripped", "newer-refresh-tripped"],
)
def test_the_newer_of_the_last_audit_and_hr_refresh_decides_whether_the_hr_breaker_holds(
    store: Store, audit: tuple[int, str | None], refresh: tuple[int, str | None], held: str | None
) -> None:
    record(store, "r-audit", "audit", *audit)
    record(store, "r-refresh", "hr_refresh", *refresh)
    assert held_hr_breaker(store) == held


def test_a_targeted_run_whose_own_breaker_tripped_does_not_hold_the_hr_breaker(store: Store) -> None:
    record(store, "r-audit", "audit", 0)
    record(store, "r-one-person", "targeted", 1, "4 of 20 people (20.0%) terminated through the HR webhook")
    assert held_hr_breaker(store) is None


# --- webhook_breaker: webhook terminations since the last HR read ----------------------------------


def accept_termination(store: Store, employee_id: str, hours: int) -> None:
    """A webhook termination of ``employee_id`` received ``hours`` after NOW (its job not run)."""
    at = NOW + timedelta(hours=hours)
    job = Job(new_job_id(), JobKind.TERMINATE, employee_id, JobState.QUEUED, at, f"evt-{employee_id}")
    event = HREvent(f"evt-{employee_id}", HREventType.TERMINATED, employee_id, None, at, at, at, "{}")
    assert WebhookStore(store).accept(event, job)


@pytest.mark.parametrize(
    ("received", "reason"),
    [
        (-1, None),
        (
            1,
            "4 of 20 people (20.0%) terminated through the HR webhook since the last good HR read, "
            "above policy.max_new_terminations = 5.0% and policy.min_breaker_count = 3",
        ),
    ],
    ids=["received-before-the-hr-read", "received-after-it"],
)
def test_only_webhook_terminations_received_since_the_last_hr_read_count_towards_the_breaker(
    tmp_path: Path, store: Store, received: int, reason: str | None
) -> None:
    people = staff()
    store.save_person_states("hr", (), [PersonState(p, p) for p in people], "r-0")
    for eid in ("S0", "S1", "S2", "S3"):
        accept_termination(store, eid, received)
    record(store, "r-audit", "audit", 0)
    before, after = [people[0]], [person("E1", "alice.new@example.com")]  # terminates nobody
    config = config_with(tmp_path)
    assert webhook_breaker(store, before, after, config, NOW + timedelta(hours=2)) == reason
