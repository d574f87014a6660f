"""A run about one person: who it looks up, what it returns, what it logs, where it pauses.

Holes mutation testing found in ``Pipeline._candidates`` (the plain username inside ``DOMAIN\\user``
and ``user@realm`` names, a username that is an email, the email local part key), in
``Pipeline.run_person`` (the event's decision returned, an unknown employee id, the log line,
the ``before-commit`` test point) and in ``Pipeline.update_person`` (a person recorded from an
event with no HR source configured). Every candidate hole is shown by its outcome: the person the
lookup misses is the one that makes an account ambiguous, so missing them turns an
``ambiguous-owner`` finding into a wrong credential-after-termination finding. In process, on
SQLite.
"""

from __future__ import annotations

import io
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from offboard_audit.core.errors import ConfigError
from offboard_audit.core.people import ChangeOutcome, PersonChange
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import Person, PersonStatus, Rule
from offboard_audit.core.stored import PersonState
from offboard_audit.engine import pipeline as pipeline_module
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.engine.run_record import FaultPoints
from offboard_audit.storage.store import Store
from tests.support.configs import config_with
from tests.support.fakes import T0, FakeAccountSource, account, credential, leaver, person

NOW = T0 + timedelta(days=10)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'audit.db'}")


def stored(store: Store, *people: Person, source: str = "hr") -> None:
    store.save_person_states(source, (), [PersonState(p, p) for p in people], "r-0")


def make(
    tmp_path: Path,
    store: Store,
    sys_: FakeAccountSource,
    hr_names: tuple[str, ...] = ("hr",),
    faults: FaultPoints | None = None,
) -> Pipeline:
    cfg = config_with(tmp_path, account_sources=[sys_.name], hr_names=list(hr_names))
    return Pipeline(
        cfg,
        store,
        SourceContext(base_dir=tmp_path),
        instances={sys_.name: sys_},
        faults=faults or FaultPoints(),
    )


def one_account(username: str) -> FakeAccountSource:
    """One account named ``username`` (no email, no owner attribute) with one active key."""
    acct = account("acct-1", username=username)
    return FakeAccountSource(accounts=[acct], credentials=[credential(acct, "K-1")])


def rules_of_bob(tmp_path: Path, store: Store, username: str) -> set[tuple[str, Rule]]:
    """A targeted run about bob (E2, left) of one account named ``username``: its findings."""
    outcome = make(tmp_path, store, one_account(username)).run_person("E2", NOW)
    return {(f.account.account_id, f.rule) for f in outcome.run.findings}


# --- _candidates: the plain username inside DOMAIN\user and user@realm names -------------------------


@pytest.mark.parametrize(
    "username",
    ["CORP\\bob", "CORP\\EMEA\\bob", "bob@realm.example", "bob@corp@realm.example"],
    ids=["domain", "nested-domain", "realm", "two-at-signs"],
)
def test_the_plain_username_inside_a_qualified_name_finds_the_other_person_it_is_ambiguous_with(
    tmp_path: Path, store: Store, username: str
) -> None:
    # "bob" is E2's by the part of E2's email before the @, and E9's by alias: a qualified name whose
    # plain username is "bob" matches both. The lookup must find E9 by the plain username "bob" (the
    # text after the last backslash, before the first @), or the account is wrongly bob's alone.
    # Both have an address in realm.example: a user@domain name carries the plain username only
    # within the domains of the person's own addresses.
    stored(
        store,
        leaver("E2", T0, email="bob@example.com", aliases=("b.smith@realm.example",)),
        person("E9", "robert@example.com", aliases=("bob", "robert@realm.example")),
    )
    assert rules_of_bob(tmp_path, store, username) == {("acct-1", Rule.AMBIGUOUS_OWNER)}


def test_a_username_that_is_an_email_finds_everybody_with_that_email(tmp_path: Path, store: Store) -> None:
    # E9 carries bob's address as an alias (an email, so not a username): only the email key finds
    # E9, and with E9 the account's email is ambiguous.
    stored(
        store,
        leaver("E2", T0, email="bob@example.com"),
        person("E9", "robert@example.com", aliases=("bob@example.com",)),
    )
    assert rules_of_bob(tmp_path, store, "bob@example.com") == {("acct-1", Rule.AMBIGUOUS_OWNER)}


def test_a_plain_username_finds_the_other_person_whose_email_local_part_it_is(
    tmp_path: Path, store: Store
) -> None:
    # E9 has no alias: only the email local part key ("bob" of bob@other.example) finds E9.
    stored(store, leaver("E2", T0, email="bob@example.com"), person("E9", "bob@other.example"))
    assert rules_of_bob(tmp_path, store, "bob") == {("acct-1", Rule.AMBIGUOUS_OWNER)}


def test_an_account_only_the_leaver_can_own_is_the_leavers(tmp_path: Path, store: Store) -> None:
    # The control for the tests above: nobody else is "bob", so the same names are bob's alone.
    stored(
        store,
        leaver("E2", T0, email="bob@example.com", aliases=("b.smith@realm.example",)),
        person("E9", "robert@example.com", aliases=("robert@realm.example",)),
    )
    for username in ("CORP\\bob", "bob@realm.example", "bob@example.com", "bob"):
        assert rules_of_bob(tmp_path, store, username) == {("acct-1", Rule.CREDENTIAL_AFTER_TERMINATION)}


# --- run_person: the decision it returns, an unknown person --------------------------------------


def test_a_run_without_an_event_returns_no_decision(tmp_path: Path, store: Store) -> None:
    stored(store, leaver("E2", T0, email="bob@example.com"))
    outcome = make(tmp_path, store, one_account("bob")).run_person("E2", NOW)
    assert outcome.decision is None
    assert (outcome.person.source, outcome.person.employee_id) == ("hr", "E2")


def test_a_run_with_an_event_returns_the_events_decision(tmp_path: Path, store: Store) -> None:
    stored(store, person("E2", "bob@example.com"))
    change = PersonChange("E2", PersonStatus.TERMINATED, NOW - timedelta(hours=1), "bob@example.com")
    outcome = make(tmp_path, store, one_account("bob")).run_person("E2", NOW, change)
    decision = outcome.decision
    assert decision is not None
    assert decision.outcome is ChangeOutcome.APPLY
    assert decision.reason == "terminated from the event"
    assert decision.before is not None and decision.before.person.status is PersonStatus.ACTIVE
    assert decision.after is not None and decision.after.person.status is PersonStatus.TERMINATED
    assert {(f.account.account_id, f.rule) for f in outcome.run.findings} == {
        ("acct-1", Rule.CREDENTIAL_AFTER_TERMINATION)
    }


def test_a_run_about_an_unknown_employee_id_is_a_config_error_naming_it_and_starts_no_run(
    tmp_path: Path, store: Store
) -> None:
    stored(store, leaver("E2", T0, email="bob@example.com"))
    p = make(tmp_path, store, one_account("bob"))
    with pytest.raises(ConfigError) as raised:
        p.run_person("E404", NOW)
    assert str(raised.value) == "no stored person with employee id 'E404'"
    assert store.latest_run("targeted") is None


# --- run_person: the log line and the before-commit test point ------------------------------------


def test_a_targeted_run_logs_its_run_id_the_person_and_their_status(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    stored(store, leaver("E2", T0, email="bob@example.com"))
    caplog.set_level(logging.INFO, logger=pipeline_module.__name__)
    outcome = make(tmp_path, store, one_account("bob")).run_person("E2", NOW)
    messages = [r.getMessage() for r in caplog.records if r.name == pipeline_module.__name__]
    # The run id is random; the line must name the one the result carries.
    assert messages == [f"targeted reconcile {outcome.run.run_id} of hr/E2 (terminated)"]


class _Stdin:
    """Answers the pause of a test point, noting what was stored when it paused."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.findings_at_pause: list[int] = []

    def readline(self) -> str:
        self.findings_at_pause.append(len(self.store.stored_findings()))
        return "\n"


def test_a_targeted_run_pauses_at_the_before_commit_test_point_before_storing_findings(
    tmp_path: Path, store: Store
) -> None:
    stored(store, leaver("E2", T0, email="bob@example.com"))
    stdin, stderr = _Stdin(store), io.StringIO()
    faults = FaultPoints(pause_at="before-commit", stdin=stdin, stderr=stderr)
    outcome = make(tmp_path, store, one_account("bob"), faults=faults).run_person("E2", NOW)
    assert stderr.getvalue() == "PAUSED before-commit\n"
    assert stdin.findings_at_pause == [0]  # paused once, nothing stored yet
    assert len(outcome.run.findings) == 1
    assert len(store.stored_findings()) == 1


# --- update_person: the source of a person recorded from an event --------------------------------


@pytest.mark.parametrize(
    ("hr_names", "source"), [((), "webhook"), (("workday",), "workday")], ids=["no-hr-source", "hr-source"]
)
def test_a_person_recorded_from_an_event_belongs_to_the_first_hr_source_else_to_webhook(
    tmp_path: Path, store: Store, hr_names: tuple[str, ...], source: str
) -> None:
    p = make(tmp_path, store, one_account("dana"), hr_names=hr_names)
    change = PersonChange("E7", PersonStatus.TERMINATED, T0, "dana@example.com", T0)
    update = p.update_person(change, "r-1")
    assert update.applied
    assert update.person is not None
    assert (update.person.source, update.person.employee_id) == (source, "E7")
    assert [(q.source, q.employee_id) for q in store.load_people()] == [(source, "E7")]
