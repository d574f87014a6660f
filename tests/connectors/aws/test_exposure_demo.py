"""The demo's exposure story: a leaver who read a signing secret that was never rotated (critical),
and one who created an access key for a service user (persistence), from real CloudTrail files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_demo_shows_the_unrotated_signing_key_and_the_key_left_for_a_service_user(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "offboard_audit", "demo", "--format", "json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    body = json.loads(out.stdout)
    exposure = sorted(
        (
            f["rule"],
            f["severity"],
            f["person"]["employee_id"],
            f["credential"]["kind"],
            f["owner"]["via"],
            [a["event_id"] for a in f["exposure"]],
        )
        for f in body["findings"]
        if f["rule"] in ("secret-exposed-to-leaver", "persistence-left-by-leaver")
        and f["system"] == "aws_iam"
    )
    assert exposure == [
        (
            "persistence-left-by-leaver",
            "high",
            "E1003",
            "access_key",
            "unassigned",
            ["demo-key-for-svc-build"],
        ),
        ("secret-exposed-to-leaver", "critical", "E1002", "secret", "owner-tag", ["demo-read-signing-key"]),
    ]
    run = {s["name"]: s for s in body["run"]["sources"]}
    assert run["aws-demo/exposure"]["status"] == "ok" and run["aws-demo/exposure"]["failed_scopes"] == []
