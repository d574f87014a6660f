"""Issue 11 item 8: the database password is never printed, and can come from the environment
(``[database] password_env``) instead of the URL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from offboard_audit.config import load_config, mask_url
from offboard_audit.core.errors import ConfigError
from offboard_audit.storage.db import redact

PASSWORD = "s3cr3t-P@ss:w/rd"
HR = "employee_id,email,name,status,termination_date,aliases\nE1,alice@example.com,Alice,active,,\n"


def cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("OFFBOARD_AUDIT")}
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "offboard_audit", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=full,
        timeout=120,
    )


def write_config(tmp_path: Path, database: str) -> Path:
    (tmp_path / "hr.csv").write_text(HR)
    cfg = tmp_path / "offboard-audit.toml"
    cfg.write_text(f'[database]\n{database}\n\n[[sources]]\nname = "hr"\ntype = "hr_csv"\npath = "hr.csv"\n')
    return cfg


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+psycopg://app:hunter2@db.internal:5432/audit", "postgresql+psycopg://app:***@db.internal:5432/audit"),
        ("postgresql://app:p%40ss@db/audit?sslmode=require", "postgresql://app:***@db/audit?sslmode=require"),
        ("postgresql://app@db/audit?password=hunter2&sslmode=require", "postgresql://app@db/audit?password=***&sslmode=require"),
        ("postgresql://app@db/audit", "postgresql://app@db/audit"),
        ("sqlite:////var/lib/offboard-audit.db", "sqlite:////var/lib/offboard-audit.db"),
    ],
)  # fmt: skip
def test_mask_url_hides_the_password_wherever_the_url_carries_it(url: str, shown: str) -> None:
    assert mask_url(url) == shown


def test_redact_masks_the_password_in_error_text_raw_or_percent_encoded() -> None:
    url = "postgresql://app:p%40ss/w@db/audit"
    message = f"could not connect with {url}: password 'p@ss/w' rejected (p%40ss%2Fw)"
    assert "p@ss" not in redact(message, url) and "p%40ss" not in redact(message, url)


def test_config_check_prints_the_database_url_without_its_password(tmp_path: Path) -> None:
    write_config(tmp_path, f'url = "postgresql+psycopg://auditor:{PASSWORD}@127.0.0.1:1/audit"')
    proc = cli(tmp_path, "config", "check")
    assert proc.returncode == 0, proc.stderr
    assert "auditor:***@127.0.0.1:1/audit" in proc.stdout
    assert PASSWORD not in proc.stdout + proc.stderr and "s3cr3t" not in proc.stdout + proc.stderr


def test_password_env_puts_the_password_in_the_url_used_and_nowhere_printed(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path,
        'url = "postgresql+psycopg://auditor@127.0.0.1:1/audit"\npassword_env = "OFFBOARD_TEST_DB_PASSWORD"',
    )
    config = load_config(cfg, env={"OFFBOARD_TEST_DB_PASSWORD": PASSWORD})
    assert make_url(config.database_url).password == PASSWORD
    assert PASSWORD not in repr(config) and PASSWORD not in config.database_url_masked
    proc = cli(tmp_path, "config", "check", env={"OFFBOARD_TEST_DB_PASSWORD": PASSWORD})
    assert proc.returncode == 0, proc.stderr
    assert "auditor:***@127.0.0.1:1/audit, password from $OFFBOARD_TEST_DB_PASSWORD" in proc.stdout
    assert "s3cr3t" not in proc.stdout + proc.stderr
    # A command that fails to reach the database does not print it either.
    proc = cli(tmp_path, "findings", env={"OFFBOARD_TEST_DB_PASSWORD": PASSWORD})
    assert proc.returncode != 0 and "s3cr3t" not in proc.stdout + proc.stderr


def test_password_env_unset_or_next_to_a_password_in_the_url_is_a_config_error(tmp_path: Path) -> None:
    cfg = write_config(
        tmp_path,
        'url = "postgresql+psycopg://auditor@127.0.0.1/audit"\npassword_env = "OFFBOARD_TEST_DB_PASSWORD"',
    )
    with pytest.raises(ConfigError, match="OFFBOARD_TEST_DB_PASSWORD is not set"):
        load_config(cfg, env={})
    cfg = write_config(
        tmp_path, f'url = "postgresql+psycopg://auditor:{PASSWORD}@127.0.0.1/audit"\npassword_env = "X"'
    )
    with pytest.raises(ConfigError, match="already has a password") as caught:
        load_config(cfg, env={"X": "other"})
    assert "s3cr3t" not in str(caught.value)


@pytest.mark.postgres
def test_password_env_against_postgresql(postgres_url: str, tmp_path: Path) -> None:
    # The test server trusts local connections, so this proves the URL is built and used, not
    # that the server checked the password.
    write_config(tmp_path, f'url = "{postgres_url}"\npassword_env = "OFFBOARD_TEST_DB_PASSWORD"')
    proc = cli(tmp_path, "audit", "--format", "json", env={"OFFBOARD_TEST_DB_PASSWORD": PASSWORD})
    assert proc.returncode == 0, proc.stderr
    proc = cli(tmp_path, "log", "verify", env={"OFFBOARD_TEST_DB_PASSWORD": PASSWORD})
    assert proc.returncode == 0 and "s3cr3t" not in proc.stdout + proc.stderr
