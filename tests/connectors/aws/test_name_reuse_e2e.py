"""Name reuse end to end: the CLI (subprocesses) against a moto server on 127.0.0.1.

A plan is made for the departed ``jdoe``; then ``jdoe`` is deleted and a new hire gets the same
name (same ARN, new UserId). Applying the old plan, or undoing the old actions, must touch
nothing of the new hire: every action is ``target-changed``, recorded in the audit chain.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3

from offboard_audit.core.chain_verify import verify_chain
from offboard_audit.storage.actions import iter_events
from offboard_audit.storage.store import Store
from tests.support.aws import FAKE_AWS_ENV, SeedUser, seed_users

REPO = Path(__file__).resolve().parents[3]
NOW = datetime.now(UTC).replace(microsecond=0)
TERMINATED = NOW - timedelta(days=30)
HR = f"""employee_id,email,name,status,termination_date,aliases
E2001,alice@example.com,Alice Active,active,,alice
E2002,jdoe@example.com,John Doe,terminated,{TERMINATED.isoformat()},jdoe
"""
PLANNED = {"deactivate_access_key", "delete_login_profile", "remove_group_membership"}


def write_config(tmp_path: Path, endpoint: str) -> Path:
    (tmp_path / "hr.csv").write_text(HR)
    config = tmp_path / "offboard-audit.toml"
    config.write_text(
        f"""
[database]
url = "sqlite:///{tmp_path / "audit.db"}"

# One of two people is terminated: the HR circuit breaker must not be what stops the revocation.
[policy]
max_new_terminations = 1.0

[[sources]]
name = "hr"
type = "hr_csv"
path = "hr.csv"

[[sources]]
name = "aws-e2e"
type = "aws_iam"
region = "us-east-1"
endpoint_url = "{endpoint}"
service_specific_credentials = false
"""
    )
    return config


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(FAKE_AWS_ENV)
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "offboard_audit", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=config.parent,
        timeout=120,
    )


def iam_client(endpoint: str) -> Any:
    return boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def seed_departed_jdoe() -> str:
    """The departed jdoe: a key last used before leaving, a console password, a group."""
    backend = seed_users(
        [
            SeedUser(
                "jdoe",
                keys=[(NOW - timedelta(days=400), TERMINATED - timedelta(days=2))],
                has_password=True,
                password_last_used=TERMINATED - timedelta(days=1),
                groups=("developers",),
            ),
            SeedUser("alice", tags={"email": "alice@example.com"}, keys=[(NOW - timedelta(days=9), NOW)]),
        ]
    )
    return str(backend.users["jdoe"].id)


def delete_user(iam: Any, name: str) -> None:
    """Delete an IAM user the way AWS requires: keys, login profile, groups, then the user."""
    for key in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
        iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
    with contextlib.suppress(iam.exceptions.NoSuchEntityException):
        iam.delete_login_profile(UserName=name)
    for group in iam.list_groups_for_user(UserName=name)["Groups"]:
        iam.remove_user_from_group(UserName=name, GroupName=group["GroupName"])
    iam.delete_user(UserName=name)


def new_hire(iam: Any, *, group: bool) -> tuple[str, str]:
    """A new jdoe (another person): login profile, access key and, if asked, the same group."""
    user_id = iam.create_user(UserName="jdoe")["User"]["UserId"]
    iam.create_login_profile(UserName="jdoe", Password="New-Hire-Password-1!")
    key_id = iam.create_access_key(UserName="jdoe")["AccessKey"]["AccessKeyId"]
    if group:
        iam.add_user_to_group(UserName="jdoe", GroupName="developers")
    return user_id, key_id


def assert_new_hire_untouched(iam: Any, key_id: str, *, in_group: bool) -> None:
    assert iam.get_login_profile(UserName="jdoe")["LoginProfile"]["UserName"] == "jdoe"
    keys = iam.list_access_keys(UserName="jdoe")["AccessKeyMetadata"]
    assert [(k["AccessKeyId"], k["Status"]) for k in keys] == [(key_id, "Active")]
    groups = [g["GroupName"] for g in iam.list_groups_for_user(UserName="jdoe")["Groups"]]
    assert groups == (["developers"] if in_group else [])


def chain_events(config: Path) -> list[tuple[str, dict[str, Any]]]:
    """(kind, payload) of every audit event, after checking the hash chain."""
    store = Store.open(f"sqlite:///{config.parent / 'audit.db'}")
    try:
        events = list(iter_events(store))
        assert verify_chain(iter(events)).ok
        return [(e.kind, json.loads(e.payload_json)) for e in events]
    finally:
        store.engine.dispose()


def test_old_plan_applied_after_the_name_was_reused_touches_nothing_of_the_new_hire(
    moto_endpoint: str, tmp_path: Path
) -> None:
    old_uid = seed_departed_jdoe()
    config = write_config(tmp_path, moto_endpoint)
    audited = cli(config, "audit", "--format", "json")
    assert audited.returncode == 1, audited.stderr
    plan_file = tmp_path / "plan.json"
    planned = cli(config, "plan", "--output", str(plan_file), "--format", "json")
    assert planned.returncode == 0, planned.stderr
    plan = json.loads(plan_file.read_text())
    jdoe_actions = [a for a in plan["actions"] if a["account"]["name"] == "jdoe"]
    assert {a["action"] for a in jdoe_actions} == PLANNED
    assert {a["account"]["uid"] for a in jdoe_actions} == {old_uid}

    iam = iam_client(moto_endpoint)
    delete_user(iam, "jdoe")
    new_uid, new_key = new_hire(iam, group=True)
    assert new_uid != old_uid

    applied = cli(config, "revoke", "--plan", str(plan_file), "--apply", "--format", "json")
    # Exit 1: nothing failed, but the operator must look (the CLI says the targets changed).
    assert applied.returncode == 1 and "target changed" in applied.stderr, applied.stderr
    outcomes = json.loads(applied.stdout)["outcomes"]
    assert {(o["action"], o["status"]) for o in outcomes} == {(a, "target-changed") for a in PLANNED}
    assert all(old_uid in o["error"] for o in outcomes)
    assert_new_hire_untouched(iam, new_key, in_group=True)

    events = chain_events(config)
    changed = [p for kind, p in events if kind == "outcome" and p.get("status") == "target-changed"]
    assert sorted(p["action"] for p in changed) == sorted(PLANNED)
    assert {p["observed_identity"] for p in changed} == {new_uid}
    verified = cli(config, "log", "verify")
    assert verified.returncode == 0, verified.stderr + verified.stdout


def test_undo_after_the_name_was_reused_does_not_add_the_new_hire_to_the_old_group(
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
    delete_user(iam, "jdoe")
    new_uid, new_key = new_hire(iam, group=False)

    undone = cli(config, "undo", "--person", "E2002", "--apply", "--format", "json")
    outcomes = {o["action"]: o for o in json.loads(undone.stdout)["outcomes"]}
    assert outcomes["remove_group_membership"]["status"] == "target-changed", undone.stdout
    assert outcomes["deactivate_access_key"]["status"] == "target-changed", undone.stdout
    # Without the identity check, undo would have put the new hire into the leaver's group.
    assert_new_hire_untouched(iam, new_key, in_group=False)

    events = chain_events(config)
    undo_changed = [p for kind, p in events if kind == "undo-outcome" and p.get("status") == "target-changed"]
    assert {p["action"] for p in undo_changed} >= {"remove_group_membership", "deactivate_access_key"}
    assert {p["observed_identity"] for p in undo_changed} == {new_uid}
    assert cli(config, "log", "verify").returncode == 0
