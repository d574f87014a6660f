"""``audit --source`` reads only some sources: its output says how many findings stay open in the
sources it did not read (``findings`` and ``revoke`` still act on them), instead of a bare
"no findings"; its exit code speaks for the sources it read (README "Exit codes"). Through the
CLI in a subprocess, with the fake connector."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from tests.support.fake_connector import FakeWorld, fake_env, standard_world


def cli(w: FakeWorld, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "offboard_audit", "--config", str(w.config_path), *args],
        capture_output=True,
        text=True,
        env={**fake_env(), "COLUMNS": "160"},
        timeout=120,
    )


def world(tmp_path: Path) -> FakeWorld:
    """Open high (and medium) findings stored by a full audit, all from the source ``fake``."""
    w = standard_world(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    w.write_config()
    assert cli(w, "audit", "--fail-on", "none").returncode == 0
    return w


def test_an_audit_of_hr_only_counts_the_open_findings_of_the_sources_it_did_not_read(tmp_path: Path) -> None:
    w = world(tmp_path)
    stored = json.loads(cli(w, "findings", "--format", "json").stdout)["findings"]
    expected = Counter(f["severity"] for f in stored)
    assert expected["high"] > 0 and {f["source"] for f in stored} == {"fake"}

    as_json = cli(w, "audit", "--source", "hr", "--format", "json")
    as_table = cli(w, "audit", "--source", "hr")

    body = json.loads(as_json.stdout)
    assert body["findings"] == [] and body["summary"]["high"] == 0
    assert body["not_read"]["open_findings"] == len(stored)
    assert body["not_read"]["sources"] == ["fake"]
    assert {k: v for k, v in body["not_read"]["summary"].items() if v} == dict(expected)
    lines = as_table.stdout.splitlines()
    assert f"{len(stored)} open findings from sources not read in this run" in as_table.stdout
    assert "no findings" not in lines  # the bare all-clear line
    assert "no findings in the sources this run read" in lines
    # They are still there for `findings` (and `revoke`) to act on.
    again = json.loads(cli(w, "findings", "--format", "json").stdout)["findings"]
    assert sorted(f["id"] for f in again) == sorted(f["id"] for f in stored)


def test_fail_on_counts_the_findings_of_the_sources_the_run_read_only(tmp_path: Path) -> None:
    w = world(tmp_path)

    hr_only = cli(w, "audit", "--source", "hr", "--fail-on", "high")
    fake_only = cli(w, "audit", "--source", "fake", "--fail-on", "high", "--format", "json")
    everything = cli(w, "audit", "--fail-on", "high", "--format", "json")

    # The open high findings of `fake` were not checked again: said, but not an exit 1.
    assert hr_only.returncode == 0, hr_only.stdout + hr_only.stderr
    assert "open findings from sources not read in this run" in hr_only.stdout
    assert fake_only.returncode == 1 and everything.returncode == 1
    for proc in (fake_only, everything):  # every source with findings read: nothing apart
        assert "not_read" not in json.loads(proc.stdout)


def test_a_csv_audit_of_hr_only_says_on_stderr_that_open_findings_are_left_out(tmp_path: Path) -> None:
    w = world(tmp_path)
    n = len(json.loads(cli(w, "findings", "--format", "json").stdout)["findings"])

    proc = cli(w, "audit", "--source", "hr", "--format", "csv")

    assert proc.returncode == 0
    assert len(proc.stdout.splitlines()) == 1  # the header: no finding of the run
    said = " ".join(proc.stderr.split())
    assert f"{n} open findings from sources not read in this run are not in the CSV" in said
