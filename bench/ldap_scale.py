"""How long a ``--source`` audit of a large OpenLDAP directory takes, and how much memory.

Loads N people (default 20,000; each with mail, employeeNumber, an SSH key, and a membership
in one of N/1000 groups) into a throwaway slapd with ``slapadd``, writes a matching HR file
(5% terminated, a fifth of those with a login after termination), then runs

    python -m offboard_audit --config <tmp>/offboard-audit.toml audit --source corp-ldap --format json

as a subprocess and prints its wall time, peak RSS and finding counts, plus the time of the
source's bulk pass alone (in process). Aim: 20,000 entries read and evaluated in under 10 s.

Usage: python bench/ldap_scale.py [--entries N] [--page-size P] [--keep]
Needs the Debian packages slapd and ldap-utils (as the tests do).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.slapd import (  # noqa: E402
    AUDITOR_DN,
    AUDITOR_PASSWORD,
    GROUPS_DN,
    PEOPLE_DN,
    start_slapd,
)


def fake_ed25519(i: int) -> str:
    # A well-formed key blob (type string + 32 bytes) derived from i: unique and deterministic.
    body = hashlib.sha256(f"bench-key-{i}".encode()).digest()
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + body
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} user{i}@bench"


def write_data(workdir: Path, n: int, now: datetime) -> tuple[Path, Path, dict[str, int]]:
    ldif = workdir / "bench.ldif"
    hr = workdir / "hr.csv"
    terminated_at = now - timedelta(days=30)
    expected = {"terminated": 0, "used_after": 0}
    groups = max(1, n // 1000)
    members: dict[int, list[str]] = {g: [] for g in range(groups)}
    with ldif.open("w", encoding="utf-8") as out, hr.open("w", encoding="utf-8") as hr_out:
        hr_out.write("employee_id,email,name,status,termination_date,aliases\n")
        for i in range(n):
            uid = f"user{i:06d}"
            dn = f"uid={uid},{PEOPLE_DN}"
            members[i % groups].append(dn)
            terminated = i % 20 == 0
            used_after = terminated and i % 100 == 0
            last = terminated_at + timedelta(days=3) if used_after else terminated_at - timedelta(days=2)
            out.write(
                f"dn: {dn}\nobjectClass: inetOrgPerson\nobjectClass: ldapPublicKey\nuid: {uid}\n"
                f"cn: User {i}\nsn: {i}\nmail: {uid}@bench.example\nemployeeNumber: B{i:06d}\n"
                f"sshPublicKey: {fake_ed25519(i)}\npwdLastSuccess: {last:%Y%m%d%H%M%SZ}\n\n"
            )
            status = "terminated" if terminated else "active"
            when = terminated_at.isoformat() if terminated else ""
            hr_out.write(f"B{i:06d},{uid}@bench.example,User {i},{status},{when},{uid}\n")
            expected["terminated"] += terminated
            expected["used_after"] += used_after
        for g, dns in members.items():
            out.write(f"dn: cn=team{g},{GROUPS_DN}\nobjectClass: groupOfNames\ncn: team{g}\n")
            out.writelines(f"member: {dn}\n" for dn in dns)
            out.write("\n")
    return ldif, hr, expected


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--keep", action="store_true", help="keep the temp directory")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="offboard-ldap-bench-"))
    now = datetime.now(UTC)
    server = None
    try:
        t0 = time.perf_counter()
        ldif, hr, expected = write_data(workdir, args.entries, now)
        server = start_slapd(workdir / "slapd", extra_ldif=ldif)
        load_s = time.perf_counter() - t0
        config = workdir / "offboard-audit.toml"
        config.write_text(
            f"""
[database]
url = "sqlite:///audit.db"

[policy]
max_new_terminations = 1.0

[[sources]]
name = "hr"
type = "hr_csv"
path = "{hr}"

[[sources]]
name = "corp-ldap"
type = "ldap"
url = "{server.url}"
bind_dn = "{AUDITOR_DN}"
password_env = "LDAP_BIND_PASSWORD"
base_dn = "{PEOPLE_DN}"
group_base_dn = "{GROUPS_DN}"
dialect = "openldap"
page_size = {args.page_size}
""",
            encoding="utf-8",
        )

        # The source's bulk pass alone, in process.
        from connectors.ldap import PLUGIN
        from offboard_audit.core.options import SourceOptions
        from offboard_audit.core.protocols import SourceContext

        table = {
            "name": "corp-ldap",
            "type": "ldap",
            "url": server.url,
            "bind_dn": AUDITOR_DN,
            "password_env": "P",
            "base_dn": PEOPLE_DN,
            "group_base_dn": GROUPS_DN,
            "page_size": args.page_size,
        }
        src = PLUGIN.make_source(SourceOptions(table), SourceContext(workdir, env={"P": AUDITOR_PASSWORD}))
        t1 = time.perf_counter()
        data = src.collect()  # type: ignore[union-attr]
        collect_s = time.perf_counter() - t1

        env = {**os.environ, "LDAP_BIND_PASSWORD": AUDITOR_PASSWORD, "PYTHONPATH": str(REPO)}
        cmd = [
            sys.executable,
            "-m",
            "offboard_audit",
            "--config",
            str(config),
            "audit",
            "--source",
            "corp-ldap",
            "--format",
            "json",
            "--output",
            str(workdir / "report.json"),
        ]
        t2 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, cwd=workdir, capture_output=True, text=True, check=False)
        audit_s = time.perf_counter() - t2
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        report = (
            json.loads((workdir / "report.json").read_text()) if (workdir / "report.json").exists() else {}
        )
        findings = report.get("findings", [])
        rules: dict[str, int] = {}
        for f in findings:
            rules[f["rule"]] = rules.get(f["rule"], 0) + 1
        print(f"entries:               {args.entries} (+{max(1, args.entries // 1000)} groups)")
        print(f"generate + slapadd:    {load_s:.2f} s")
        print(
            f"source bulk pass:      {collect_s:.2f} s  ({len(data.accounts)} accounts, "
            f"{len(data.credentials)} credentials)"
        )
        print(f"CLI audit --source:    {audit_s:.2f} s  exit {proc.returncode}, peak RSS {peak_mb:.0f} MB")
        print(f"findings by rule:      {rules}")
        print(
            f"expected leavers:      {expected['terminated']} terminated, {expected['used_after']} used after"
        )
        if proc.returncode not in (0, 1):
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        ok = audit_s < 10.0
        print(f"aim (< 10 s):          {'met' if ok else 'MISSED'}")
        return 0
    finally:
        if server is not None:
            server.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
