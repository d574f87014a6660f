"""HR webhook events must act on the person they name, in the order HR meant (issue 10, items 2
and 3): signed events go through the real webhook app, the daemon runs their jobs in process,
and the real revocation engine acts on fake systems whose every change is logged."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from offboard_audit.core.records import Person, PersonStatus, Rule
from offboard_audit.daemon.metrics import Metrics
from offboard_audit.daemon.webhook import WebhookSettings, create_app
from offboard_audit.storage.webhook_store import WebhookStore
from tests.support.daemon import SECRET, event_body, signed_headers
from tests.support.daemon_world import NOW, World, world
from tests.support.fake_connector import read_state_file
from tests.support.fakes import account, credential

EARLIER = NOW - timedelta(minutes=30)
LATER = NOW - timedelta(minutes=10)


class Runner:
    """Jobs are run by the test (``Hook.run``), not in the background."""

    def submit(self, job_id: str) -> None:
        pass


class Hook:
    """The webhook app of one world: post signed events, run their jobs, read their status."""

    def __init__(self, w: World) -> None:
        self.w = w
        app = create_app(
            store=w.store,
            events=WebhookStore(w.store),
            runner=Runner(),
            metrics=Metrics(),
            settings=WebhookSettings(SECRET.encode()),
            clock=w.clock,
            node="n1",
        )
        self.client = TestClient(app)

    def send(
        self,
        employee_id: str,
        event: str = "employee.terminated",
        effective_at: datetime = LATER,
        email: str | None = None,
    ) -> dict[str, Any]:
        """POST the event, run its job to the end, return the job as GET reports it."""
        body = event_body(employee_id, event, effective_at, email)
        r = self.client.post(
            "/hooks/hr",
            content=body,
            headers=signed_headers(body, timestamp=int(self.w.clock.now.timestamp())),
        )
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        self.w.daemon.run_job(job_id)
        status: dict[str, Any] = self.client.get(f"/hooks/hr/jobs/{job_id}").json()
        return status


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "sqlite" else str(request.getfixturevalue("postgres_url"))


def person(w: World, employee_id: str) -> Person | None:
    return next((p for p in w.store.load_people() if p.employee_id == employee_id), None)


def undo_on_rehire(w: World) -> None:
    w.daemon.config = replace(w.config, webhook=replace(w.config.webhook, undo_on_rehire=True))


# --- item 2: the event's employee id decides who it is about ---------------------------------


def test_termination_with_unknown_id_and_an_active_employees_email_fails_as_a_conflict_and_changes_nothing(
    tmp_path: Path, db_url: str | None
) -> None:
    w = world(tmp_path, real_engine=True, db_url=db_url)
    w.daemon.run_full("audit")
    runs_before = w.store.latest_run("targeted")

    job = Hook(w).send("E404", email="alice@example.com")

    assert job["state"] == "failed" and job["event_status"] == "conflict"
    assert "conflict" in job["error"] and "'E1'" in job["error"] and "alice@example.com" in job["error"]
    alice = person(w, "E1")
    assert alice is not None and alice.status is PersonStatus.ACTIVE
    assert person(w, "E404") is None  # no person written
    assert w.store.latest_run("targeted") == runs_before  # no reconcile ran
    assert w.changes() == []  # nothing revoked


def test_event_for_a_known_employee_with_another_employees_email_is_a_conflict(tmp_path: Path) -> None:
    w = world(tmp_path, real_engine=True)
    w.daemon.run_full("audit")

    job = Hook(w).send("E2", email="alice@example.com")

    assert job["state"] == "failed" and job["event_status"] == "conflict"
    bob, alice = person(w, "E2"), person(w, "E1")
    assert bob is not None and bob.status is PersonStatus.ACTIVE and bob.email == "bob@example.com"
    assert alice is not None and alice.status is PersonStatus.ACTIVE
    assert w.changes() == []


def test_rehire_with_unknown_id_and_a_leavers_email_does_not_reactivate_the_leaver(tmp_path: Path) -> None:
    w = world(tmp_path, real_engine=True, carol_terminated=True)
    undo_on_rehire(w)
    w.daemon.run_full("audit")
    revoked = w.changes()
    assert sorted(revoked) == ["F-carol", "K-carol"]

    job = Hook(w).send("E404", "employee.rehired", email="carol@example.com")

    assert job["state"] == "failed" and job["event_status"] == "conflict"
    carol = person(w, "E3")
    assert carol is not None and carol.status is PersonStatus.TERMINATED
    assert w.changes("undo") == [] and person(w, "E404") is None


def test_person_known_by_neither_id_nor_email_is_recorded_from_the_event(tmp_path: Path) -> None:
    w = world(tmp_path, real_engine=True)
    w.daemon.run_full("audit")

    job = Hook(w).send("E77", email="New.Hire@Example.com")

    assert job["state"] == "done" and job["event_status"] == "applied"
    recorded = person(w, "E77")
    assert recorded is not None
    assert (recorded.status, recorded.terminated_at, recorded.email, recorded.source) == (
        PersonStatus.TERMINATED,
        LATER,
        "new.hire@example.com",
        "hr",
    )


@pytest.mark.parametrize("event", ["employee.terminated", "employee.rehired"])
def test_an_event_whose_id_differs_from_a_stored_persons_only_in_case_fails_as_a_conflict_and_changes_nothing(
    tmp_path: Path, event: str
) -> None:
    # Matching and the people index compare employee ids trimmed and case insensitively: "e2" is
    # E2 to them. Recording "e2" as a new person would leave bob (E2) active, and make every
    # account of his ambiguous between him and that phantom for good (never revoked).
    w = world(tmp_path, real_engine=True)
    w.daemon.run_full("audit")
    before = sorted(w.store.load_people(), key=lambda p: p.employee_id)

    job = Hook(w).send("e2", event)

    assert job["state"] == "failed" and job["event_status"] == "conflict", job
    assert "conflict" in job["error"] and "'e2'" in job["error"] and "'E2'" in job["error"]
    assert sorted(w.store.load_people(), key=lambda p: p.employee_id) == before
    assert w.changes() == [] and w.changes("undo") == []


def test_termination_revokes_and_logs_only_the_person_the_event_names(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    w = world(tmp_path, real_engine=True)
    w.daemon.run_full("audit")
    caplog.set_level(logging.INFO)

    job = Hook(w).send("E2", email="bob@example.com")

    assert job["state"] == "done" and job["event_status"] == "applied", job
    assert sorted(w.changes()) == ["F-bob", "K-bob"]
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("offboard_audit.daemon")]
    assert any("(terminate for E2): done" in line for line in lines)
    assert not any("E1" in line or "alice" in line for line in lines)


# --- item 3: events are applied in the order of their effective_at ---------------------------


def test_retried_termination_older_than_an_applied_rehire_is_superseded_and_revokes_nothing(
    tmp_path: Path, db_url: str | None
) -> None:
    w = world(tmp_path, real_engine=True, db_url=db_url)
    undo_on_rehire(w)
    w.daemon.run_full("audit")
    hook = Hook(w)
    assert hook.send("E2", effective_at=EARLIER)["state"] == "done"
    assert sorted(w.changes()) == ["F-bob", "K-bob"]
    assert hook.send("E2", "employee.rehired", effective_at=LATER)["state"] == "done"
    assert sorted(w.changes("undo")) == ["F-bob", "K-bob"]

    retried = hook.send("E2", effective_at=EARLIER)  # HR retries the first termination

    assert retried["state"] == "superseded" and retried["event_status"] == "superseded"
    assert "superseded" in retried["detail"] and "employee.rehired" in retried["detail"]
    bob = person(w, "E2")
    assert bob is not None and bob.status is PersonStatus.ACTIVE
    assert sorted(w.changes()) == ["F-bob", "K-bob"]  # nothing revoked again


def test_rehire_older_than_an_applied_termination_is_superseded(tmp_path: Path) -> None:
    w = world(tmp_path, real_engine=True)
    undo_on_rehire(w)
    w.daemon.run_full("audit")
    hook = Hook(w)
    assert hook.send("E2", effective_at=LATER)["state"] == "done"

    late = hook.send("E2", "employee.rehired", effective_at=EARLIER)

    assert late["state"] == "superseded"
    bob = person(w, "E2")
    assert bob is not None and bob.status is PersonStatus.TERMINATED and bob.terminated_at == LATER
    assert w.changes("undo") == []


def test_superseded_terminations_do_not_count_towards_the_webhook_breaker(tmp_path: Path) -> None:
    w = world(tmp_path, staff=17, real_engine=True)  # 20 people
    w.daemon.run_full("audit")
    hook = Hook(w)
    for staff in ("S0", "S1", "S2"):
        assert hook.send(staff, effective_at=LATER)["state"] == "done"
        assert (
            hook.send(staff, "employee.rehired", effective_at=LATER + timedelta(minutes=1))["state"] == "done"
        )
    for staff in ("S0", "S1", "S2"):
        assert hook.send(staff, effective_at=EARLIER)["state"] == "superseded"
    # Three applied terminations and three superseded ones: bob's is the 4th applied, not the 7th.
    assert WebhookStore(w.store).terminations_since(None) == {"S0", "S1", "S2"}
    job = hook.send("E2")
    assert job["state"] == "failed" and "4 of 20 people" in job["error"]


# --- item 3: a stale HR file row against a newer webhook event --------------------------------


def test_an_unchanged_stale_hr_row_does_not_undo_a_newer_webhook_termination(
    tmp_path: Path, db_url: str | None
) -> None:
    w = world(tmp_path, real_engine=True, policy={"auto_revoke": False}, db_url=db_url)
    w.daemon.run_full("audit")
    assert Hook(w).send("E2")["state"] == "done"
    bob_findings = {f.finding_id for f in w.store.list_findings(["open"], person="E2")}
    assert len(bob_findings) == 2

    w.clock.now = NOW + timedelta(hours=1)
    result = w.daemon.run_full("audit")  # the export still lists bob as active

    assert result is not None and result.circuit_breaker is None
    bob = person(w, "E2")
    assert bob is not None and bob.status is PersonStatus.TERMINATED and bob.terminated_at == LATER
    assert {f.finding_id for f in w.store.list_findings(["open"], person="E2")} == bob_findings
    assert {f.finding_id for f in result.findings} >= bob_findings


def test_a_changed_hr_row_wins_over_an_earlier_webhook_change(tmp_path: Path, db_url: str | None) -> None:
    w = world(tmp_path, real_engine=True, policy={"auto_revoke": False}, carol_terminated=True, db_url=db_url)
    w.daemon.run_full("audit")
    assert Hook(w).send("E3", "employee.rehired", effective_at=LATER)["state"] == "done"

    w.clock.now = NOW + timedelta(hours=1)
    w.daemon.run_full("audit")  # the export still shows carol's old termination: not news
    carol = person(w, "E3")
    assert carol is not None and carol.status is PersonStatus.ACTIVE

    # The export changes carol's row: newer information than the webhook event, so it wins.
    w.hr((tmp_path / "hr.csv").read_text().replace("2026-04-01T00:00:00+00:00", "2026-05-04T09:30:00+00:00"))
    w.clock.now = NOW + timedelta(hours=2)
    w.daemon.run_full("audit")
    carol = person(w, "E3")
    assert carol is not None and carol.status is PersonStatus.TERMINATED
    assert carol.terminated_at == datetime(2026, 5, 4, 9, 30, tzinfo=UTC)


def test_a_webhook_event_older_than_a_status_change_read_from_the_hr_file_is_superseded(
    tmp_path: Path,
) -> None:
    w = world(tmp_path, real_engine=True, policy={"auto_revoke": False})
    w.daemon.run_full("audit")
    w.hr(
        (tmp_path / "hr.csv")
        .read_text()
        .replace("E2,bob@example.com,Bob,active,,", "E2,bob@example.com,Bob,terminated,2026-05-04,")
    )
    w.clock.now = NOW + timedelta(hours=1)
    w.daemon.run_full("audit")  # the status change is read at NOW + 1h

    late = Hook(w).send("E2", "employee.rehired", effective_at=NOW + timedelta(minutes=30))

    assert late["state"] == "superseded" and "hr:hr run" in late["detail"]
    bob = person(w, "E2")
    assert bob is not None and bob.status is PersonStatus.TERMINATED


# --- identifiers in one Unicode form ------------------------------------------------------------

JOSE = "jos\u00e9@example.com"  # as HR sources store it: NFC
JOSE_NFD = "jose\u0301@example.com"  # the same address, the accent decomposed


def test_termination_with_unknown_id_and_a_decomposed_form_of_a_stored_email_is_a_conflict(
    tmp_path: Path, db_url: str | None
) -> None:
    w = world(tmp_path, real_engine=True, db_url=db_url)
    w.hr((tmp_path / "hr.csv").read_text() + f"E4,{JOSE},Jose,active,,\n")
    w.daemon.run_full("audit")

    job = Hook(w).send("E404", email=JOSE_NFD.upper())

    assert job["state"] == "failed" and job["event_status"] == "conflict", job
    assert "'E4'" in job["error"]
    assert person(w, "E404") is None
    jose = person(w, "E4")
    assert jose is not None and jose.status is PersonStatus.ACTIVE and jose.email == JOSE


def test_a_termination_sees_the_reused_address_of_an_account_that_holds_it_decomposed(
    tmp_path: Path, db_url: str | None
) -> None:
    # E4 leaves; HR has given their address to E6 as an alias. An account of the full-read source
    # holds it decomposed. The targeted run looks up who the account can be by the stored keys:
    # written in another form than the lookup's, they found nobody but the leaver, and the new
    # hire's key was revoked as the leaver's. Found, the account is ambiguous: reported, kept.
    w = world(tmp_path, real_engine=True, db_url=db_url)
    w.hr(
        (tmp_path / "hr.csv").read_text()
        + f"E4,{JOSE},Jose,active,,\nE6,jorge@example.com,Jorge,active,,{JOSE}\n"
    )
    shared = account("jose2", source="full", emails=(JOSE_NFD,))
    w.full.accounts.append(shared)
    w.full.credentials.append(credential(shared, "F-jose"))
    state = read_state_file(w.state_files["full"])
    state["accounts"].append({"id": "jose2", "username": "jose2"})
    state["credentials"].append({"account_id": "jose2", "id": "F-jose", "kind": "access_key", "active": True})
    w.state_files["full"].write_text(json.dumps(state))
    w.daemon.run_full("audit")

    job = Hook(w).send("E4")

    assert job["state"] == "done" and job["event_status"] == "applied", job
    found = [f for f in w.store.list_findings(["open"]) if f.account.account_id == "jose2"]
    assert [f.rule for f in found] == [Rule.AMBIGUOUS_OWNER]
    assert sorted(p.employee_id for p in found[0].candidates) == ["E4", "E6"]
    assert w.changes() == []
