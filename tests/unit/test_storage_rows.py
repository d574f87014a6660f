"""Records to rows and back by field name (offboard_audit.storage.rows): enums by value, optional
enums, fields without a column left out, misspelt columns refused."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, insert, select

from offboard_audit.core.actions import ResourceState, Stage
from offboard_audit.core.exposure import InventoryRead, ObjectRef, PersistenceState
from offboard_audit.core.records import CredentialKind
from offboard_audit.core.runs import RunStatus
from offboard_audit.core.stored import ActionRecord, ActionStatus, RunInfo
from offboard_audit.storage.actions import NewEvent, action_row, load_actions, record_new_action
from offboard_audit.storage.db import make_engine
from offboard_audit.storage.models import RunRow
from offboard_audit.storage.rows import record_of, row_of
from offboard_audit.storage.store import Store
from offboard_audit.storage.tables import ACTIONS, RUNS, table_of

AT = datetime(2026, 6, 1, 12, tzinfo=UTC)


def action(**changes: object) -> ActionRecord:
    values: dict[str, object] = dict(
        source="aws",
        system="aws_iam",
        scope="111",
        account_id="AIDA1",
        username="bob",
        credential_id="AKIA1",
        credential_kind=CredentialKind.ACCESS_KEY,
        detail="",
        account_uid="AIDA1",
        action_id="a-1",
        plan_id="p-1",
        finding_id="f-1",
        action="deactivate_access_key",
        stage=Stage.DISABLE,
        reversible=True,
        person="E2",
        status=ActionStatus.APPLIED,
        error=None,
        prior_state=ResourceState(True, True, (("status", "Active"),), "AIDA1"),
        result_state=None,
        actor="cli:alice",
        undo_of=None,
        created_at=AT,
        updated_at=AT,
    )
    values.update(changes)
    return ActionRecord(**values)  # type: ignore[arg-type]


def test_an_action_survives_the_database_with_its_enums_and_states() -> None:
    store = Store(make_engine("sqlite://"))
    store.create_all()
    rec = action()
    assert action_row(rec)["status"] == "applied" and action_row(rec)["person_employee_id"] == "E2"
    record_new_action(store, rec, NewEvent("intent", AT, "cli:alice", {}, rec.action_id))
    (back,) = load_actions(store, action_ids=["a-1"])
    # SQLite drops the offset; the UTC column type puts it back.
    assert back == rec and back.status is ActionStatus.APPLIED and back.stage is Stage.DISABLE
    assert store.actions_by_finding(["f-1"]) == {"f-1": [rec]}


def test_record_of_converts_enums_by_value_and_keeps_given_fields_as_they_are() -> None:
    row = {
        "run_id": "r1",
        "kind": "audit",
        "started_at": AT,
        "finished_at": None,
        "status": "failed_sources",
        "circuit_breaker": None,
        "summary_json": "{}",
    }
    engine = create_engine("sqlite://")
    RUNS.metadata.create_all(engine, tables=[RUNS])
    with engine.begin() as conn:
        conn.execute(insert(RUNS).values(row))
        mapping = conn.execute(select(RUNS)).mappings().one()
    info = record_of(RunInfo, mapping)
    assert info.status is RunStatus.FAILED_SOURCES and info.finished_at is None
    assert record_of(RunInfo, mapping, status=RunStatus.DONE).status is RunStatus.DONE


def test_row_of_refuses_a_column_the_table_does_not_have() -> None:
    with pytest.raises(KeyError, match="person_id"):
        row_of(action(), ACTIONS, person_id="E2")


def test_table_of_gives_the_core_table_of_a_model() -> None:
    assert table_of(RunRow) is RUNS and RUNS.name == "runs"


def test_a_persistence_objects_admins_survive_the_database() -> None:
    store = Store(make_engine("sqlite://"))
    store.create_all()
    ref = ObjectRef("acme/infra", CredentialKind.DEPLOY_KEY, "acme/infra/keys/7", owner="acme/infra")
    state = PersistenceState("gh", ref, True, "present", remove_by=("octo", "hub"))
    store.save_inventory("gh", InventoryRead(objects=(state,), scopes=("acme/infra",)), "r-1")
    assert store.exposure_objects("gh", [ref]) == {ref.key: state}
