"""Benchmark of the CloudTrail exposure reader: log files in a moto S3 server, read incrementally.

Seeds a moto server (a subprocess on a free 127.0.0.1 port) with ``--objects`` gzip CloudTrail log
files of ``--events`` records in all, ``--relevant`` of them (1%) calls the reader keeps
(GetSecretValue, decrypted GetParameter, CreateAccessKey...), the rest noise. Then, each in a fresh
process so that its peak RSS is its own:

1. **first scan**: every object read once, the relevant events stored with their checkpoint in a
   SQLite ledger (``Store.save_batch``, as a full run does);
2. **incremental re-run** after ``--new`` (1%) more objects are added: only those are read.

Prints events/s, MB/s (compressed bytes fetched), objects read, GETs and peak RSS of each.
Aim (issue 13): >= 100,000 events/s on 2 cores for the first scan, the re-run proportional to
the new objects, peak RSS < 300 MB.

Run from the repository root:  python bench/trail_scan.py [--objects 2000] [--events 2000000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ACCOUNT = "123456789012"
BUCKET = "org-cloudtrail"
ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
NOW = datetime(2026, 6, 30, tzinfo=UTC)


def _s3(endpoint: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", config=Config(max_pool_connections=16)
    )


_NOISE = (
    '{{"eventVersion":"1.09","userIdentity":{{"type":"IAMUser","principalId":"AIDA{i:08d}",'
    '"arn":"arn:aws:iam::123456789012:user/user-{u}","accountId":"123456789012","accessKeyId":"AKIA{i:012d}",'
    '"userName":"user-{u}"}},"eventTime":"{t}","eventSource":"ec2.amazonaws.com","eventName":"DescribeInstances",'
    '"awsRegion":"us-east-1","sourceIPAddress":"203.0.113.{u}","userAgent":"aws-cli/2.15.0 Python/3.11",'
    '"requestParameters":{{"instancesSet":{{}},"filterSet":{{}}}},"responseElements":null,'
    '"requestID":"{r}","eventID":"{e}","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,'
    '"recipientAccountId":"123456789012","eventCategory":"Management"}}'
)
_RELEVANT = (
    '{{"eventVersion":"1.09","userIdentity":{{"type":"AssumedRole","principalId":"AROA:u{u}@example.com",'
    '"arn":"arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_0123/u{u}@example.com",'
    '"accountId":"123456789012","sessionContext":{{"attributes":{{"mfaAuthenticated":"false"}}}}}},'
    '"eventTime":"{t}","eventSource":"secretsmanager.amazonaws.com","eventName":"GetSecretValue",'
    '"awsRegion":"us-east-1","sourceIPAddress":"203.0.113.9","userAgent":"aws-sdk-go/1.44",'
    '"requestParameters":{{"secretId":"prod/secret-{s}"}},"responseElements":null,"requestID":"{r}",'
    '"eventID":"{e}","readOnly":true,"eventType":"AwsApiCall","managementEvent":true,'
    '"recipientAccountId":"123456789012","eventCategory":"Management"}}'
)


def _object(n: int, per_object: int, relevant_every: int, start: int) -> tuple[str, bytes]:
    at = NOW - timedelta(days=30) + timedelta(minutes=5 * (start + n))
    t = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    records = []
    for j in range(per_object):
        i = n * per_object + j
        template = _RELEVANT if i % relevant_every == 0 else _NOISE
        records.append(template.format(i=i, u=i % 200, t=t, s=i % 500, r=uuid.uuid4(), e=uuid.uuid4()))
    body = gzip.compress(('{"Records":[' + ",".join(records) + "]}").encode(), compresslevel=6)
    key = (
        f"AWSLogs/{ACCOUNT}/CloudTrail/us-east-1/{at:%Y/%m/%d}/"
        f"{ACCOUNT}_CloudTrail_us-east-1_{at:%Y%m%dT%H%M}Z_{uuid.uuid4().hex[:16]}.json.gz"
    )
    return key, body


def seed(endpoint: str, objects: int, events: int, relevant: float, start: int) -> None:
    s3 = _s3(endpoint)
    if start == 0:
        s3.create_bucket(Bucket=BUCKET)
    per_object = max(1, events // objects)
    every = max(1, round(1 / relevant))

    def put(n: int) -> None:
        key, body = _object(n, per_object, every, start)
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(put, range(start, start + objects)))


def scan(endpoint: str, db: str, workers: int) -> dict[str, Any]:
    import boto3

    from connectors.aws_iam.exposure.cloudtrail import TrailReader
    from offboard_audit.storage.store import Store

    store = Store.open(f"sqlite:///{db}")
    session = boto3.Session(region_name="us-east-1")
    gets = [0]
    session.events.register("before-call.s3.GetObject", lambda **_: gets.__setitem__(0, gets[0] + 1))
    from botocore.config import Config

    s3 = session.client("s3", endpoint_url=endpoint, config=Config(max_pool_connections=workers * 2 + 2))
    reader = TrailReader("aws", s3, BUCKET, "", timedelta(days=365), timedelta(hours=1), workers)
    started = time.perf_counter()
    events = objects = size = kept = 0
    for batch in reader.read(store.exposure_checkpoints("aws"), NOW):
        assert batch.failure is None, batch.failure
        kept += store.save_batch("aws", batch, NOW)
        events += batch.events_seen
        objects += batch.objects_read
        size += batch.bytes_read
    elapsed = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "seconds": round(elapsed, 2),
        "objects": objects,
        "gets": gets[0],
        "events": events,
        "relevant_stored": kept,
        "events_per_s": round(events / elapsed) if elapsed else 0,
        "mb_per_s": round(size / 1e6 / elapsed, 1) if elapsed else 0,
        "peak_rss_mb": round(rss_mb),
    }


def _child(args: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **ENV},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--relevant", type=float, default=0.01)
    parser.add_argument("--new", type=float, default=0.01, help="share of new objects for the re-run")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        what, endpoint, *rest = args.child
        if what == "seed":
            seed(endpoint, int(rest[0]), int(rest[1]), float(rest[2]), int(rest[3]))
            print("{}")
        else:
            print(json.dumps(scan(endpoint, rest[0], int(rest[1]))))
        return

    sys.path.insert(0, str(REPO))
    from tests.support.ports import free_port, wait_for_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **ENV},
    )
    try:
        wait_for_port("127.0.0.1", port)
        endpoint = f"http://127.0.0.1:{port}"
        t0 = time.perf_counter()
        _child(["--child", "seed", endpoint, str(args.objects), str(args.events), str(args.relevant), "0"])
        print(f"seeded {args.objects} objects / {args.events} events in {time.perf_counter() - t0:.1f} s")
        with tempfile.TemporaryDirectory() as tmp:
            db = str(Path(tmp) / "ledger.db")
            first = _child(["--child", "scan", endpoint, db, str(args.workers)])
            print("first scan      ", json.dumps(first))
            new = max(1, round(args.objects * args.new))
            per = args.events // args.objects
            _child(
                ["--child", "seed", endpoint, str(new), str(new * per), str(args.relevant), str(args.objects)]
            )
            again = _child(["--child", "scan", endpoint, db, str(args.workers)])
            print("incremental run ", json.dumps(again))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
