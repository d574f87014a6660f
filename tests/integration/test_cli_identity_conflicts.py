"""Who is who, end to end: accounts whose owner is not certain are reported, never revoked.

Through the CLI in a subprocess on the fake connector: a rehire under a new employee id whose old
account keeps the old id tag, and an account named like an address at another company whose
local part is a leaver's. ``revoke --apply`` must touch neither.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.fake_connector import FakeWorld, fake_env


def cli(w: FakeWorld, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offboard_audit", "--config", str(w.config_path), *args],
        capture_output=True,
        text=True,
        env=fake_env(),
        timeout=120,
    )


def test_uncertain_owners_are_reported_and_nothing_of_theirs_is_revoked(tmp_path: Path) -> None:
    w = FakeWorld(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    w.write_hr(
        [
            ("E1", "alice@example.com", "Alice", "terminated", "2026-01-10"),
            ("E5", "alice@example.com", "Alice", "active", ""),  # rehired under a new id
            ("E2", "bob@example.com", "Bob", "terminated", "2026-01-12"),
        ]
    )
    alice = {
        "id": "alice",
        "username": "alice",
        "enabled": True,
        "attributes": [["employeeNumber", "E1"], ["mail", "alice@example.com"]],
    }
    stranger = {"id": "bob@partner.example", "username": "bob@partner.example", "enabled": True}
    w.write_state(
        [alice, stranger],
        [
            {"account_id": "alice", "id": "AK1", "kind": "access_key"},
            {"account_id": "bob@partner.example", "id": "AK9", "kind": "access_key"},
        ],
    )
    w.write_config({"auto_revoke": False})
    proc = cli(w, "audit", "--format", "json", "--fail-on", "none")
    assert proc.returncode == 0, proc.stderr
    rules = {(f["account"]["id"], f["rule"]) for f in json.loads(proc.stdout)["findings"]}
    assert rules == {("alice", "ambiguous-owner"), ("bob@partner.example", "orphan-account")}
    applied = cli(w, "revoke", "--apply")
    assert applied.returncode == 0, applied.stderr
    assert w.changes() == []
