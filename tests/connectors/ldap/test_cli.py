"""End to end: ``offboard-audit audit`` as a subprocess against a real slapd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support.ports import free_port
from tests.support.slapd import (
    AUDITOR_DN,
    AUDITOR_PASSWORD,
    GROUPS_DN,
    PEOPLE_DN,
    SlapdServer,
    make_tls_files,
)

pytestmark = pytest.mark.slapd

REPO = Path(__file__).resolve().parents[3]


def write_config(tmp_path: Path, url: str, terminated_at: datetime, extra: str = "") -> Path:
    (tmp_path / "hr.csv").write_text(
        "employee_id,email,name,status,termination_date,aliases\n"
        "E501,dora@example.com,Dora Active,active,,dora\n"
        f"E502,ned@example.com,Ned Leaver,terminated,{terminated_at.isoformat()},ned\n"
        f"E503,olga@example.com,Olga Gone,terminated,{terminated_at.isoformat()},olga\n",
        encoding="utf-8",
    )
    config = tmp_path / "offboard-audit.toml"
    config.write_text(
        f"""
[database]
url = "sqlite:///audit.db"

[[sources]]
name = "hr"
type = "hr_csv"
path = "hr.csv"

[[sources]]
name = "corp-ldap"
type = "ldap"
url = "{url}"
bind_dn = "{AUDITOR_DN}"
password_env = "LDAP_BIND_PASSWORD"
base_dn = "{PEOPLE_DN}"
group_base_dn = "{GROUPS_DN}"
dialect = "openldap"
connect_timeout = 3
{extra}
""",
        encoding="utf-8",
    )
    return config


def run_audit(config: Path, password: str) -> tuple[int, dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFBOARD_AUDIT")}
    env["LDAP_BIND_PASSWORD"] = password
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, "-m", "offboard_audit", "--config", str(config), "audit", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=config.parent,
        timeout=120,
        check=False,
    )
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        report = {}
    return proc.returncode, report, proc.stderr


def ldap_run(report: dict[str, Any]) -> dict[str, Any]:
    return next(s for s in report["run"]["sources"] if s["name"] == "corp-ldap")


def test_cli_audit_reports_use_after_termination_from_a_real_bind(slapd: SlapdServer, tmp_path: Path) -> None:
    def entry(uid: str, number: str) -> tuple[str, dict[str, list[str]]]:
        return f"uid={uid},{PEOPLE_DN}", {
            "objectClass": ["inetOrgPerson"],
            "uid": [uid],
            "cn": [uid],
            "sn": [uid],
            "mail": [f"{uid}@example.com"],
            "employeeNumber": [number],
            "userPassword": [f"{uid}-pw"],
        }

    slapd.add_entries([entry("dora", "E501"), entry("ned", "E502"), entry("olga", "E503")])
    # Ned logs in after his termination date: ppolicy records pwdLastSuccess = now.
    slapd.connect(f"uid=ned,{PEOPLE_DN}", "ned-pw").unbind()  # type: ignore[attr-defined]
    config = write_config(tmp_path, slapd.url, datetime.now(UTC) - timedelta(days=10))

    code, report, stderr = run_audit(config, AUDITOR_PASSWORD)
    assert code == 1, stderr
    assert ldap_run(report)["status"] == "ok"
    by_rule = {(f["rule"], f["account"]["id"]) for f in report["findings"] if f["source"] == "corp-ldap"}
    assert ("used-after-termination", f"uid=ned,{PEOPLE_DN}") in by_rule
    assert ("credential-after-termination", f"uid=olga,{PEOPLE_DN}") in by_rule
    assert not any(acc == f"uid=dora,{PEOPLE_DN}" for _, acc in by_rule)
    assert report["summary"]["critical"] >= 1


@pytest.mark.parametrize("failure", ["server down", "wrong password", "untrusted certificate"])
def test_cli_audit_exits_3_when_the_directory_cannot_be_read(
    slapd: SlapdServer, tmp_path: Path, failure: str
) -> None:
    url, password, extra = slapd.url, AUDITOR_PASSWORD, ""
    expected = "invalidCredentials"
    if failure == "server down":
        url, expected = f"ldap://127.0.0.1:{free_port()}", "cannot connect"
    elif failure == "wrong password":
        password = "Wr0ng-Pass-7731"
    else:
        other_ca, _, _ = make_tls_files(tmp_path)
        url, extra, expected = slapd.ldaps_url, f'ca_file = "{other_ca}"', "CERTIFICATE_VERIFY_FAILED"
    config = write_config(tmp_path, url, datetime.now(UTC) - timedelta(days=10), extra)
    code, report, stderr = run_audit(config, password)
    assert code == 3, stderr
    run = ldap_run(report)
    assert run["status"] == "failed"
    assert expected in run["error"]
    assert "Wr0ng-Pass-7731" not in json.dumps(report) + stderr
