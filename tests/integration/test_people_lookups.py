"""Issue 17 item 10, storage side: the people one person's event and accounts can concern are
looked up by index (``person_keys``), kept by every write of people, and backfilled by the
migration that adds them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text

from offboard_audit.core.records import Person, PersonStatus
from offboard_audit.core.stored import PersonState
from offboard_audit.storage.db import make_engine
from offboard_audit.storage.migrate import alembic_config, upgrade_head
from offboard_audit.storage.people import person_keys
from offboard_audit.storage.store import Store


def person(eid: str, email: str | None, aliases: tuple[str, ...] = (), source: str = "hr") -> Person:
    return Person(eid, email, eid.lower(), PersonStatus.ACTIVE, None, aliases, source)


def ids(people: list[Person]) -> list[tuple[str, str]]:
    return sorted((p.source, p.employee_id) for p in people)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return Store.open(f"sqlite:///{tmp_path / 'p.db'}")
    return Store.open(request.getfixturevalue("postgres_url"))


def test_people_are_found_by_identifiers_in_any_unicode_form_and_with_invisible_characters(
    store: Store,
) -> None:
    # Keys and lookups are compared as matching compares: NFC, without invisible format
    # characters, any case. An account's address typed decomposed (e + U+0301) or carrying a
    # zero-width space finds the person HR stores in NFC, and a person stored in another form
    # (recorded from an older event) is found by the NFC address.
    store.save_people(
        "hr",
        [
            person("E1", "jos\u00e9@example.com", ("jos\u00e9", "jos\u00e9.m@old.example.com")),
            person("E2", "zoe\u0308\u200b@example.com"),
            person("E3", "jose@example.com"),
        ],
        "r1",
    )
    for key in [
        ("email", "JOSE\u0301@Example.com"),
        ("email", "jos\ufeff\u00e9@example.com"),
        ("email", "jose\u0301.m@old.example.com"),
        ("alias", "Jose\u0301"),
        ("local", "jos\u00e9\u00ad"),
        ("id", "E\u200d1"),
    ]:
        assert ids(store.people_with_keys([key])) == [("hr", "E1")], key
    assert ids(store.people_with_keys([("email", "zo\u00eb@example.com"), ("local", "ZO\u00cb")])) == [
        ("hr", "E2")
    ]
    assert ids(store.people_with_keys([("email", "jose@example.com")])) == [("hr", "E3")]  # no accent: E3
    assert store.people_with_keys([("email", "\u200b"), ("alias", "\ufeff ")]) == []
    assert [s.person.employee_id for s in store.person_states_for("E404", "JOSE\u0301@example.com")] == ["E1"]


def test_people_are_found_by_id_email_alias_and_email_local_part_case_insensitively(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'p.db'}")
    store.save_people(
        "hr",
        [
            person("E1", "Alice.Smith@Example.com", ("asmith", "alice@old.example.com")),
            person("E2", "bob@example.com"),
            *(person(f"S{i}", f"s{i}@example.com") for i in range(50)),
        ],
        "r1",
    )
    store.save_people("contractors", [person("E1", "alice.c@vendor.example", source="contractors")], "r1")
    assert store.count_people() == 53
    assert ids(store.people_with_keys([("id", " e1 ")])) == [("contractors", "E1"), ("hr", "E1")]
    assert ids(store.people_with_keys([("email", "ALICE.SMITH@example.com")])) == [("hr", "E1")]
    assert ids(store.people_with_keys([("email", "alice@old.example.com")])) == [("hr", "E1")]
    assert ids(store.people_with_keys([("alias", "ASmith")])) == [("hr", "E1")]
    assert ids(store.people_with_keys([("local", "bob"), ("alias", "nobody")])) == [("hr", "E2")]
    assert store.people_with_keys([("email", ""), ("alias", "  ")]) == []
    states = store.person_states_for("E404", "bob@EXAMPLE.com")
    assert [s.person.employee_id for s in states] == ["E2"]  # the email's owner: a conflict


def test_keys_follow_every_write_of_a_person(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'p.db'}")
    store.save_people(
        "hr", [person("E1", "alice@example.com", ("al",)), person("E2", "bob@example.com")], "r1"
    )
    # A full read changes alice's email and drops bob.
    store.save_people("hr", [person("E1", "alice@new.example.com", ("al2",))], "r2")
    assert store.people_with_keys([("email", "alice@example.com"), ("alias", "al"), ("id", "E2")]) == []
    assert ids(store.people_with_keys([("email", "alice@new.example.com")])) == [("hr", "E1")]
    assert ids(store.people_with_keys([("alias", "al2")])) == [("hr", "E1")]
    # The webhook path writes one person (new, then changed).
    (before,) = store.person_states_for("E1")
    left = datetime(2026, 5, 1, tzinfo=UTC)
    changed = PersonState(
        Person("E1", "a@x.example", "alice", PersonStatus.TERMINATED, left, (), "hr"),
        before.hr_row,
        left,
        "test",
    )
    assert store.save_person_state(changed, before, "job:1")
    new = PersonState(person("E9", "new@example.com"), None, left, "webhook")
    assert store.save_person_state(new, None, "job:2")
    assert ids(store.people_with_keys([("local", "a"), ("email", "new@example.com")])) == [
        ("hr", "E1"),
        ("hr", "E9"),
    ]
    assert store.people_with_keys([("email", "alice@new.example.com")]) == []


def test_the_migration_backfills_the_keys_of_people_stored_before_it(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0008")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO people (source, employee_id, email, name, status, aliases_json, row_hash, "
                "updated_run, changed_by) VALUES ('hr', 'E1', 'Carol@Example.com', 'Carol', 'active', "
                ":aliases, 'x', 'r0', '')"
            ),
            {"aliases": json.dumps(["cjones"])},
        )
    upgrade_head(engine)
    p = person("E1", "Carol@Example.com", ("cjones",))
    with engine.begin() as conn:
        stored = {r[0] for r in conn.execute(text("SELECT key FROM person_keys WHERE employee_id = 'E1'"))}
    assert stored == person_keys(p) == {"id:e1", "email:carol@example.com", "alias:cjones", "local:carol"}


@pytest.mark.postgres
def test_on_postgres_people_are_found_by_their_keys(postgres_url: str) -> None:
    store = Store.open(postgres_url)
    store.save_people(
        "hr", [person("E1", "Alice@Example.com", ("asmith",)), person("E2", "bob@example.com")], "r1"
    )
    assert ids(store.people_with_keys([("alias", "ASMITH"), ("local", "bob")])) == [
        ("hr", "E1"),
        ("hr", "E2"),
    ]
    assert store.count_people() == 2
