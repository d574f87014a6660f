"""Benchmark the core: a synthetic organisation through in-memory sources.

Prints wall time and peak memory for (1) a full run into an empty SQLite database, (2) an
unchanged re-run, (3) matching + evaluation alone. Each scenario runs in its own process so
that its peak RSS is its own.

    python bench/reconcile.py                     # 100,000 people, 5% terminated, 300,000 accounts+credentials
    python bench/reconcile.py --people 20000      # smaller
    python bench/reconcile.py --db postgresql+psycopg://app@127.0.0.1:5432/bench
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from offboard_audit.config import SourceConfig, build_config  # noqa: E402
from offboard_audit.core.options import SourceOptions  # noqa: E402
from offboard_audit.core.protocols import ConnectorPlugin, MatchSpec, SourceContext, SourceKind  # noqa: E402
from offboard_audit.core.records import (  # noqa: E402
    Account,
    Credential,
    CredentialKind,
    HRRead,
    Person,
    PersonStatus,
    SourceData,
)

NOW = datetime(2026, 11, 27, tzinfo=UTC)
SYSTEMS = ("ldap", "aws", "gcp")


@dataclass
class MemHR:
    people: tuple[Person, ...]
    name: str = "hr"

    def read_people(self) -> HRRead:
        return HRRead(self.people)


@dataclass
class MemSource:
    name: str
    accounts: tuple[Account, ...]
    credentials: tuple[Credential, ...]
    system: str = "bench"
    detail_calls: list[int] = field(default_factory=list)

    def collect(self) -> SourceData:
        return SourceData(self.accounts, self.credentials)

    def detail(self, accounts: Sequence[Account]) -> SourceData:
        self.detail_calls.append(len(accounts))
        return SourceData()


def make_org(people_n: int, per_source: int) -> tuple[MemHR, list[MemSource]]:
    terminated_every = 20  # 5%
    people = []
    for i in range(people_n):
        gone = i % terminated_every == 0
        people.append(
            Person(
                employee_id=f"E{i:07d}",
                email=f"user{i}@example.com",
                name=f"User {i}",
                status=PersonStatus.TERMINATED if gone else PersonStatus.ACTIVE,
                terminated_at=NOW - timedelta(days=30) if gone else None,
                source="hr",
            )
        )
    sources = []
    for s_index, system in enumerate(SYSTEMS):
        accounts = []
        creds = []
        # Half of the budget is accounts, half credentials (one per account).
        n = per_source // 2
        for j in range(n):
            i = (j * 7 + s_index) % people_n
            by_id = j % 3 == 0
            acct = Account(
                source=system,
                system=system,
                account_id=f"{system}-{j}",
                username=f"user{i}",
                enabled=True,
                emails=() if by_id else (f"user{i}@example.com",),
                attributes=(("employeeNumber", f"E{i:07d}"),) if by_id else (),
            )
            accounts.append(acct)
            creds.append(
                Credential(
                    source=system,
                    account_id=acct.account_id,
                    credential_id=f"k-{j}",
                    kind=CredentialKind.ACCESS_KEY,
                    active=True,
                    created_at=NOW - timedelta(days=400),
                    last_used_at=NOW - timedelta(days=(j % 60)),
                )
            )
        sources.append(MemSource(system, tuple(accounts), tuple(creds)))
    return MemHR(tuple(people)), sources


def build(db_url: str, workdir: Path, hr: MemHR, sources: list[MemSource]):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    (workdir / "hr.csv").write_text("employee_id,email,name,status,termination_date\n")
    config = build_config(
        {"database": {"url": db_url}, "sources": [{"name": "hr", "type": "hr_csv", "path": "hr.csv"}]},
        base_dir=workdir,
        env={},
    )

    def never(_o, _c):  # type: ignore[no-untyped-def]
        raise AssertionError("injected")

    plugin = ConnectorPlugin(
        "bench", SourceKind.ACCOUNTS, "bench", never, match=MatchSpec(("employeeNumber",), ())
    )
    extra = tuple(
        SourceConfig(s.name, "bench", plugin, SourceOptions({"name": s.name}), plugin.match) for s in sources
    )
    return replace(config, sources=config.sources + extra)


def scenario(name: str, people_n: int, per_source: int, db_url: str, workdir: Path) -> dict[str, object]:
    from offboard_audit.core.evaluate import EvalPolicy, evaluate
    from offboard_audit.core.matching import match_all
    from offboard_audit.engine.collect import group_credentials
    from offboard_audit.engine.pipeline import Pipeline
    from offboard_audit.storage.store import Store

    t_gen = time.perf_counter()
    hr, sources = make_org(people_n, per_source)
    gen_s = time.perf_counter() - t_gen
    out: dict[str, object] = {"scenario": name, "generate_s": round(gen_s, 2)}
    if name == "match+evaluate":
        accounts = [a for s in sources for a in s.accounts]
        creds = group_credentials(c for s in sources for c in s.credentials)
        t = time.perf_counter()
        links = match_all(
            accounts,
            {s.name: MatchSpec(("employeeNumber",), ()) for s in sources},
            hr.people,
            ("alias", "email_local"),
        )
        findings = evaluate(links, creds, NOW, EvalPolicy())
        out.update(seconds=round(time.perf_counter() - t, 2), findings=len(findings))
    else:
        config = build(db_url, workdir, hr, sources)
        store = Store.open(db_url)
        pipe = Pipeline(
            config,
            store,
            SourceContext(base_dir=workdir),
            instances={"hr": hr, **{s.name: s for s in sources}},
        )
        if name == "unchanged-rerun":
            pipe.run(NOW)  # the first run (not timed here; see full-run)
        t = time.perf_counter()
        result = pipe.run(NOW + timedelta(minutes=15))
        out.update(seconds=round(time.perf_counter() - t, 2), findings=len(result.findings))
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=100_000)
    ap.add_argument("--objects", type=int, default=300_000, help="accounts + credentials across all sources")
    ap.add_argument("--db", default=None, help="database URL (default: a fresh SQLite file per scenario)")
    ap.add_argument("--scenario", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    per_source = args.objects // len(SYSTEMS)
    if args.scenario:
        with tempfile.TemporaryDirectory() as tmp:
            url = args.db or f"sqlite:///{Path(tmp) / 'bench.db'}"
            print(json.dumps(scenario(args.scenario, args.people, per_source, url, Path(tmp))))
        return
    print(
        f"people={args.people:,} (5% terminated), accounts+credentials={per_source * len(SYSTEMS):,} in {len(SYSTEMS)} sources"
    )
    for name in ("full-run", "unchanged-rerun", "match+evaluate"):
        cmd = [
            sys.executable,
            __file__,
            "--scenario",
            name,
            "--people",
            str(args.people),
            "--objects",
            str(args.objects),
        ]
        if args.db:
            cmd += ["--db", args.db]
        res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        print(
            f"{name:16s} {res['seconds']:7.2f} s   peak RSS {res['peak_rss_mb']:7.1f} MB   findings {res['findings']:,}"
            f"   (data generation {res['generate_s']} s, not counted)"
        )


if __name__ == "__main__":
    main()
