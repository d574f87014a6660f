"""The plan, revoke and undo tables at 80 columns (new-user review, finding 7), through the CLI.

Like the findings table, they fit the terminal one line per row: action names and status words
are never cut, and the action ids they show are prefixes that `undo` accepts (it refused the
`a-7b41…` the table printed). The answers come from the JSON output and the database, not from
the tables.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from rich.cells import cell_len

from tests.support.fake_connector import FakeWorld

TIMEOUT = 120
LONG_KEY = "AKIARZPUZDIKG4NYZKNC"


def long_world(root: Path) -> FakeWorld:
    """Two leavers with long names, accounts and credential ids, and an orphan account (held)."""
    world = FakeWorld(root, f"sqlite:///{root / 'db.sqlite'}")
    world.write_hr(
        [
            ("E1001", "alice.anderson@example.com", "Alice Anderson-Longname", "terminated", "2026-01-10"),
            ("E1002", "bob@example.com", "Bob Leaver", "terminated", "2026-01-12"),
        ]
    )

    def acct(aid: str, emp: str | None) -> dict[str, object]:
        return {"id": aid, "username": aid, "attributes": [["employeeNumber", emp]] if emp else []}

    world.write_state(
        [acct("alice.anderson-admin", "E1001"), acct("bleaver", "E1002"), acct("contractor-tmp", None)],
        [
            {"account_id": "alice.anderson-admin", "id": "alice.anderson-admin", "kind": "account"},
            {"account_id": "alice.anderson-admin", "id": LONG_KEY, "kind": "access_key"},
            {
                "account_id": "alice.anderson-admin",
                "id": "group/platform-administrators",
                "kind": "group_membership",
            },
            {"account_id": "bleaver", "id": "AKIARZPUZDIKHHHHZKNC", "kind": "access_key"},
            {"account_id": "bleaver", "id": "bleaver", "kind": "account"},
            {"account_id": "contractor-tmp", "id": "contractor-tmp", "kind": "account"},
        ],
    )
    world.write_config()
    return world


def cli(world: FakeWorld, *args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    return world.run(*args, env={"COLUMNS": str(columns)}, timeout=TIMEOUT)


TITLES = ("revocation plan ", "listed, not planned", "revocation results", "undo results", "undo (dry run)")


def table(out: str, title: str, first_header: str) -> tuple[str, list[str]]:
    """The header and the lines of the table titled ``title`` (up to a blank line or the next
    table's title; a wrapped last column continues on indented lines)."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == title)
    header = lines[start + 1]
    assert header.startswith(first_header), out
    rows = []
    for line in lines[start + 3 :]:
        if not line.strip() or line.strip().startswith(TITLES):
            break
        rows.append(line)
    return header, rows


def stored_action_ids(world: FakeWorld) -> list[str]:
    with sqlite3.connect(world.root / "db.sqlite") as db:
        return [r[0] for r in db.execute("select action_id from actions")]


@pytest.fixture
def world(tmp_path: Path) -> FakeWorld:
    world = long_world(tmp_path)
    assert cli(world, "audit").returncode == 1
    return world


def test_plan_and_dry_run_tables_fit_80_columns_with_whole_action_names(world: FakeWorld) -> None:
    planned = json.loads(cli(world, "plan", "--format", "json").stdout)
    actions = [(a["action"], a["credential"]["id"]) for a in planned["actions"]]
    assert len(actions) == 5 and len(planned["held"]) == 1
    for args in (("plan",), ("revoke",)):
        proc = cli(world, *args)
        assert proc.returncode == 0, proc.stderr
        assert all(cell_len(line) <= 80 for line in proc.stdout.splitlines()), proc.stdout
        header, rows = table(proc.stdout, f"revocation plan {planned['plan_id']}", "#")
        assert header.split()[:5] == ["#", "person", "account", "credential", "action"]
        assert len(rows) == len(actions)
        for row, (action, _) in zip(rows, actions, strict=True):
            assert f" {action}" in row  # whole, in plan order
        # The held finding: its short id is a prefix of its id, and why it is held reads in full.
        _, held = table(proc.stdout, "listed, not planned", "finding")
        (finding,) = planned["held"]
        assert finding["finding_id"].startswith(held[0].split()[0])
        assert finding["reason"] in " ".join(" ".join(held).split())  # wrapped, never cut


def test_revoke_table_shows_whole_results_and_ids_that_undo_accepts(world: FakeWorld) -> None:
    applied = cli(world, "revoke", "--apply")
    assert applied.returncode == 0, applied.stderr
    assert all(cell_len(line) <= 80 for line in applied.stdout.splitlines()), applied.stdout
    header, rows = table(applied.stdout, "revocation results", "action id")
    assert header.split()[-1] == "result"
    stored = stored_action_ids(world)
    shown = [row.split()[0] for row in rows]
    assert len(rows) == len(stored) == 5
    for short in shown:  # each names exactly one stored action
        assert sum(1 for full in stored if full.startswith(short)) == 1
    assert all(row.rstrip().endswith(" applied") for row in rows)
    (key_row,) = [row for row in rows if f" {LONG_KEY} " in row]
    short = key_row.split()[0]
    assert len(short) < len(stored[0])

    dry = cli(world, "undo", short)
    assert dry.returncode == 0, dry.stderr
    undone = cli(world, "undo", short, "--apply")
    assert undone.returncode == 0, undone.stderr
    assert world.changes("undo") == [("deactivate_key", LONG_KEY)]
    _, rows = table(undone.stdout, "undo results", "action id")
    (row,) = rows
    assert row.rstrip().endswith(" restored") and " deactivate_key " in row


def test_an_ambiguous_action_id_prefix_is_a_usage_error_listing_both(world: FakeWorld) -> None:
    assert cli(world, "revoke", "--apply").returncode == 0
    first, second, *_ = stored_action_ids(world)
    # Two actions whose ids share their first 12 characters.
    twins = ("a-0123456789ab0001", "a-0123456789ab0002")
    with sqlite3.connect(world.root / "db.sqlite") as db:
        for old, new in zip((first, second), twins, strict=True):
            db.execute("update actions set action_id = ? where action_id = ?", (new, old))
    proc = cli(world, "undo", "a-0123456789ab", "--apply")
    assert proc.returncode == 2, proc.stderr
    assert "ambiguous" in proc.stderr and twins[0] in proc.stderr and twins[1] in proc.stderr
    too_short = cli(world, "undo", "a-01", "--apply")
    assert too_short.returncode == 2 and "too short" in too_short.stderr
    assert world.changes("undo") == []
    unknown = cli(world, "undo", "a-ffffffffffff")
    assert unknown.returncode == 1 and "no action with id" in unknown.stderr


def test_a_failed_action_shows_its_whole_error_under_the_80_column_table(world: FakeWorld) -> None:
    error = "AccessDenied: user/offboard is not authorized to perform iam:UpdateAccessKey on it"
    world.update(lambda st: st.update(fail={LONG_KEY: error}))
    proc = cli(world, "revoke", "--apply")
    assert proc.returncode == 1, proc.stderr
    _, rows = table(proc.stdout, "revocation results", "action id")
    (failed,) = [row for row in rows if f" {LONG_KEY} " in row]
    assert failed.rstrip().endswith(" failed")
    assert error in " ".join(proc.stdout.split())


def test_wide_terminals_get_more_columns_in_the_plan_and_revoke_tables(world: FakeWorld) -> None:
    plan_id = json.loads(cli(world, "plan", "--format", "json").stdout)["plan_id"]
    header, _ = table(cli(world, "plan", columns=200).stdout, f"revocation plan {plan_id}", "#")
    assert {"source", "stage", "reversible", "needs"} <= set(header.split())
    applied = cli(world, "revoke", "--apply", columns=200)
    header, _ = table(applied.stdout, "revocation results", "action id")
    assert {"person", "source", "detail"} <= set(header.split())
