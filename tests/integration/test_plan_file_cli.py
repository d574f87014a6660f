"""Issue 11 item 4 through the CLI: ``revoke --plan`` refuses an edited plan file whose checksum
was recomputed (the checksum is unkeyed: anyone can), naming the field, and applies nothing."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from tests.support.fake_connector import cli, standard_world

KEY = "0123456789abcdef0123456789abcdef"


def rehash(body: dict[str, Any]) -> dict[str, Any]:
    content = {k: v for k, v in body.items() if k != "checksum"}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {**body, "checksum": "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()}


def test_rehashed_plan_with_an_edited_description_is_refused_naming_the_field(tmp_path: Path) -> None:
    world = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    cli(world, "audit")
    plan = tmp_path / "plan.json"
    assert cli(world, "plan", "--person", "E2", "--output", str(plan))[0] == 0
    body = json.loads(plan.read_text())
    # What the reviewer approved is not what the file now says (but the checksum matches).
    body["actions"][1]["description"] = "read-only inventory check (changes nothing)"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(rehash(body)))

    code, _, err = cli(world, "revoke", "--plan", str(edited), "--apply")
    assert code == 1
    assert "refused" in err and "actions[1].description is 'read-only inventory check" in err
    assert world.changes() == []

    code, _, err = cli(world, "revoke", "--plan", str(plan), "--apply")
    assert code == 0, err
    assert sorted(c for _, c in world.changes()) == ["AK2", "bob"]


def test_with_the_audit_key_plans_are_signed_and_an_unsigned_one_is_refused(tmp_path: Path) -> None:
    world = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    env = {"OFFBOARD_TEST_AUDIT_KEY": KEY}
    cli(world, "audit")
    unsigned = tmp_path / "unsigned.json"
    assert cli(world, "plan", "--person", "E2", "--output", str(unsigned))[0] == 0
    world.config_path.write_text(
        world.config_path.read_text() + '\n[audit]\nkey_env = "OFFBOARD_TEST_AUDIT_KEY"\n'
    )
    signed = tmp_path / "signed.json"
    assert cli(world, "plan", "--person", "E2", "--output", str(signed), env=env)[0] == 0
    assert json.loads(signed.read_text())["signature"]["alg"] == "hmac-sha256"

    code, _, err = cli(world, "revoke", "--plan", str(unsigned), "--apply", env=env)
    assert code == 1 and "not signed, but the audit key is set" in err and world.changes() == []
    code, _, err = cli(world, "revoke", "--plan", str(signed), "--apply", env=env)
    assert code == 0, err
    assert sorted(c for _, c in world.changes()) == ["AK2", "bob"]


def test_a_plan_file_with_a_number_too_long_to_read_is_refused_not_an_internal_error(tmp_path: Path) -> None:
    # json.loads raises a plain ValueError (not a JSONDecodeError) for an integer of more than
    # 4300 digits: the edited file ended in "internal error ... this is a bug" (exit 4).
    world = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    cli(world, "audit")
    plan = tmp_path / "plan.json"
    assert cli(world, "plan", "--person", "E2", "--output", str(plan))[0] == 0
    edited = tmp_path / "edited.json"
    edited.write_text(plan.read_text().replace("{", '{"extra": ' + "9" * 5000 + ", ", 1))

    code, _, err = cli(world, "revoke", "--plan", str(edited), "--apply")
    assert code == 1, err
    assert "refused" in err and "internal error" not in err
    assert world.changes() == []
