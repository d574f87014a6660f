"""The CLI as a user runs it: a subprocess, a config file, exit codes and output formats."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from offboard_audit.config.registry import plugin_for

HR = "employee_id,email,name,status,termination_date,aliases\nE1,alice@example.com,Alice,active,,\nE2,bob@example.com,Bob,terminated,2026-01-01,\n"


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("OFFBOARD_AUDIT")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "offboard_audit", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=120,
    )


def write_config(tmp_path: Path, extra: str = "", hr: str = HR) -> Path:
    (tmp_path / "hr.csv").write_text(hr)
    cfg = tmp_path / "offboard-audit.toml"
    cfg.write_text(f'[[sources]]\nname = "hr"\ntype = "hr_csv"\npath = "hr.csv"\n{extra}')
    return cfg


def test_demo_needs_no_config_and_finds_critical_and_high(tmp_path: Path):
    proc = cli("demo", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert set(doc) == {"run", "findings", "summary"}
    assert {s["status"] for s in doc["run"]["sources"]} == {"ok"}
    assert {s["system"] for s in doc["run"]["sources"]} >= {"hr", "ldap", "aws_iam", "gcp_iam"}
    rules = {(f["rule"], f["severity"]) for f in doc["findings"]}
    assert ("used-after-termination", "critical") in rules
    assert ("credential-after-termination", "high") in rules
    assert doc["summary"]["critical"] >= 1 and doc["summary"]["high"] >= 1
    bob = [f for f in doc["findings"] if f["person"] and f["person"]["employee_id"] == "E1002"]
    assert bob and all(f["person"]["terminated_at"].endswith("+00:00") for f in bob)
    # Nobody who is active, on leave, rehired or only future-dated shows up as a leaver.
    leavers = {f["person"]["employee_id"] for f in doc["findings"] if f["person"]}
    assert leavers <= {"E1002", "E1003", "E1007"}
    assert not list(tmp_path.iterdir()), "the demo must not write into the working directory"


def test_demo_csv_has_a_header_and_a_row_per_finding(tmp_path: Path):
    proc = cli("demo", "--format", "csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert rows and {"id", "rule", "severity", "credential_id", "employee_id"} <= set(rows[0])


def test_audit_hr_only_is_clean_exit_0_and_stores_the_run(tmp_path: Path):
    write_config(tmp_path)
    proc = cli("audit", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["findings"] == [] and doc["run"]["sources"][0]["counts"]["people"] == 2
    assert (tmp_path / "offboard-audit.db").exists()
    again = cli("findings", "--format", "json", cwd=tmp_path)
    assert again.returncode == 0 and json.loads(again.stdout)["findings"] == []


def test_output_file_and_table_format(tmp_path: Path):
    write_config(tmp_path)
    proc = cli("audit", "--output", str(tmp_path / "report.txt"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "report.txt").read_text()
    assert "sources" in text and "no findings" in text


def test_unreadable_hr_file_is_a_failed_source_exit_3(tmp_path: Path):
    write_config(tmp_path)
    (tmp_path / "hr.csv").unlink()
    proc = cli("audit", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 3, proc.stderr
    (hr,) = json.loads(proc.stdout)["run"]["sources"]
    assert hr["status"] == "failed" and "cannot read HR file" in hr["error"]


def test_a_failed_hr_source_is_stale_only_when_it_has_earlier_data(tmp_path: Path):
    # README: a source that fails on its first run has no earlier data and says so; it claimed
    # "failed (stale data)" with nothing stored.
    write_config(tmp_path)
    hr_file = tmp_path / "hr.csv"
    hr_file.rename(tmp_path / "hr.later")
    first = cli("audit", "--format", "json", cwd=tmp_path)
    assert first.returncode == 3, first.stderr
    (hr,) = json.loads(first.stdout)["run"]["sources"]
    assert hr["status"] == "failed" and hr["stale"] is False and hr["counts"] == {"people": 0}
    assert "no earlier data" in hr["error"]
    table = cli("audit", cwd=tmp_path, env={"COLUMNS": "200"})
    assert table.returncode == 3 and "failed (stale data)" not in table.stdout
    assert "no earlier data" in table.stdout
    # With a good read stored, the next failure uses it: stale.
    (tmp_path / "hr.later").rename(hr_file)
    assert cli("audit", cwd=tmp_path).returncode == 0
    hr_file.unlink()
    later = cli("audit", "--format", "json", cwd=tmp_path)
    (hr,) = json.loads(later.stdout)["run"]["sources"]
    assert hr["status"] == "failed" and hr["stale"] is True and hr["counts"] == {"people": 2}
    assert "no earlier data" not in hr["error"]


def test_bad_hr_rows_mark_the_run_degraded_but_keep_the_good_rows(tmp_path: Path):
    write_config(tmp_path, hr=HR + "E3,,Nobody,retired,,\n")
    proc = cli("audit", "--format", "json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (hr,) = json.loads(proc.stdout)["run"]["sources"]
    assert hr["status"] == "degraded" and hr["counts"] == {"people": 2, "bad_rows": 1}
    assert "line 4" in hr["warnings"][0]


def test_missing_hr_column_is_a_usage_error_exit_2_naming_the_column(tmp_path: Path):
    write_config(tmp_path, hr="employee_id,email,name,status\nE1,a@x.com,A,active\n")
    proc = cli("audit", cwd=tmp_path)
    assert proc.returncode == 2
    assert "termination_date" in proc.stderr


def test_config_errors_exit_2_with_key_and_line(tmp_path: Path):
    write_config(tmp_path, extra='\n[policy]\ngrace_period = "soon"\n')
    proc = cli("audit", cwd=tmp_path)
    assert proc.returncode == 2
    assert "policy.grace_period" in proc.stderr and "line 7" in proc.stderr


def test_unknown_source_type_exit_2(tmp_path: Path):
    write_config(tmp_path, extra='\n[[sources]]\nname = "x"\ntype = "okta"\n')
    proc = cli("config", "check", cwd=tmp_path)
    assert proc.returncode == 2 and "sources[1].type" in proc.stderr and "okta" in proc.stderr


def test_an_unsupported_database_is_a_config_error_not_an_internal_error(tmp_path: Path):
    # mysql:// passed config check; every command then said "internal error ... this is a bug".
    write_config(tmp_path, extra='\n[database]\nurl = "mysql://app:s3cret@db.example.org/audit"\n')
    proc = cli("config", "check", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "line 7: database.url: mysql://app:***@db.example.org/audit is a mysql database" in proc.stderr
    # Without a config file, --db alone (log verify, db upgrade).
    (tmp_path / "offboard-audit.toml").unlink()
    bare = cli("--db", "mysql://app:s3cret@db.example.org/audit", "log", "verify", cwd=tmp_path)
    assert bare.returncode == 2, bare.stderr
    assert "--db (or $OFFBOARD_AUDIT_DB): mysql://app:***@db.example.org/audit" in bare.stderr
    assert "s3cret" not in proc.stderr + bare.stderr and "internal error" not in proc.stderr + bare.stderr


def test_missing_config_file_exit_2_and_points_to_the_demo(tmp_path: Path):
    proc = cli("audit", cwd=tmp_path)
    assert proc.returncode == 2 and "offboard-audit demo" in proc.stderr


def test_usage_errors_exit_2(tmp_path: Path):
    write_config(tmp_path)
    assert cli("audit", "--format", "xml", cwd=tmp_path).returncode == 2
    assert cli("audit", "--fail-on", "severe", cwd=tmp_path).returncode == 2
    assert cli("audit", "--source", "nope", cwd=tmp_path).returncode == 2
    assert cli("no-such-command", cwd=tmp_path).returncode == 2


def test_config_env_var_and_db_flag_are_honoured(tmp_path: Path):
    cfg = write_config(tmp_path / "etc" if (tmp_path / "etc").mkdir() is None else tmp_path)
    db = tmp_path / "elsewhere.db"
    proc = cli("--db", f"sqlite:///{db}", "audit", cwd=tmp_path, env={"OFFBOARD_AUDIT_CONFIG": str(cfg)})
    assert proc.returncode == 0, proc.stderr
    assert db.exists()


def test_config_check_shows_the_next_runs_of_each_schedule_on_the_days_cron_means(tmp_path: Path):
    write_config(
        tmp_path,
        extra='\n[schedule]\naudit = "0 3 * * 0"\nhr_refresh = "30 6 1 * mon"\ntimezone = "Asia/Tokyo"\n',
    )
    proc = cli("config", "check", cwd=tmp_path, env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    runs = {}
    for key in ("audit", "hr_refresh"):
        (line,) = [ln for ln in proc.stdout.splitlines() if ln.startswith(f"schedule.{key} = ")]
        assert "(Asia/Tokyo): next runs " in line
        runs[key] = [
            datetime.strptime(t.strip()[4:], "%Y-%m-%d %H:%M:%S")
            for t in line.split("next runs ")[1].split(",")
        ]
    # The calendar is the oracle: day of week 0 is Sunday; "1 * mon" is the 1st or a Monday.
    assert len(runs["audit"]) == 3 and all(
        t.weekday() == 6 and (t.hour, t.minute) == (3, 0) for t in runs["audit"]
    )
    assert len(runs["hr_refresh"]) == 3
    assert all((t.day == 1 or t.weekday() == 0) and (t.hour, t.minute) == (6, 30) for t in runs["hr_refresh"])
    assert runs["audit"] == sorted(runs["audit"]) and len(set(runs["audit"])) == 3


def test_config_check_refuses_a_schedule_that_never_fires(tmp_path: Path):
    write_config(tmp_path, extra='\n[schedule]\nhr_refresh = "0 0 31 2 *"\n')  # 31 February
    proc = cli("config", "check", cwd=tmp_path)
    assert proc.returncode == 2
    assert "schedule.hr_refresh" in proc.stderr and "'0 0 31 2 *' never fires" in proc.stderr


def test_config_check_says_ok_only_after_every_check_passed(tmp_path: Path):
    # The schedule is checked last; "ok", the permissions and the policy were printed before it.
    write_config(tmp_path, extra='\n[schedule]\naudit = "0 0 31 2 *"\n')
    proc = cli("config", "check", cwd=tmp_path)
    assert proc.returncode == 2
    assert "schedule.audit" in proc.stderr and "never fires" in proc.stderr
    assert proc.stdout == ""


def test_config_check_refuses_an_unknown_time_zone_naming_the_key(tmp_path: Path):
    write_config(tmp_path, extra='\n[schedule]\ntimezone = "Europe/Atlantis"\n')
    proc = cli("config", "check", cwd=tmp_path)
    assert proc.returncode == 2
    assert "schedule.timezone" in proc.stderr and "unknown time zone 'Europe/Atlantis'" in proc.stderr


def test_config_check_prints_permissions_of_every_source(tmp_path: Path):
    write_config(
        tmp_path,
        extra='\n[[sources]]\nname = "aws-main"\ntype = "aws_iam"\nregion = "us-east-1"\n',
    )
    proc = cli("config", "check", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "iam:GenerateCredentialReport" in proc.stdout
    assert "iam:UpdateAccessKey" in proc.stdout


def test_config_check_prints_bracketed_permissions_verbatim(tmp_path: Path):
    # "([sources.exposure])" names the config table a permission is for; as rich markup it was
    # taken for a style tag and dropped ("s3:ListBucket ()").
    write_config(
        tmp_path,
        extra='\n[[sources]]\nname = "aws-main"\ntype = "aws_iam"\nregion = "us-east-1"\n',
    )
    proc = cli("config", "check", cwd=tmp_path, env={"COLUMNS": "250"})
    assert proc.returncode == 0, proc.stderr
    assert "s3:ListBucket ([sources.exposure])" in proc.stdout
    assert "cloudtrail:StartQuery ([sources.exposure] lake_event_data_store)" in proc.stdout
    table_lines = [line.split("│") for line in proc.stdout.splitlines() if line.startswith("│")]
    read_needs = [cells[3].strip() for cells in table_lines if len(cells) > 3 and cells[3].strip()]
    assert read_needs == [*plugin_for("hr_csv").read_permissions, *plugin_for("aws_iam").read_permissions]


def test_config_check_warns_of_a_missing_hr_file_and_an_unset_webhook_secret(tmp_path: Path):
    # Both passed silently; audit then failed the source (exit 3) and the daemon refused to start
    # (exit 2). Warnings, not errors: the export may be written later, the secret may be set only
    # in the daemon's environment.
    webhook = '\n[webhook]\nsecret_env = "OA_TEST_HOOK_SECRET"\n'
    cfg = write_config(tmp_path, extra=webhook)
    cfg.write_text(cfg.read_text().replace('path = "hr.csv"', 'path = "later.csv"'))
    proc = cli("config", "check", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: ")
    assert proc.stderr.splitlines() == [
        f"warning: line 4: sources[0].path: HR file {(tmp_path / 'later.csv').resolve()} does not exist "
        "(yet): audits fail on this source until it is there",
        "warning: line 7: webhook.secret_env: environment variable OA_TEST_HOOK_SECRET is not set: the "
        "daemon will refuse to start its webhook (set it there, or set [webhook] enabled = false, or run "
        "it with --no-webhook)",
    ]
    (tmp_path / "later.csv").write_text(HR)
    ready = cli("config", "check", cwd=tmp_path, env={"OA_TEST_HOOK_SECRET": "s"})
    assert ready.returncode == 0 and ready.stderr == ""
    cfg.write_text(cfg.read_text().replace("[webhook]\n", "[webhook]\nenabled = false\n"))
    no_webhook = cli("config", "check", cwd=tmp_path)
    assert no_webhook.returncode == 0 and no_webhook.stderr == ""
