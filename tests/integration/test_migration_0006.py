"""Migration 0006 on a database written before it: every stored person gets their last HR row
(so the first read after the upgrade merges and keeps terminations sticky), and every stored
webhook event counts as received."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from offboard_audit.core.people import merge_hr_read
from offboard_audit.core.records import HRRead, Person, PersonStatus
from offboard_audit.storage.db import make_engine
from offboard_audit.storage.migrate import alembic_config, upgrade_head
from offboard_audit.storage.store import Store
from offboard_audit.storage.webhook_store import WebhookStore

TERMINATED = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return str(request.getfixturevalue("postgres_url"))


def test_upgrade_from_0005_backfills_the_last_hr_row_and_event_status(url: str) -> None:
    engine = make_engine(url)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0005")
    with engine.begin() as conn:
        for eid, status, when in (("E1", "active", None), ("E2", "terminated", TERMINATED)):
            conn.execute(
                text(
                    "INSERT INTO people (source, employee_id, email, name, status, terminated_at, "
                    "aliases_json, row_hash, updated_run) VALUES ('hr', :eid, :email, :name, :status, "
                    ":when, '[\"a1\"]', 'legacy-hash', 'r0')"
                ),
                {
                    "eid": eid,
                    "email": f"{eid.lower()}@example.com",
                    "name": eid,
                    "status": status,
                    "when": when,
                },
            )
        conn.execute(
            text(
                "INSERT INTO webhook_events (event_id, event, employee_id, email, effective_at, signed_at, "
                "received_at, body_json, job_id) VALUES ('evt-1', 'employee.terminated', 'E2', NULL, "
                ":t, :t, :t, '{}', 'j1')"
            ),
            {"t": TERMINATED if engine.dialect.name == "postgresql" else TERMINATED.replace(tzinfo=None)},
        )
    upgrade_head(engine)

    store = Store(engine)
    states = {s.person.employee_id: s for s in store.load_person_states()}
    assert states["E2"].hr_row == states["E2"].person
    assert states["E2"].person.terminated_at == TERMINATED and states["E2"].person.aliases == ("a1",)
    assert states["E1"].hr_row == states["E1"].person and states["E1"].changed_at is None
    assert WebhookStore(store).event_status("evt-1") == "received"
    assert WebhookStore(store).terminations_since(None) == {"E2"}

    # The first read after the upgrade: bob dropped out and stays terminated; alice is unchanged.
    alice = Person("E1", "e1@example.com", "E1", PersonStatus.ACTIVE, None, ("a1",), "hr")
    merged = merge_hr_read("hr", list(states.values()), HRRead((alice,)), TERMINATED, "hr:hr run r1")
    assert merged.kept_terminated == ("E2",) and merged.previous_read == 2
    written = store.save_person_states("hr", list(states.values()), merged.states, "r1")
    assert written.written == 1 and written.conflicts == ()  # only bob's missing_since
