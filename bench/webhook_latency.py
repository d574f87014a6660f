"""Latency of the HR webhook path: signed termination event -> every credential of that person disabled.

Starts a moto server (in this process) and a real slapd on free 127.0.0.1 ports, seeds an
organisation (``--people`` in HR, the first ``--events`` of whom also have an IAM user with an
access key and an LDAP entry), runs one full reconcile (``daemon --once``) as the HR baseline,
then starts ``python -m offboard_audit daemon`` with ``policy.auto_revoke = true`` and sends
``--events`` signed ``employee.terminated`` events at ``--rate`` per second.

For each event: seconds from sending the request to the job's ``finished_at`` (the job finishes
after its last action was applied and verified by re-reading), and the job's own run time
(``started_at`` to ``finished_at``: what one job costs, without waiting for a worker). Printed:
p50/p95/max of both, the daemon's peak resident memory, and the slowest ``/healthz`` answer while
the events were processed (polled every 100 ms). At the end every leaver's key is checked Inactive
in moto and every leaver's LDAP entry locked.

The webhook path scales with the person, not the workforce (issue 17 item 10): with
``--people 1000000`` a job should take well under 0.5 s. The baseline full reconcile of that many
people takes minutes (``--baseline-timeout``).

Run from the repository root:  python bench/webhook_latency.py [--events 50] [--rate 5] [--people N]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3
import httpx

from tests.support.aws import FAKE_AWS_ENV, MotoServer, SeedUser, seed_users
from tests.support.daemon import (
    SECRET_ENV,
    DaemonProcess,
    daemon_env,
    event_body,
    run_cli,
    signed_headers,
)
from tests.support.ports import free_port
from tests.support.slapd import PEOPLE_DN, REVOKER_DN, REVOKER_PASSWORD, start_slapd


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def peak_rss_mb(daemon: DaemonProcess) -> float | None:
    """The daemon process's peak resident set (Linux ``VmHWM``), in MB."""
    if daemon.process is None:
        return None
    try:
        status = Path(f"/proc/{daemon.process.pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--people", type=int, default=1000, help="HR workforce (the breaker allows 5%%)")
    parser.add_argument("--rate", type=float, default=5.0, help="events per second")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--baseline-timeout", type=float, default=3600, help="seconds for the full reconcile")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="offboard-webhook-bench-"))
    moto = MotoServer()
    moto.start()
    slapd = start_slapd(work / "slapd")
    daemon: DaemonProcess | None = None
    try:
        now = datetime.now(UTC)
        leavers = [f"lv{i:03d}" for i in range(args.events)]
        seed_users(
            [
                SeedUser(
                    u,
                    tags={"email": f"{u}@example.com"},
                    keys=[(now - timedelta(days=60), now - timedelta(days=1))],
                )
                for u in leavers
            ]
            + [
                SeedUser(
                    f"st{i:04d}",
                    tags={"email": f"st{i:04d}@example.com"},
                    keys=[(now - timedelta(days=60), None)],
                )
                for i in range(200)
            ]
        )
        slapd.add_entries(
            [
                (
                    f"uid={u},{PEOPLE_DN}",
                    {
                        "objectClass": ["inetOrgPerson"],
                        "uid": [u],
                        "cn": [u],
                        "sn": [u],
                        "mail": [f"{u}@example.com"],
                        "employeeNumber": [f"E{u}"],
                        "userPassword": ["pw"],
                    },
                )
                for u in leavers
            ]
        )
        rows = [f"E{u},{u}@example.com,{u},active,,{u}" for u in leavers]
        rows += [
            f"S{i:05d},st{i:04d}@example.com,Staff {i},active,," for i in range(args.people - len(leavers))
        ]
        (work / "hr.csv").write_text(
            "employee_id,email,name,status,termination_date,aliases\n" + "\n".join(rows) + "\n"
        )
        port = free_port()
        config = work / "offboard-audit.toml"
        config.write_text(
            f"""
[database]
url = "sqlite:///{work / "audit.db"}"

[policy]
auto_revoke = true
max_people_per_run = 25

[schedule]
audit = "0 3 1 1 *"

[webhook]
listen = "127.0.0.1:{port}"
secret_env = "{SECRET_ENV}"

[[sources]]
name = "hr"
type = "hr_csv"
path = "hr.csv"

[[sources]]
name = "corp-ldap"
type = "ldap"
url = "{slapd.url}"
bind_dn = "{REVOKER_DN}"
password_env = "LDAP_BENCH_PASSWORD"
base_dn = "{PEOPLE_DN}"
dialect = "openldap"

[[sources]]
name = "aws"
type = "aws_iam"
region = "us-east-1"
endpoint_url = "{moto.url}"
service_specific_credentials = false
"""
        )
        env = daemon_env({**FAKE_AWS_ENV, "LDAP_BENCH_PASSWORD": REVOKER_PASSWORD})
        t_base = time.perf_counter()
        baseline = run_cli(config, env, "daemon", "--once", timeout=args.baseline_timeout)
        if baseline.returncode != 0:
            print(baseline.stderr, file=sys.stderr)
            return 1
        print(
            f"baseline full reconcile of {args.people} people: {time.perf_counter() - t_base:.1f} s",
            flush=True,
        )
        daemon = DaemonProcess(
            config, env, port, args=("--workers", str(args.workers), "--log-level", "warning")
        )
        daemon.start()
        daemon.wait_healthy()

        health_times: list[float] = []
        health_errors: list[str] = []
        stop = threading.Event()

        def poll_health() -> None:
            with httpx.Client(timeout=5) as client:
                while not stop.is_set():
                    t = time.perf_counter()
                    try:
                        r = client.get(f"{daemon.url}/healthz")
                        if r.status_code != 200:
                            health_errors.append(f"HTTP {r.status_code}")
                    except httpx.HTTPError as exc:
                        health_errors.append(type(exc).__name__)
                    health_times.append(time.perf_counter() - t)
                    stop.wait(0.1)

        poller = threading.Thread(target=poll_health, daemon=True)
        poller.start()
        sent: list[tuple[str, datetime]] = []
        with httpx.Client(timeout=10) as client:
            for u in leavers:
                body = event_body(
                    f"E{u}", effective_at=datetime.now(UTC) - timedelta(seconds=1), email=f"{u}@example.com"
                )
                t0 = datetime.now(UTC)
                r = client.post(f"{daemon.url}/hooks/hr", content=body, headers=signed_headers(body))
                if r.status_code != 202:
                    print(f"event for {u}: HTTP {r.status_code} {r.text}", file=sys.stderr)
                    return 1
                sent.append((r.json()["job_id"], t0))
                time.sleep(1 / args.rate)  # the send rate itself, not synchronisation

        latencies: list[float] = []
        job_times: list[float] = []
        slow_status = 0
        failed: list[dict[str, object]] = []
        deadline = time.monotonic() + 300
        for job_id, t0 in sent:
            while True:
                try:
                    job = daemon.job(job_id)
                except httpx.TimeoutException:
                    slow_status += 1  # a daemon busy loading everybody answers late
                    continue
                if job["state"] in ("done", "failed", "cancelled", "superseded"):
                    break
                if time.monotonic() > deadline:
                    print(f"job {job_id} did not finish", file=sys.stderr)
                    return 1
                time.sleep(0.02)
            if job["state"] != "done":
                failed.append(job)
                continue
            finished = datetime.fromisoformat(str(job["finished_at"]))
            latencies.append((finished - t0).total_seconds())
            job_times.append((finished - datetime.fromisoformat(str(job["started_at"]))).total_seconds())
        stop.set()
        poller.join()
        peak_mb = peak_rss_mb(daemon)

        iam = boto3.client(
            "iam",
            endpoint_url=moto.url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        still_active = [
            u
            for u in leavers
            if iam.list_access_keys(UserName=u)["AccessKeyMetadata"][0]["Status"] != "Inactive"
        ]
        conn = slapd.connect()
        conn.search(PEOPLE_DN, "(&(uid=lv*)(pwdAccountLockedTime=*))", attributes=["uid"])  # type: ignore[attr-defined]
        locked = len(conn.entries)  # type: ignore[attr-defined]
        conn.unbind()  # type: ignore[attr-defined]

        print(f"events: {len(sent)} at {args.rate}/s, workers {args.workers}, workforce {args.people}")
        if failed:
            print(f"FAILED jobs: {len(failed)}: {json.dumps(failed[:3], indent=1)}")
        if latencies:
            print(
                f"request -> last credential disabled: p50 {statistics.median(latencies):.3f} s, "
                f"p95 {quantile(latencies, 0.95):.3f} s, max {max(latencies):.3f} s"
            )
            print(
                f"one job (started -> finished): p50 {statistics.median(job_times):.3f} s, "
                f"p95 {quantile(job_times, 0.95):.3f} s, max {max(job_times):.3f} s"
            )
        if peak_mb is not None:
            print(f"daemon peak resident memory: {peak_mb:.0f} MB")
        if slow_status:
            print(f"job status requests that timed out (5 s) while jobs ran: {slow_status}")
        print(
            f"/healthz under load: {len(health_times)} answers, slowest {max(health_times):.3f} s, "
            f"errors {len(health_errors)}"
        )
        print(
            f"verified: {len(leavers) - len(still_active)}/{len(leavers)} keys Inactive, {locked}/{len(leavers)} LDAP locked"
        )
        return 0 if not failed and not still_active and locked == len(leavers) and not health_errors else 1
    finally:
        if daemon is not None:
            daemon.stop()
        slapd.stop()
        moto.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
