"""The built wheel ships both top-level packages, the migrations and the demo data."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_wheel_contains_core_connectors_migrations_and_demo(tmp_path: Path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("offboard_audit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "offboard_audit/__init__.py",
        "offboard_audit/cli/__init__.py",
        "offboard_audit/demo/hr.csv",
        "offboard_audit/report/templates/evidence.html.j2",
        "offboard_audit/migrations/env.py",
        "offboard_audit/migrations/versions/0001_initial_schema.py",
        "connectors/__init__.py",
        "connectors/hr_records/__init__.py",
        "connectors/aws_iam/__init__.py",
        "connectors/ldap/__init__.py",
        "connectors/gcp_iam/__init__.py",
    ):
        assert required in names, required
    assert not any(n.startswith("tests/") for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "offboard-audit = offboard_audit.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
