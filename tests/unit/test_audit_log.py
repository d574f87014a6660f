"""The audit log's hash chain: appended through storage, tampered with by raw SQL, verified."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from offboard_audit.core.audit_chain import GENESIS, recompute
from offboard_audit.core.chain_verify import verify_chain
from offboard_audit.storage.actions import NewEvent, append_event, iter_events
from offboard_audit.storage.store import Store

T = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store.open(f"sqlite:///{tmp_path / 'log.db'}")
    for i in range(1, 6):
        append_event(s, NewEvent("test", T + timedelta(seconds=i), "tester", {"n": i}, action_id=f"a{i}"))
    yield s
    s.engine.dispose()


def sql(store: Store, statement: str, **params: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(text(statement), params)


def problems(store: Store, head: str | None = None) -> list[str]:
    return [str(p) for p in verify_chain(iter_events(store), expected_head=head).problems]


def test_appended_events_form_a_linked_chain(store: Store) -> None:
    events = list(iter_events(store))
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(events))
    assert all(recompute(e) == e.hash for e in events)
    result = verify_chain(events)
    assert result.ok and result.events == 5 and result.head_hash == events[-1].hash


def test_edited_payload_is_named(store: Store) -> None:
    sql(store, "UPDATE audit_events SET payload_json = :p WHERE seq = 3", p='{"n":99}')
    assert problems(store) == ["event 3: content edited: its hash does not match its content"]


def test_edited_actor_or_time_is_named(store: Store) -> None:
    sql(store, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    sql(store, "UPDATE audit_events SET at = '2020-01-01 00:00:00' WHERE seq = 4")
    found = problems(store)
    assert any(p.startswith("event 2: content edited") for p in found)
    assert any(p.startswith("event 4: content edited") for p in found)


def test_deleted_event_in_the_middle_is_named(store: Store) -> None:
    sql(store, "DELETE FROM audit_events WHERE seq = 3")
    found = problems(store)
    assert found[0] == "event 4: event(s) 3 missing before it (deleted)"
    assert any(p.startswith("event 4: link broken") for p in found)


def test_edit_that_recomputes_the_events_own_hash_still_breaks_the_next_link(store: Store) -> None:
    events = list(iter_events(store))
    forged = replace(events[1], payload_json='{"n":42}')
    sql(
        store,
        "UPDATE audit_events SET payload_json = :p, hash = :h WHERE seq = 2",
        p='{"n":42}',
        h=recompute(forged),
    )
    assert problems(store) == [
        "event 3: link broken: prev_hash does not match the hash of the event before it "
        "(an event before it was edited, deleted or moved)"
    ]


def test_reordered_events_are_named(store: Store) -> None:
    # Swap the contents of events 2 and 3 (each keeps the other's hashes).
    with store.engine.begin() as conn:
        rows = {
            r.seq: r
            for r in conn.execute(
                text(
                    "SELECT seq, at, kind, actor, action_id, payload_json, prev_hash, hash FROM audit_events"
                )
            )
        }
        for target, source in ((2, 3), (3, 2)):
            r = rows[source]
            conn.execute(
                text(
                    "UPDATE audit_events SET at=:at, action_id=:a, payload_json=:p, prev_hash=:ph, hash=:h WHERE seq=:s"
                ),
                {
                    "at": r.at,
                    "a": r.action_id,
                    "p": r.payload_json,
                    "ph": r.prev_hash,
                    "h": r.hash,
                    "s": target,
                },
            )
    found = problems(store)
    assert any(p.startswith("event 2:") for p in found) and any(p.startswith("event 3:") for p in found)


def test_cut_off_tail_is_detected_only_against_a_remembered_head(store: Store) -> None:
    head = verify_chain(iter_events(store)).head_hash
    sql(store, "DELETE FROM audit_events WHERE seq = 5")
    assert problems(store) == []
    assert len(problems(store, head)) == 1 and "cut off" in problems(store, head)[0]


def test_appends_continue_the_chain_after_a_reopen(store: Store, tmp_path: Path) -> None:
    other = Store.open(f"sqlite:///{tmp_path / 'log.db'}")
    append_event(other, NewEvent("later", T + timedelta(days=1), "x", {}))
    other.engine.dispose()
    result = verify_chain(iter_events(store))
    assert result.ok and result.events == 6
