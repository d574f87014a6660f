"""Benchmark of the Vault/OpenBao audit-log reader: a million lines, read incrementally.

Writes ``--lines`` audit-log lines (default 1,000,000) as the file audit device does, rotated the
way logrotate leaves them: ``audit.log.2.gz`` and ``audit.log.1.gz`` (40% each) and the live
``audit.log`` (20%). ``--relevant`` of them (1%) are calls the reader keeps (KV v2 reads, transit
exports, by 1,000 different entities); the rest are the entries around them (request entries,
logins, metadata reads, signing, sys/ calls). Every line is a real OpenBao 2.7 entry from
``tests/connectors/vault/fixtures/audit.jsonl`` with its own request id and time (about 1.4 KiB
a line, as on a real server). Then, each in a fresh process so that its peak RSS is its own:

1. **first scan**: every line parsed once, the relevant events stored with their checkpoint in a
   SQLite ledger (``Store.save_batch``, as a full run does);
2. **incremental re-run** after ``--new`` (1%) more lines are appended to ``audit.log``: only
   those are read (the two gzip files are not even opened: their checkpoints say complete).

Prints lines/s, MB/s (decompressed), lines read and events stored, peak RSS of each. Aim (issue
14): >= 100,000 lines/s, peak RSS < 300 MB.

Run from the repository root:  python bench/vault_audit_scan.py [--lines 1000000]
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FIXTURE = REPO / "tests" / "connectors" / "vault" / "fixtures" / "audit.jsonl"
START = datetime(2026, 6, 1, tzinfo=UTC)
NOW = datetime(2026, 6, 30, tzinfo=UTC)


def _templates() -> tuple[list[bytes], list[bytes]]:
    """(relevant, noise) line templates: fixture lines with their request id and time made
    placeholders."""
    relevant: list[bytes] = []
    noise: list[bytes] = []
    for raw in FIXTURE.read_bytes().splitlines():
        entry = json.loads(raw)
        rid = entry["request"].get("id")
        if not rid:
            continue
        entity = (entry.get("auth") or {}).get("entity_id") or ""
        line = raw.replace(rid.encode(), b"@RID@").replace(entry["time"].encode(), b"@TIME@")
        if entity:
            line = line.replace(entity.encode(), b"@ENTITY@")
        path = entry["request"]["path"]
        keep = entry["type"] == "response" and not entry.get("error")
        kv_read = path == "secret/data/app/db" and entry["request"]["operation"] == "read"
        if keep and (kv_read or path == "transit/export/signing-key/signing-key"):
            relevant.append(line)
        elif not (keep and (path.startswith(("secret/data/", "kv1/")) or path.startswith("transit/"))):
            noise.append(line)
    return relevant, noise


def write_lines(out: IO[bytes], count: int, relevant_share: float, first: int) -> int:
    relevant, noise = _templates()
    every = max(1, round(1 / relevant_share))
    entities = [str(uuid.UUID(int=i + 1)).encode() for i in range(1000)]
    kept = 0
    buf: list[bytes] = []
    for n in range(first, first + count):
        t = (START + timedelta(milliseconds=n)).isoformat().replace("+00:00", "Z").encode()
        rid = str(uuid.UUID(int=(1 << 64) + n)).encode()
        if n % every == 0:
            template = relevant[n // every % len(relevant)]
            kept += 1
        else:
            template = noise[n % len(noise)]
        buf.append(
            template.replace(b"@RID@", rid).replace(b"@TIME@", t).replace(b"@ENTITY@", entities[n % 1000])
            + b"\n"
        )
        if len(buf) >= 10_000:
            out.writelines(buf)
            buf = []
    out.writelines(buf)
    return kept


def seed(folder: Path, lines: int, relevant: float) -> dict[str, Any]:
    started = time.perf_counter()
    parts = [("audit.log.2.gz", 0.4), ("audit.log.1.gz", 0.4), ("audit.log", 0.2)]
    first = 0
    kept = 0
    for i, (name, share) in enumerate(parts):
        count = round(lines * share) if i < len(parts) - 1 else lines - first
        path = folder / name
        if name.endswith(".gz"):
            with gzip.open(path, "wb", compresslevel=1) as fh:
                kept += write_lines(fh, count, relevant, first)
        else:
            with open(path, "wb") as fh:
                kept += write_lines(fh, count, relevant, first)
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
        first += count
    size = sum(p.stat().st_size for p in folder.iterdir())
    return {
        "lines": lines,
        "relevant": kept,
        "bytes_on_disk": size,
        "seconds": round(time.perf_counter() - started, 1),
    }


def append(folder: Path, lines: int, relevant: float, first: int) -> int:
    with open(folder / "audit.log", "ab") as fh:
        return write_lines(fh, lines, relevant, first)


def scan(folder: Path, db: str) -> dict[str, Any]:
    from connectors.vault.auditlog import AuditLogReader
    from offboard_audit.storage.store import Store

    store = Store.open(f"sqlite:///{db}")
    reader = AuditLogReader(
        "vault", folder / "audit.log", ("secret", "transit"), {"secret": "kv", "transit": "transit"}
    )
    started = time.perf_counter()
    lines = files = size = kept = 0
    for batch in reader.read(store.exposure_checkpoints("vault"), NOW):
        assert batch.failure is None, batch.failure
        kept += store.save_batch("vault", batch, NOW)
        lines += batch.events_seen
        files += batch.objects_read
        size += batch.bytes_read
    elapsed = time.perf_counter() - started
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "seconds": round(elapsed, 2),
        "files_opened": files,
        "lines": lines,
        "events_stored": kept,
        "lines_per_s": round(lines / elapsed) if elapsed else 0,
        "mb_per_s": round(size / 1e6 / elapsed, 1) if elapsed else 0,
        "peak_rss_mb": round(rss_mb),
    }


def _child(args: list[str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--relevant", type=float, default=0.01)
    parser.add_argument("--new", type=float, default=0.01, help="share of new lines for the re-run")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _what, folder, *rest = args.child
        print(json.dumps(scan(Path(folder), rest[0])))
        return
    with tempfile.TemporaryDirectory(prefix="vault-bench-") as tmp:
        folder = Path(tmp) / "audit"
        folder.mkdir()
        print("seeded          ", json.dumps(seed(folder, args.lines, args.relevant)))
        db = str(Path(tmp) / "ledger.db")
        first = _child(["--child", "scan", str(folder), db])
        print("first scan      ", json.dumps(first))
        new = max(1, round(args.lines * args.new))
        kept = append(folder, new, args.relevant, args.lines)
        again = _child(["--child", "scan", str(folder), db])
        print(f"appended {new} lines ({kept} relevant)")
        print("incremental run ", json.dumps(again))


if __name__ == "__main__":
    main()
