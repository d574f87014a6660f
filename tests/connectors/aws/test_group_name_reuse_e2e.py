"""Group name reuse end to end: the CLI (subprocesses) against a moto server on 127.0.0.1.

The departed ``jdoe`` is in ``developers``; then ``developers`` is deleted and a new group is
created under the same name (same name, new GroupId, possibly other policies). Undoing the old
removal must not add jdoe to it: ``target-changed``. The other actions of the same undo go ahead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.connectors.aws.test_name_reuse_e2e import (
    chain_events,
    cli,
    iam_client,
    seed_departed_jdoe,
    write_config,
)


def recreate_developers(iam: Any) -> str:
    """Delete ``developers`` (removing its members first, as IAM requires) and create it again."""
    for member in iam.get_group(GroupName="developers")["Users"]:
        iam.remove_user_from_group(GroupName="developers", UserName=member["UserName"])
    iam.delete_group(GroupName="developers")
    return str(iam.create_group(GroupName="developers")["Group"]["GroupId"])


def groups_of_jdoe(iam: Any) -> dict[str, str]:
    return {g["GroupName"]: g["GroupId"] for g in iam.list_groups_for_user(UserName="jdoe")["Groups"]}


def test_undo_after_the_group_was_recreated_does_not_add_the_leaver_to_the_new_group(
    moto_endpoint: str, tmp_path: Path
) -> None:
    seed_departed_jdoe()
    config = write_config(tmp_path, moto_endpoint)
    assert cli(config, "audit").returncode == 1
    applied = cli(config, "revoke", "--apply", "--format", "json")
    assert applied.returncode == 0, applied.stderr
    assert {(o["action"], o["status"]) for o in json.loads(applied.stdout)["outcomes"]} >= {
        ("deactivate_access_key", "applied"),
        ("remove_group_membership", "applied"),
    }

    iam = iam_client(moto_endpoint)
    new_id = recreate_developers(iam)

    undone = cli(config, "undo", "--person", "E2002", "--apply", "--format", "json")
    outcomes = {o["action"]: o for o in json.loads(undone.stdout)["outcomes"]}
    assert outcomes["remove_group_membership"]["status"] == "target-changed", undone.stdout
    assert new_id in outcomes["remove_group_membership"]["error"]
    # The key is the same object as before: it is restored.
    assert outcomes["deactivate_access_key"]["status"] == "restored", undone.stdout
    assert groups_of_jdoe(iam) == {}
    assert iam.get_group(GroupName="developers")["Users"] == []

    events = chain_events(config)
    changed = [p for kind, p in events if kind == "undo-outcome" and p.get("status") == "target-changed"]
    assert [p["action"] for p in changed] == ["remove_group_membership"]
