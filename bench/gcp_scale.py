"""Scale benchmark of the gcp_iam source against the local fake endpoints.

Default shape: 50 projects x 200 user bindings x 20 service accounts with 2 user-managed
keys each. Measures the bulk pass (``collect``) and the detail pass for the service
accounts owned by leavers (with ``key_last_auth``), through the real client libraries,
and prints wall time and API calls per project. A second bulk scan with ten times as many
people bound per project shows that calls per project do not depend on the head count.

    python bench/gcp_scale.py [--projects 50] [--bindings 200] [--service-accounts 20]
                              [--keys 2] [--workers 8] [--cli]

``--cli`` also runs ``offboard-audit audit --format json`` end to end (HR file + the fakes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from connectors.gcp_iam import PLUGIN, GcpIamSource  # noqa: E402
from offboard_audit.core.options import SourceOptions  # noqa: E402
from offboard_audit.core.protocols import SourceContext  # noqa: E402
from tests.support.gcp import FakeGcp, GcpFakeState  # noqa: E402

NOW = datetime(2026, 11, 27, tzinfo=UTC)
ROLES = (
    "roles/viewer",
    "roles/editor",
    "roles/browser",
    "roles/logging.viewer",
    "roles/storage.objectViewer",
)


def seed(state: GcpFakeState, projects: int, bindings: int, sas: int, keys: int) -> list[str]:
    """People person0..personN-1; every 50th person left; every 10th service account has an owner."""
    names = []
    for p in range(projects):
        project = f"bench-{p:03d}"
        names.append(project)
        state.add_project(project, parent="organizations/4242")
        for b in range(bindings):
            person = (p * 37 + b) % max(bindings * 5, 1)
            state.bind(project, ROLES[b % len(ROLES)], f"user:person{person}@example.com")
        for s in range(sas):
            description = f"owner: person{(p + s) % 500}@example.com" if s % 10 == 0 else "batch job"
            sa = state.add_service_account(project, f"sa-{s:02d}", description=description)
            for k in range(keys):
                state.add_key(
                    sa.email, created=NOW - timedelta(days=30 * (k + 1)), last_auth=NOW - timedelta(days=k)
                )
    return names


def scan(fake: FakeGcp, workers: int, key_last_auth: bool) -> tuple[GcpIamSource, float, object]:
    table = fake.source_table(
        "bench", organization="organizations/4242", max_workers=workers, key_last_auth=key_last_auth
    )
    source = PLUGIN.make_source(SourceOptions(table), SourceContext(base_dir=REPO))
    assert isinstance(source, GcpIamSource)
    start = time.perf_counter()
    data = source.collect()
    return source, time.perf_counter() - start, data


def calls_per_project(state: GcpFakeState, projects: list[str]) -> list[int]:
    return [state.calls_for(p) for p in projects]


def run_shape(args: argparse.Namespace, bindings: int, detail: bool) -> dict[str, float]:
    fake = FakeGcp().start()
    try:
        t0 = time.perf_counter()
        projects = seed(fake.state, args.projects, bindings, args.service_accounts, args.keys)
        seed_s = time.perf_counter() - t0
        source, collect_s, data = scan(fake, args.workers, key_last_auth=detail)
        bulk_calls = calls_per_project(fake.state, projects)
        search_calls = sum(n for (m, _p), n in fake.state.calls.items() if m.startswith("rm.Search"))
        result = {
            "bindings_per_project": bindings,
            "seed_s": round(seed_s, 2),
            "collect_s": round(collect_s, 3),
            "accounts": len(data.accounts),  # type: ignore[attr-defined]
            "credentials": len(data.credentials),  # type: ignore[attr-defined]
            "calls_per_project_min": min(bulk_calls),
            "calls_per_project_max": max(bulk_calls),
            "calls_per_project_mean": round(statistics.mean(bulk_calls), 2),
            "project_search_calls": search_calls,
        }
        if detail:
            # The core asks only about accounts matched to leavers: here, the owned service accounts.
            owned = [a for a in data.accounts if a.attribute_values("owner")]  # type: ignore[attr-defined]
            fake.state.reset_calls()
            start = time.perf_counter()
            extra = source.detail(owned)
            result["detail_accounts"] = len(owned)
            result["detail_s"] = round(time.perf_counter() - start, 3)
            result["detail_calls"] = sum(fake.state.calls.values())
            result["detail_warnings"] = len(extra.warnings)
        source.close()
        return result
    finally:
        fake.stop()


def run_cli(args: argparse.Namespace) -> dict[str, float | str]:
    fake = FakeGcp().start()
    try:
        seed(fake.state, args.projects, args.bindings, args.service_accounts, args.keys)
        with tempfile.TemporaryDirectory() as tmp:
            hr = Path(tmp) / "hr.csv"
            rows = ["employee_id,email,name,status,termination_date,aliases"]
            for i in range(args.bindings * 5):
                status, left = ("terminated", "2026-06-01") if i % 50 == 0 else ("active", "")
                rows.append(f"E{i:05d},person{i}@example.com,Person {i},{status},{left},")
            hr.write_text("\n".join(rows) + "\n")
            config = Path(tmp) / "offboard-audit.toml"
            config.write_text(
                f'[database]\nurl = "sqlite:///{tmp}/audit.db"\n\n'
                "[policy]\nmax_new_terminations = 1.0\n\n"
                '[[sources]]\nname = "hr"\ntype = "hr_csv"\npath = "hr.csv"\n\n'
                f'[[sources]]\nname = "gcp"\ntype = "gcp_iam"\norganization = "organizations/4242"\n'
                f'iam_endpoint = "{fake.iam_endpoint}"\nresource_manager_endpoint = "{fake.rest_url}"\n'
                f'policy_analyzer_endpoint = "{fake.rest_url}"\nkey_last_auth = true\n'
            )
            env = {k: v for k, v in os.environ.items() if not k.startswith("OFFBOARD_AUDIT_")}
            start = time.perf_counter()
            proc = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "offboard_audit",
                    "--config",
                    str(config),
                    "audit",
                    "--format",
                    "json",
                ],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            wall = time.perf_counter() - start
            report = json.loads(proc.stdout) if proc.stdout.strip() else {}
            return {
                "cli_exit": proc.returncode,
                "cli_wall_s": round(wall, 2),
                "cli_findings": len(report.get("findings", [])),
                "cli_stderr_tail": proc.stderr.strip().splitlines()[-1]
                if proc.returncode > 1 and proc.stderr
                else "",
            }
    finally:
        fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--projects", type=int, default=50)
    parser.add_argument("--bindings", type=int, default=200)
    parser.add_argument("--service-accounts", type=int, default=20)
    parser.add_argument("--keys", type=int, default=2)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--cli", action="store_true", help="also time the full CLI audit")
    args = parser.parse_args()
    print(
        f"shape: {args.projects} projects x {args.bindings} bindings x {args.service_accounts} service accounts "
        f"x {args.keys} keys, {args.workers} workers"
    )
    main_run = run_shape(args, args.bindings, detail=True)
    print("bulk + detail:", json.dumps(main_run))
    more_people = run_shape(args, args.bindings * 10, detail=False)
    print("10x people:   ", json.dumps(more_people))
    same = (
        main_run["calls_per_project_max"] == more_people["calls_per_project_max"]
        and main_run["calls_per_project_min"] == more_people["calls_per_project_min"]
    )
    print(f"calls per project independent of people: {same}")
    if args.cli:
        print("cli:", json.dumps(run_cli(args)))


if __name__ == "__main__":
    main()
