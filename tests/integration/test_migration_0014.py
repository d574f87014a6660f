"""Migration 0014 on people stored before it: their ``person_keys`` were written trimmed and lower
case only, so a person stored with an address typed decomposed or carrying a zero-width space
had keys the webhook path (which looks up identifiers in one form: NFC, without invisible
characters) never found. The migration writes every stored person's keys again in that form;
a downgrade writes them back as the code before it did."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.engine import Engine

from offboard_audit.storage.db import make_engine
from offboard_audit.storage.migrate import alembic_config, upgrade_head
from offboard_audit.storage.store import Store

# (employee id, email, aliases) as stored before 0014: E1's address decomposed (e + U+0301) and
# in another case, an alias with a zero-width space; E2 plain, with an alias of nothing visible.
PEOPLE = [
    ("E1", "JOSE\u0301@Example.com", ["jos\u00e9\u200b", "jose\u0301.m@old.example.com"]),
    ("E2", "bob@example.com", ["\u200b"]),
]
# Their keys as the code before 0014 wrote them (trimmed, lower case).
OLD_KEYS = {
    ("E1", "id:e1"),
    ("E1", "email:jose\u0301@example.com"),
    ("E1", "email:jose\u0301.m@old.example.com"),
    ("E1", "alias:jos\u00e9\u200b"),
    ("E1", "local:jose\u0301"),
    ("E2", "id:e2"),
    ("E2", "email:bob@example.com"),
    ("E2", "alias:\u200b"),
    ("E2", "local:bob"),
}
# In one form: NFC, no invisible characters, lower case; nothing for an alias of nothing visible.
NEW_KEYS = {
    ("E1", "id:e1"),
    ("E1", "email:jos\u00e9@example.com"),
    ("E1", "email:jos\u00e9.m@old.example.com"),
    ("E1", "alias:jos\u00e9"),
    ("E1", "local:jos\u00e9"),
    ("E2", "id:e2"),
    ("E2", "email:bob@example.com"),
    ("E2", "local:bob"),
}


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return str(request.getfixturevalue("postgres_url"))


def stored_keys(engine: Engine) -> set[tuple[str, str]]:
    with engine.begin() as conn:
        return {(r[1], r[0]) for r in conn.execute(text("SELECT key, employee_id FROM person_keys"))}


def test_upgrade_from_0013_rewrites_the_stored_keys_in_one_form_and_downgrade_restores_them(url: str) -> None:
    engine = make_engine(url)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0013")
    with engine.begin() as conn:
        for eid, email, aliases in PEOPLE:
            conn.execute(
                text(
                    "INSERT INTO people (source, employee_id, email, name, status, aliases_json, row_hash, "
                    "updated_run, changed_by) VALUES ('hr', :eid, :email, :eid, 'active', :aliases, 'x', "
                    "'r0', '')"
                ),
                {"eid": eid, "email": email, "aliases": json.dumps(aliases)},
            )
        for eid, key in OLD_KEYS:
            conn.execute(
                text("INSERT INTO person_keys (key, source, employee_id) VALUES (:key, 'hr', :eid)"),
                {"key": key, "eid": eid},
            )

    upgrade_head(engine)

    assert stored_keys(engine) == NEW_KEYS
    store = Store(engine)
    for key in [("email", "jos\u00e9@example.com"), ("alias", "JOS\u00c9"), ("local", "jose\u0301")]:
        assert [(p.source, p.employee_id) for p in store.people_with_keys([key])] == [("hr", "E1")], key
    assert store.people_with_keys([("alias", "\u200b")]) == []

    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0013")
    assert stored_keys(engine) == OLD_KEYS
