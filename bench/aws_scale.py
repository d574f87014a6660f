"""Scale benchmark of the aws_iam source against a local moto server.

Seeds a moto server (started here, on a free 127.0.0.1 port) with N IAM users, each with an
access key, a console password and back-dated usage; D of them belong to departed staff. Then
measures, with botocore event hooks counting every API call:

1. ``audit --source aws``: the full pipeline (HR file + this source) through
   ``offboard_audit.engine.pipeline.run_audit``: bulk pass + detail pass for the departed only;
2. the naive per-user strategy most scripts use: ListUsers, then per user ListAccessKeys,
   GetAccessKeyLastUsed per key, GetLoginProfile, ListMFADevices, ListSSHPublicKeys.

Run from the repository root:  python bench/aws_scale.py [--users 2000] [--departed 40]
(Cloud Custodian is not used here; see the report for its figure on this machine.)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

import boto3

from offboard_audit.config import load_config
from offboard_audit.engine.pipeline import run_audit
from offboard_audit.storage.store import Store
from tests.support.aws import FAKE_AWS_ENV, MotoServer, population, seed_users


def counting_session(calls: Counter[str]) -> boto3.session.Session:
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    session.events.register("before-call.*.*", count)
    return session


def write_inputs(tmp: Path, endpoint: str, users: int, departed: int, now: datetime) -> Path:
    lines = ["employee_id,email,name,status,termination_date,aliases"]
    for i in range(users):
        name = f"left-{i:03d}" if i < departed else f"user-{i:05d}"
        terminated = (now - timedelta(days=60)).isoformat() if i < departed else ""
        status = "terminated" if i < departed else "active"
        lines.append(f"E{i:06d},{name}@example.com,{name},{status},{terminated},{name}")
    (tmp / "hr.csv").write_text("\n".join(lines) + "\n")
    config = tmp / "offboard-audit.toml"
    config.write_text(
        f"""
[database]
url = "sqlite:///{tmp / "bench.db"}"

[policy]
max_new_terminations = 1.0

[[sources]]
name = "hr"
type = "hr_csv"
path = "hr.csv"

[[sources]]
name = "aws"
type = "aws_iam"
endpoint_url = "{endpoint}"
service_specific_credentials = false
"""
    )
    return config


def naive(endpoint: str, calls: Counter[str]) -> int:
    """Per-user reads, sequential as in most scripts; returns the number of keys found."""
    iam = counting_session(calls).client("iam", endpoint_url=endpoint)
    keys = 0
    for page in iam.get_paginator("list_users").paginate():
        for user in page["Users"]:
            name = user["UserName"]
            for key in iam.list_access_keys(UserName=name)["AccessKeyMetadata"]:
                iam.get_access_key_last_used(AccessKeyId=key["AccessKeyId"])
                keys += 1
            with contextlib.suppress(iam.exceptions.NoSuchEntityException):
                iam.get_login_profile(UserName=name)
            iam.list_mfa_devices(UserName=name)
            iam.list_ssh_public_keys(UserName=name)
    return keys


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--departed", type=int, default=40)
    args = parser.parse_args()
    now = datetime.now(UTC)
    server = MotoServer()
    server.start()
    try:
        started = time.perf_counter()
        seed_users(population(args.users, args.departed, now))
        print(f"seeded {args.users} users ({args.departed} departed) in {time.perf_counter() - started:.1f}s")
        with tempfile.TemporaryDirectory() as tmpdir:
            config = load_config(
                write_inputs(Path(tmpdir), server.url, args.users, args.departed, now), env=FAKE_AWS_ENV
            )
            store = Store.open(config.database_url)
            calls: Counter[str] = Counter()
            started = time.perf_counter()
            result = run_audit(
                config, store, now, only=["aws"], env=FAKE_AWS_ENV, clients={"aws": counting_session(calls)}
            )
            ours = time.perf_counter() - started
            aws = next(s for s in result.sources if s.name == "aws")
            findings = sum(1 for f in result.findings if f.account.source == "aws")
            print(f"\naudit --source aws: {ours:.2f}s, status {aws.status.value}, {findings} findings")
            print(f"  API calls: {sum(calls.values())}")
            for op, n in sorted(calls.items(), key=lambda kv: -kv[1]):
                print(f"    {op:32s} {n}")

        naive_calls: Counter[str] = Counter()
        started = time.perf_counter()
        keys = naive(server.url, naive_calls)
        slow = time.perf_counter() - started
        print(f"\nnaive per-user strategy: {slow:.2f}s ({keys} keys)")
        print(f"  API calls: {sum(naive_calls.values())}")
        for op, n in sorted(naive_calls.items(), key=lambda kv: -kv[1]):
            print(f"    {op:32s} {n}")
        print(
            f"\nratio: {sum(naive_calls.values()) / max(1, sum(calls.values())):.1f}x fewer calls, "
            f"{slow / ours:.1f}x faster wall time"
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
