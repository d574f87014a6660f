"""A run about one person loads only the people matching needs (issue 17, item 10).

Each webhook job used to load every stored person (1,000,000 people: 9 s and 550 MB a job).
It now looks up by index the people the event concerns and the people that person's accounts
could match; ambiguity is still seen. A store that refuses to hand out everybody proves it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from offboard_audit.core.people import PersonChange
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Person, PersonStatus, Rule
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.engine.revocation import RevocationEngine
from offboard_audit.storage.store import Store
from tests.support.configs import config_with
from tests.support.fakes import T0, FakeAccountSource, FakeHRSource, account, credential, person

NOW = T0 + timedelta(days=10)


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
    opened = Store.open(f"sqlite:///{tmp_path / 'audit.db'}")
    return NoBulkPeople(opened.engine)


def org(staff: int) -> tuple[FakeHRSource, FakeAccountSource]:
    people = [person("E1", "alice@example.com"), person("E2", "bob@example.com")]
    # Someone else whose alias is "bob": the account named "bob" is E2's by the part of E2's email
    # before the @ and E3's by alias, so it is ambiguous between the two.
    people.append(person("E3", "robert@example.com", aliases=("bob",)))
    people += [person(f"S{i}", f"s{i}@example.com") for i in range(staff)]
    hr = FakeHRSource(people=people)
    bob = account("bob")  # no email: its username is all matching has
    bobby = account("bob.smith", emails=("bob@example.com",))
    sys = FakeAccountSource(
        accounts=[bob, bobby], credentials=[credential(bob, "K-bob"), credential(bobby, "K-bs")]
    )
    return hr, sys


def test_a_webhook_termination_loads_only_the_people_matching_needs_and_still_sees_ambiguity(tmp_path, store):
    hr, sys = org(staff=200)
    cfg = config_with(tmp_path, account_sources=[sys.name])
    pipeline = Pipeline(cfg, store, SourceContext(base_dir=tmp_path), instances={"hr": hr, sys.name: sys})
    pipeline.run(NOW)  # the baseline full read (may load everybody)

    store.armed = True
    change = PersonChange("E2", PersonStatus.TERMINATED, NOW - timedelta(hours=1), "bob@example.com")
    outcome = pipeline.run_person("E2", NOW, change)

    rules = {(f.account.account_id, f.rule) for f in outcome.run.findings}
    assert rules == {
        ("bob", Rule.AMBIGUOUS_OWNER),  # E2 by email local part and E3 by alias: never guessed
        ("bob.smith", Rule.CREDENTIAL_AFTER_TERMINATION),
    }
    assert outcome.run.circuit_breaker is None  # one of 203 people: the breaker counts everybody


def test_template_username_rules_fall_back_to_everybody_and_stay_correct(tmp_path, store):
    hr, sys = org(staff=5)
    cfg = config_with(tmp_path, account_sources=[sys.name])
    cfg = replace(
        cfg, matching=replace(cfg.matching, username_rules=("alias", "email_local", "{first}.{last}"))
    )
    pipeline = Pipeline(cfg, store, SourceContext(base_dir=tmp_path), instances={"hr": hr, sys.name: sys})
    pipeline.run(NOW)
    change = PersonChange("E2", PersonStatus.TERMINATED, NOW - timedelta(hours=1), "bob@example.com")
    outcome = pipeline.run_person("E2", NOW, change)
    assert ("bob.smith", Rule.CREDENTIAL_AFTER_TERMINATION) in {
        (f.account.account_id, f.rule) for f in outcome.run.findings
    }


def test_the_revocation_plan_after_a_webhook_termination_looks_up_only_the_findings_people(tmp_path, store):
    # The plan holds the findings of people HR no longer lists as departed, so it needs the
    # people as stored now: by index, for the findings' people, never the whole workforce.
    hr, sys = org(staff=200)
    cfg = config_with(tmp_path, account_sources=[sys.name])
    ctx = SourceContext(base_dir=tmp_path)
    pipeline = Pipeline(cfg, store, ctx, instances={"hr": hr, sys.name: sys})
    pipeline.run(NOW)
    change = PersonChange("E2", PersonStatus.TERMINATED, NOW - timedelta(hours=1), "bob@example.com")
    pipeline.run_person("E2", NOW, change)

    store.armed = True
    plan = RevocationEngine(cfg, store, ctx, "test").plan(NOW, person="E2")

    # The fake system has no revoker, so the leaver's key is held for that, and for nothing else:
    # E2 is seen as departed (a rehired person's finding would be held as no longer departed).
    assert plan.actions == ()
    assert {h.credential_id: h.reason for h in plan.held} == {"K-bs": "source 'sys' has no revoker"}
