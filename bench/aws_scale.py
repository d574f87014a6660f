"""Scale benchmark of the aws_iam source against a local moto server.

Seeds a moto server (started here, on a free 127.0.0.1 port) with N IAM users, each with an
access key, a console password and back-dated usage; D of them belong to departed staff. Then
measures, with botocore event hooks counting every API call:

1. ``audit --source aws``: the full pipeline (HR file + this source) through
   ``offboard_audit.engine.pipeline.run_audit``: bulk pass + detail pass for the departed only;
2. the naive per-user strategy most scripts use: ListUsers, then per user ListAccessKeys,
   GetAccessKeyLastUsed per key, GetLoginProfile, ListMFADevices, ListSSHPublicKeys.

Run from the repository root:  python bench/aws_scale.py [--users 2000] [--departed 40]

``--against-custodian`` compares the command a user runs with Cloud Custodian on the same moto
server instead: ``offboard-audit audit --source aws`` as a subprocess (interpreter start,
imports), on a fresh database and then again on that database (a scheduled run: the schema is
only checked, the snapshot is unchanged), against ``custodian run`` of a policy that finds the
same leavers' active access keys (``aws.iam-user``, a ``UserName`` value filter and a ``credential`` filter on
``access_keys.active``). Both read through the same server, which counts every API call it
answers, so the counts are comparable; each side runs ``--repeat`` times (median wall time).
This script installs nothing: Custodian runs only when ``custodian`` (PyPI ``c7n``, e.g. in its
own virtualenv) is on PATH; without it only offboard-audit's figures are printed.
A third row is a floor: a bare boto3 script (a new process too) making exactly the API calls
``audit --source aws`` makes and nothing else (no HR file, no database, no matching, no
output). Custodian's time over the floor's is the most any tool reading these credentials
through boto3 could gain here.
``--latency-ms 30`` delays every answer of the server by 30 ms, as a round trip to AWS would:
moto on loopback answers in about a millisecond, which hides what each API call costs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
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
from tests.support.ports import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[1]


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


class CountingMotoServer:
    """A moto server (sharing this process's moto backends, so seeding works as with
    :class:`MotoServer`) that counts every API call it answers, by ``service:Action``; with
    ``latency`` (seconds) each answer waits that long first, as a round trip to AWS would."""

    def __init__(self, latency: float = 0.0) -> None:
        import logging

        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.port = free_port()
        self.calls: Counter[str] = Counter()
        self.latency = latency
        self._lock = threading.Lock()
        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server("127.0.0.1", self.port, self._counting(app), threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _counting(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        def counted(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            if not environ.get("PATH_INFO", "").startswith("/moto-api"):
                with self._lock:
                    self.calls[_call_name(environ, body)] += 1
                if self.latency:
                    time.sleep(self.latency)  # the network, not a wait for something to happen
            return app(environ, start_response)

        return counted

    def start(self) -> None:
        self._thread.start()
        wait_for_port("127.0.0.1", self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()

    def take(self) -> Counter[str]:
        """The calls counted since the last take."""
        with self._lock:
            calls, self.calls = self.calls, Counter()
        return calls


def _call_name(environ: dict[str, Any], body: bytes) -> str:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    # SigV4: Credential=KEY/DATE/REGION/SERVICE/aws4_request
    service = auth.split("Credential=", 1)[1].split("/")[3] if "Credential=" in auth else "?"
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        return f"{service}:{target.rsplit('.', 1)[-1]}"
    params = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    params.update(urllib.parse.parse_qs(body.decode("utf-8", "replace")))
    action = params.get("Action", ["?"])[0]
    return f"{service}:{action}"


def custodian_policy(departed: int) -> dict[str, Any]:
    """The Custodian policy that finds what ``audit --source aws`` reports first: the active
    access keys of the departed users."""
    return {
        "policies": [
            {
                "name": "leavers-active-keys",
                "resource": "aws.iam-user",
                "filters": [
                    {
                        "type": "value",
                        "key": "UserName",
                        "op": "in",
                        "value": [f"left-{i:03d}" for i in range(departed)],
                    },
                    {"type": "credential", "key": "access_keys.active", "value": True},
                ],
            }
        ]
    }


@dataclass
class Side:
    """One run of one tool: wall and CPU seconds (the tool's process, not the server's), what it
    found, and the API calls the server answered for it."""

    wall: float
    cpu: float
    found: int
    calls: Counter[str]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(server: CountingMotoServer, argv: list[str], cwd: str, env: dict[str, str]) -> tuple[Side, str]:
    server.take()
    cpu = _children_cpu()
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    side = Side(wall, _children_cpu() - cpu, 0, server.take())
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return side, proc.stdout


def run_ours(server: CountingMotoServer, users: int, departed: int, now: datetime) -> tuple[Side, Side]:
    """Two ``offboard-audit audit --source aws`` processes: on a fresh database (a first run:
    the schema is created) and again on that database (every scheduled run after it: the schema
    is checked, the snapshot diff finds nothing new). Found: the leavers' active access keys."""
    with tempfile.TemporaryDirectory(prefix="bench-ours-") as tmp:
        config = write_inputs(Path(tmp), server.url, users, departed, now)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OFFBOARD_AUDIT", "AWS_"))}
        env.update(FAKE_AWS_ENV)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        argv = [sys.executable, "-m", "offboard_audit", "--config", str(config)]
        argv += ["audit", "--source", "aws", "--format", "json", "--fail-on", "none"]
        runs = [_timed(server, argv, tmp, env) for _ in range(2)]
    for side, out in runs:
        side.found = sum(
            1
            for f in json.loads(out)["findings"]
            if f["source"] == "aws"
            and f["credential"]["kind"] == "access_key"
            and f["credential"]["active"]
            and f["person"] is not None
            and f["person"]["status"] == "terminated"
        )
    return runs[0][0], runs[1][0]


# The same API calls as ``audit --source aws`` and nothing else: no HR file, no database, no
# matching, no output. What any Python tool that reads these credentials through boto3 pays.
BARE_BOTO3 = """
import sys
from concurrent.futures import ThreadPoolExecutor

import boto3

session = boto3.session.Session(region_name="us-east-1")
iam = session.client("iam", endpoint_url=sys.argv[1])
session.client("sts", endpoint_url=sys.argv[1]).get_caller_identity()
with ThreadPoolExecutor(1) as background:
    report = background.submit(lambda: (iam.generate_credential_report(), iam.get_credential_report()))
    pages = iam.get_paginator("get_account_authorization_details").paginate(Filter=["User"])
    users = [u["UserName"] for page in pages for u in page["UserDetailList"]]
    report.result()


def active_keys(name):
    keys = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
    for key in keys:
        iam.get_access_key_last_used(AccessKeyId=key["AccessKeyId"])
    iam.list_ssh_public_keys(UserName=name)
    return sum(key["Status"] == "Active" for key in keys)


with ThreadPoolExecutor(8) as pool:
    print(sum(pool.map(active_keys, [u for u in users if u.startswith("left-")])))
"""


def run_bare(server: CountingMotoServer) -> Side:
    """:data:`BARE_BOTO3` in a new process: a floor for any boto3 tool making the same calls."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(FAKE_AWS_ENV)
    with tempfile.TemporaryDirectory(prefix="bench-bare-") as tmp:
        side, out = _timed(server, [sys.executable, "-c", BARE_BOTO3, server.url], tmp, env)
    side.found = int(out)
    return side


def run_custodian(custodian: str, server: CountingMotoServer, departed: int) -> Side:
    """One ``custodian run`` of :func:`custodian_policy`; found: the users it matched."""
    with tempfile.TemporaryDirectory(prefix="bench-c7n-") as tmp:
        policy = Path(tmp) / "policy.yml"
        policy.write_text(json.dumps(custodian_policy(departed)))  # JSON is YAML
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(FAKE_AWS_ENV)
        env["AWS_ENDPOINT_URL"] = server.url  # every service of every client goes to the moto server
        out = Path(tmp) / "out"
        argv = [custodian, "run", "--cache-period", "0", "-s", str(out), "-r", "us-east-1", str(policy)]
        side, _ = _timed(server, argv, tmp, env)
        side.found = len(json.loads((out / "leavers-active-keys" / "resources.json").read_text()))
    return side


def _calls_line(calls: Counter[str]) -> str:
    top = ", ".join(f"{op} {n}" for op, n in sorted(calls.items(), key=lambda kv: -kv[1])[:5])
    return f"{sum(calls.values())} ({top})"


def against_custodian(users: int, departed: int, repeat: int, latency_ms: float = 0.0) -> None:
    custodian = shutil.which("custodian")
    now = datetime.now(UTC)
    server = CountingMotoServer(latency_ms / 1000)
    server.start()
    try:
        started = time.perf_counter()
        seed_users(population(users, departed, now))
        print(f"seeded {users} users ({departed} departed) in {time.perf_counter() - started:.1f}s\n")
        ours = [run_ours(server, users, departed, now) for _ in range(repeat)]
        sides = {
            "offboard-audit audit, fresh database": [first for first, _ in ours],
            "offboard-audit audit, again": [again for _, again in ours],
        }
        sides["bare boto3, the same calls (floor)"] = [run_bare(server) for _ in range(repeat)]
        if custodian:
            sides["custodian run (aws.iam-user)"] = [
                run_custodian(custodian, server, departed) for _ in range(repeat)
            ]
    finally:
        server.stop()
    print(
        f"median of {repeat} run(s) each, both run as a user runs them: a new process, the same moto server"
    )
    print("(CPU: the tool's own process; the wall time also covers the server answering it)")
    if latency_ms:
        print(f"(every API call answered {latency_ms:g} ms late: a simulated round trip to AWS)")
    print()
    print(f"{'':38s} {'wall':>7s} {'CPU':>7s} {'found':>6s}  API calls")
    medians: dict[str, float] = {}
    for label, runs in sides.items():
        medians[label] = statistics.median(r.wall for r in runs)
        cpu = statistics.median(r.cpu for r in runs)
        print(
            f"{label:38s} {medians[label]:6.2f}s {cpu:6.2f}s {runs[-1].found:6d}  {_calls_line(runs[-1].calls)}"
        )
    if custodian:
        theirs = sides["custodian run (aws.iam-user)"][-1]
        their_wall = medians["custodian run (aws.iam-user)"]
        print()
        for label in ("offboard-audit audit, fresh database", "offboard-audit audit, again"):
            calls = sum(sides[label][-1].calls.values())
            print(
                f"{label}: {their_wall / medians[label]:.1f}x faster (wall), "
                f"{sum(theirs.calls.values()) / max(1, calls):.1f}x fewer API calls"
            )
        floor = medians["bare boto3, the same calls (floor)"]
        print(
            f"bare boto3, the same calls: {their_wall / floor:.1f}x faster (wall): the most any tool "
            "making these calls through boto3 could reach here"
        )
        print(
            "found: our leavers' active keys (the bare script: the same), Custodian's users with an active key"
        )
    else:
        print(
            "\ncustodian is not on PATH: only offboard-audit's figures are printed. To compare, install "
            "Cloud Custodian in its own virtualenv (python -m venv /tmp/c7n && /tmp/c7n/bin/pip install c7n) "
            "and run again with that virtualenv's bin/ on PATH (after this interpreter's)."
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--departed", type=int, default=40)
    parser.add_argument(
        "--against-custodian",
        action="store_true",
        help="compare the CLI with Cloud Custodian (when `custodian` is on PATH) instead",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per side with --against-custodian")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="with --against-custodian: delay every answer of the moto server by this much (a "
        "round trip to AWS is tens of milliseconds; moto on loopback answers in about one)",
    )
    args = parser.parse_args()
    if args.against_custodian:
        against_custodian(args.users, args.departed, args.repeat, args.latency_ms)
        return
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
