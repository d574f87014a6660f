"""`exempt add`, `list` and `remove` as an operator runs them: a subprocess, a config file and
the SQLite database it names (read back with sqlite3 as the independent answer)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

TIMEOUT = 120


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFBOARD_AUDIT")}
    return subprocess.run(
        [sys.executable, "-m", "offboard_audit", "--config", str(root / "c.toml"), *args],
        capture_output=True,
        text=True,
        cwd=root,
        env={**env, "COLUMNS": "200"},
        stdin=subprocess.DEVNULL,
        timeout=TIMEOUT,
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "hr.csv").write_text("employee_id,email,name,status,termination_date\n")
    (tmp_path / "c.toml").write_text(
        '[database]\nurl = "sqlite:///db.sqlite"\n\n'
        '[[sources]]\nname = "hr"\ntype = "hr_csv"\npath = "hr.csv"\n\n'
        '[[sources]]\nname = "aws-main"\ntype = "aws_iam"\n'
    )
    return tmp_path


def add(root: Path, selector: str) -> str:
    added = cli(root, "exempt", "add", selector, "--reason", "legal hold", "--until", "2099-01-01")
    assert added.returncode == 0, added.stderr
    return added.stdout.strip()


def test_a_removed_exemption_is_listed_as_removed_with_its_removal_time(root: Path) -> None:
    kept, removed = add(root, "aws-main:bob:*"), add(root, "aws-main:carol")
    assert cli(root, "exempt", "remove", removed).returncode == 0
    with sqlite3.connect(root / "db.sqlite") as conn:
        (stored,) = conn.execute(
            "SELECT removed_at FROM exemptions WHERE exemption_id = ?", (removed,)
        ).fetchone()
    assert stored is not None

    listed = cli(root, "exempt", "list", "--all", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    # The keys of before stay as they were; state and removed_at are new.
    assert set(rows[kept]) == {
        "id",
        "selector",
        "reason",
        "until",
        "by",
        "created_at",
        "active",
        "state",
        "removed_at",
    }
    assert (rows[kept]["active"], rows[kept]["state"], rows[kept]["removed_at"]) == (True, "active", None)
    assert (rows[removed]["active"], rows[removed]["state"]) == (False, "removed")
    removed_at = datetime.fromisoformat(rows[removed]["removed_at"])
    assert removed_at == datetime.fromisoformat(stored).replace(tzinfo=UTC)  # stored as UTC

    table = cli(root, "exempt", "list", "--all")
    assert table.returncode == 0, table.stderr
    cells = [[c.strip() for c in line.split("│")[1:-1]] for line in table.stdout.splitlines() if "x-" in line]
    assert {row[0]: row[3] for row in cells} == {kept: "active", removed: "removed"}

    # Without --all a removed exemption is not listed at all.
    current = json.loads(cli(root, "exempt", "list", "--format", "json").stdout)
    assert [row["id"] for row in current] == [kept]


def stored_selectors(root: Path) -> list[str]:
    if not (root / "db.sqlite").exists():
        return []
    with sqlite3.connect(root / "db.sqlite") as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "exemptions" not in tables:
            return []
        return [sel for (sel,) in conn.execute("SELECT selector FROM exemptions")]


@pytest.mark.parametrize(
    ("selector", "says", "spelled_out"),
    [
        # A username alone exempted nothing, silently.
        ("bob", "'bob' names no configured source or system", None),
        # A source or system alone exempted every finding in it (the summary dropped to 0).
        ("aws", "write 'aws:*' if that is what you mean", "aws:*"),
        ("aws-main", "write 'aws-main:*' if that is what you mean", "aws-main:*"),
    ],
)
def test_exempt_add_refuses_a_word_without_a_colon(
    root: Path, selector: str, says: str, spelled_out: str | None
) -> None:
    added = cli(root, "exempt", "add", selector, "--reason", "x", "--until", "2099-01-01")
    assert added.returncode == 2, added.stderr
    assert "SELECTOR" in added.stderr and says in added.stderr
    assert stored_selectors(root) == []
    if spelled_out is not None:  # the spelling the refusal suggests is taken
        add(root, spelled_out)
        assert stored_selectors(root) == [spelled_out]


def test_config_check_refuses_a_protected_word_that_names_no_source(root: Path) -> None:
    config = root / "c.toml"
    config.write_text(
        config.read_text().replace("[[sources]]", '[policy]\nprotected = ["alice"]\n\n[[sources]]', 1)
    )
    line = config.read_text().splitlines().index('protected = ["alice"]') + 1
    checked = cli(root, "config", "check")
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert f"line {line}: policy.protected: 'alice' names no configured source or system" in checked.stderr
    assert "PREFIX[:SCOPE]:ACCOUNT[:CREDENTIAL]" in checked.stderr
    # A source name alone still protects all of it.
    config.write_text(config.read_text().replace('["alice"]', '["aws-main"]'))
    assert cli(root, "config", "check").returncode == 0


@pytest.mark.parametrize("selector", ["bob:AKIA1", "AKIA1:aws-main", "aws-mian:bob"])
def test_exempt_add_refuses_a_selector_whose_prefix_names_no_configured_source(
    root: Path, selector: str
) -> None:
    # A username first, a reversed selector or a misspelt source exempted nothing, silently,
    # and the credential the operator meant to keep was then revoked.
    added = cli(root, "exempt", "add", selector, "--reason", "x", "--until", "2099-01-01")
    assert added.returncode == 2, added.stderr
    head = selector.split(":")[0].lower()
    assert f"its PREFIX {head!r} names no configured source or system" in added.stderr
    assert stored_selectors(root) == []
    add(root, "aws-main:bob:AKIA1")  # the same credential, spelled as the error says
    add(root, "aws*:bob")  # a PREFIX glob that matches a configured source
    assert stored_selectors(root) == ["aws-main:bob:AKIA1", "aws*:bob"]


def test_config_check_warns_of_a_protected_selector_whose_prefix_names_no_configured_source(
    root: Path,
) -> None:
    config = root / "c.toml"
    config.write_text(
        config.read_text().replace(
            "[[sources]]", '[policy]\nprotected = ["root:aws", "aws-main:breakglass"]\n\n[[sources]]', 1
        )
    )
    line = config.read_text().splitlines().index('protected = ["root:aws", "aws-main:breakglass"]') + 1
    checked = cli(root, "config", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (warning,) = [w for w in checked.stderr.splitlines() if "policy.protected" in w]
    assert f"line {line}: policy.protected: 'root:aws' selects nothing" in warning
    assert warning.endswith("it protects nothing")


def test_exempt_until_a_date_in_iso_basic_form_lasts_through_the_end_of_that_day(root: Path) -> None:
    # The same day as 2099-12-31, written in ISO 8601's basic form (which Python reads as a
    # date-time at midnight: the exemption ended a day early).
    for selector, until in (("aws-main:bob", "2099-12-31"), ("aws-main:carol", "20991231")):
        added = cli(root, "exempt", "add", selector, "--reason", "legal hold", "--until", until)
        assert added.returncode == 0, added.stderr
    listed = cli(root, "exempt", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    until = {row["selector"]: row["until"] for row in json.loads(listed.stdout)}
    assert until["aws-main:carol"] == until["aws-main:bob"] == "2100-01-01T00:00:00+00:00"
