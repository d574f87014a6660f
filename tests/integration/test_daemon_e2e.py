"""The daemon as a subprocess against a moto server and a real slapd: a signed termination event
disables exactly that person's AWS access key and locks their LDAP account."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from tests.support.aws import FAKE_AWS_ENV, SeedUser, seed_users
from tests.support.daemon import (
    SECRET_ENV,
    DaemonProcess,
    daemon_env,
    event_body,
    run_cli,
)
from tests.support.ports import free_port
from tests.support.slapd import PEOPLE_DN, REVOKER_DN, REVOKER_PASSWORD, SlapdServer

pytestmark = [pytest.mark.slapd, pytest.mark.slow]

NOW = datetime.now(UTC).replace(microsecond=0)
# 20 people: one termination is 5% of the workforce, exactly what the default breaker allows.
STAFF = [(f"E{i:03d}", f"staff{i:03d}") for i in range(1, 19)]
HR_HEADER = "employee_id,email,name,status,termination_date,aliases\n"


def hr_csv() -> str:
    rows = [
        "E100,carol@example.com,Carol Leaver,active,,carol",
        "E200,alice@example.com,Alice Stays,active,,alice",
    ]
    rows += [f"{eid},{uid}@example.com,{uid.title()},active,,{uid}" for eid, uid in STAFF]
    return HR_HEADER + "\n".join(rows) + "\n"


def ldap_person(uid: str, number: str) -> tuple[str, dict[str, list[str]]]:
    return (
        f"uid={uid},{PEOPLE_DN}",
        {
            "objectClass": ["inetOrgPerson"],
            "uid": [uid],
            "cn": [uid.title()],
            "sn": [uid],
            "mail": [f"{uid}@example.com"],
            "employeeNumber": [number],
            "userPassword": [f"{uid}-pw"],
        },
    )


def write_config(tmp_path: Path, moto: str, slapd: SlapdServer, port: int, auto_revoke: bool = True) -> Path:
    (tmp_path / "hr.csv").write_text(hr_csv())
    config = tmp_path / "offboard-audit.toml"
    config.write_text(
        f"""
[database]
url = "sqlite:///{tmp_path / "audit.db"}"

[policy]
auto_revoke = {"true" if auto_revoke else "false"}

[schedule]
audit = "0 3 1 1 *"

[webhook]
listen = "127.0.0.1:{port}"
secret_env = "{SECRET_ENV}"

[[sources]]
name = "hr"
type = "hr_csv"
path = "hr.csv"

[[sources]]
name = "corp-ldap"
type = "ldap"
url = "{slapd.url}"
bind_dn = "{REVOKER_DN}"
password_env = "LDAP_TEST_PASSWORD"
base_dn = "{PEOPLE_DN}"
dialect = "openldap"

[[sources]]
name = "aws"
type = "aws_iam"
region = "us-east-1"
endpoint_url = "{moto}"
service_specific_credentials = false
"""
    )
    return config


@pytest.fixture
def org(moto_endpoint: str, slapd: SlapdServer) -> Iterator[tuple[str, SlapdServer, dict[str, str]]]:
    backend = seed_users(
        [
            SeedUser(
                "carol",
                tags={"email": "carol@example.com"},
                keys=[(NOW - timedelta(days=90), NOW - timedelta(days=1))],
            ),
            SeedUser(
                "alice",
                tags={"email": "alice@example.com"},
                keys=[(NOW - timedelta(days=30), NOW - timedelta(days=1))],
            ),
        ]
    )
    keys = {name: backend.users[name].access_keys[0].access_key_id for name in ("carol", "alice")}
    slapd.add_entries([ldap_person("carol", "E100"), ldap_person("alice", "E200")])
    yield moto_endpoint, slapd, keys


def key_status(moto: str, user: str) -> str:
    iam = boto3.client("iam", endpoint_url=moto, region_name="us-east-1", **_creds())
    status: str = iam.list_access_keys(UserName=user)["AccessKeyMetadata"][0]["Status"]
    return status


def _creds() -> dict[str, str]:
    return {
        "aws_access_key_id": FAKE_AWS_ENV["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": FAKE_AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        "aws_session_token": FAKE_AWS_ENV["AWS_SESSION_TOKEN"],
    }


def ldap_locked(slapd: SlapdServer, uid: str) -> bool:
    conn = slapd.connect()
    try:
        conn.search(f"uid={uid},{PEOPLE_DN}", "(objectClass=*)", attributes=["pwdAccountLockedTime"])  # type: ignore[attr-defined]
        entry = conn.entries[0]  # type: ignore[attr-defined]
        return bool(entry.entry_attributes_as_dict.get("pwdAccountLockedTime"))
    finally:
        conn.unbind()  # type: ignore[attr-defined]


def test_signed_termination_disables_that_persons_aws_key_and_locks_their_ldap_account(
    org: tuple[str, SlapdServer, dict[str, str]], tmp_path: Path
) -> None:
    moto, slapd, _keys = org
    port = free_port()
    config = write_config(tmp_path, moto, slapd, port)
    env = daemon_env({**FAKE_AWS_ENV, "LDAP_TEST_PASSWORD": REVOKER_PASSWORD})

    # Baseline: one full reconcile with everybody active finds nothing and changes nothing.
    once = run_cli(config, env, "daemon", "--once")
    assert once.returncode == 0, once.stderr
    assert key_status(moto, "carol") == "Active" and not ldap_locked(slapd, "carol")

    daemon = DaemonProcess(config, env, port).start()
    try:
        health = daemon.wait_healthy()
        assert health["database"] == "ok" and health["last_run"]["status"] == "done"

        body = event_body(
            "E100", effective_at=datetime.now(UTC) - timedelta(minutes=1), email="carol@example.com"
        )
        response = daemon.post_event(body)
        assert response.status_code == 202, response.text
        job = daemon.wait_job(response.json()["job_id"])
        assert job["state"] == "done", job

        applied = {(a["source"], a["action"]) for a in job["actions"] if a["status"] == "applied"}
        assert ("aws", "deactivate_access_key") in applied, job
        assert any(src == "corp-ldap" and "lock" in action for src, action in applied), job
        assert key_status(moto, "carol") == "Inactive"
        assert ldap_locked(slapd, "carol")
        # Only carol: alice's key and account are untouched.
        assert key_status(moto, "alice") == "Active" and not ldap_locked(slapd, "alice")
        assert all(a["status"] != "failed" for a in job["actions"]), job

        code, seconds = daemon.stop()
        assert code == 0, daemon.log()
        assert seconds < 10
    finally:
        daemon.kill()

    # The run was a targeted one and the person is stored as terminated at effective_at.
    with sqlite3.connect(tmp_path / "audit.db") as db:
        kinds = [k for (k,) in db.execute("SELECT kind FROM runs ORDER BY started_at")]
        status = db.execute("SELECT status FROM people WHERE employee_id = 'E100'").fetchone()
    assert kinds == ["audit", "targeted"]
    assert status == ("terminated",)
