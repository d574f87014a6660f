"""Start-up cost of the ``offboard-audit`` command: CPU and wall time per invocation, and where
the import time goes (``python -X importtime``).

Each command runs ``--runs`` times in a fresh interpreter (``python -m offboard_audit``); the
figures are medians. CPU is the child's user + system time. ``imports`` is the time
``-X importtime`` reports for everything imported before and while the command ran, and the
packages that cost the most are listed for each command.

Run from the repository root:  python bench/cli_startup.py [--runs 7] [--top 6]
Goal (issue 15): ``--help`` under 0.3 s of CPU; ``audit`` imports nothing of the daemon.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

HR = "employee_id,email,name,status,termination_date\nE1,alice@example.com,Alice,active,\n"
CONFIG = '[[sources]]\nname = "hr"\ntype = "hr_csv"\npath = "hr.csv"\n'

COMMANDS: list[tuple[str, list[str]]] = [
    ("--help", ["--help"]),
    ("--version", ["--version"]),
    ("audit --help", ["audit", "--help"]),
    ("audit (HR file only)", ["audit", "--format", "json"]),
    ("findings", ["findings", "--format", "json"]),
    ("daemon --help", ["daemon", "--help"]),
]

_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


def run(args: list[str], cwd: Path, importtime: bool = False) -> tuple[float, float, str]:
    """(CPU seconds, wall seconds, stderr) of one ``python -m offboard_audit ARGS``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFFBOARD_AUDIT")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "offboard_audit", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"offboard-audit {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall, proc.stderr


def import_profile(stderr: str) -> tuple[float, int, dict[str, float]]:
    """(total import seconds, modules imported, seconds per package).

    A package's figure is the sum of the self times of its modules (the time spent in its own
    module bodies, not in what they import), so the figures add up and say which dependency
    costs what.
    """
    total_us = 0
    modules = 0
    per_package: dict[str, float] = defaultdict(float)
    for line in stderr.splitlines():
        m = _LINE.match(line)
        if not m:
            continue
        modules += 1
        total_us += int(m.group(1))
        per_package[m.group(4).split(".")[0]] += int(m.group(1)) / 1e6
    return total_us / 1e6, modules, dict(per_package)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=7, help="runs per command (median reported)")
    parser.add_argument("--top", type=int, default=6, help="heaviest packages listed per command")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="offboard-audit-startup-") as tmp:
        cwd = Path(tmp)
        (cwd / "hr.csv").write_text(HR)
        (cwd / "offboard-audit.toml").write_text(CONFIG)
        run(["audit", "--format", "json"], cwd)  # creates the database: later runs only read it
        print(f"python {sys.version.split()[0]}, {args.runs} runs per command, medians\n")
        print(f"{'command':24s} {'CPU':>7s} {'wall':>7s} {'imports':>8s} {'modules':>8s}")
        details: list[str] = []
        for label, cmd in COMMANDS:
            samples = [run(cmd, cwd) for _ in range(args.runs)]
            cpu = statistics.median(s[0] for s in samples)
            wall = statistics.median(s[1] for s in samples)
            imports, modules, packages = import_profile(run(cmd, cwd, importtime=True)[2])
            print(f"{label:24s} {cpu:6.2f}s {wall:6.2f}s {imports:7.2f}s {modules:8d}")
            heaviest = sorted(packages.items(), key=lambda kv: -kv[1])[: args.top]
            details.append(f"  {label}: " + ", ".join(f"{name} {secs:.2f}s" for name, secs in heaviest))
        print("\nheaviest packages per command (-X importtime: self time of their modules):")
        print("\n".join(details))


if __name__ == "__main__":
    main()
