"""Command: demo (an embedded sample organisation; no config, no network)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from offboard_audit.cli.app import (
    EXIT_OK,
    app,
    err,
    fail,
    now_utc,
    show_progress,
    state,
)
from offboard_audit.cli.common import (
    check_output_format,
    progress,
    render,
)
from offboard_audit.config import DEFAULT_CONFIG_NAME
from offboard_audit.report.table import plain
from offboard_audit.storage.files import write_private_text

DEMO_NOTE = """\
# The demo's LDAP directory, AWS account and Google Cloud projects were in-memory fakes:
# point the sources below at your own systems.
"""


def _demo_files(directory: Path) -> tuple[Path, Path]:
    """(config, HR file) under ``directory``; an existing one is a usage error, checked first."""
    config, hr = directory / DEFAULT_CONFIG_NAME, directory / "hr.csv"
    for existing in (config, hr):
        if existing.exists():
            raise fail(f"{existing} already exists; not overwriting it (choose another --write-config DIR)")
    return config, hr


def _demo_database(url: str | None, given: bool, workdir: Path) -> str:
    """Where the demo writes its sample organisation: a throwaway SQLite file, or an explicit
    ``--db`` that holds nothing yet. Never ``OFFBOARD_AUDIT_DB`` from the environment, and never
    a database with tables in it: the demo's people and findings (under the README's example
    source names) would mix with real ones, and ``plan`` would act on them."""
    if url and not given:
        err.print(plain("demo: OFFBOARD_AUDIT_DB is ignored: the demo uses a throwaway database", "yellow"))
    if not (url and given):
        return f"sqlite:///{workdir / 'demo.db'}"
    from sqlalchemy import inspect

    from offboard_audit.storage.db import make_engine

    engine = make_engine(url)
    try:
        tables = inspect(engine).get_table_names()
    except Exception as exc:
        raise fail(f"--db: cannot open {url}: {exc}") from None
    finally:
        engine.dispose()
    if tables:
        raise fail(
            f"--db {url} already has tables ({len(tables)}): the demo writes its sample organisation "
            "only into an empty database, never next to real data (leave out --db for a throwaway one)"
        )
    return url


def write_demo_config(directory: Path) -> Path:
    """The demo's HR file and a starter config reading it, in ``directory``; returns the config."""
    from offboard_audit.cli.init import starter_config, write_new
    from offboard_audit.demo import demo_hr_path

    config, hr = _demo_files(directory)
    directory.mkdir(parents=True, exist_ok=True)
    # Owner-only, like plan files: an HR file lists who left.
    write_private_text(hr, demo_hr_path().read_text(encoding="utf-8"))
    write_new(
        config,
        starter_config(
            " (written by `offboard-audit demo --write-config`)", hr_path="hr.csv", note=DEMO_NOTE
        ),
    )
    return config


@app.command()
def demo(
    ctx: typer.Context,
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    write_config: Path | None = typer.Option(
        None,
        "--write-config",
        metavar="DIR",
        help="Also write the demo's HR file and a starter config reading it to DIR, to continue from there.",
    ),
) -> int:
    """Audit an embedded sample organisation: no config, no network, no server."""
    from offboard_audit.demo import DemoUnavailable, demo_org
    from offboard_audit.engine.pipeline import Pipeline
    from offboard_audit.storage.store import Store

    check_output_format(fmt)
    st = state(ctx)
    if write_config is not None:
        _demo_files(write_config)  # refuse before the demo runs, not after
    with tempfile.TemporaryDirectory(prefix="offboard-audit-demo-") as tmp:
        workdir = Path(tmp)
        db_url = _demo_database(st.db_url, st.db_given, workdir)
        now = now_utc()
        try:
            with demo_org(now, db_url, workdir) as org:
                for note in org.skipped:
                    err.print(plain("demo: connector not available: ", "yellow") + plain(note))
                if fmt == "table":
                    names = ", ".join(f"{s.name} ({s.type})" for s in org.config.sources)
                    err.print(
                        plain("offboard-audit demo", "bold")
                        + plain(f": sample organisation with sources {names}")
                    )
                store = Store.open(org.config.database_url)
                with progress(show_progress(fmt, None)) as report:
                    result = Pipeline(org.config, store, org.ctx, report).run(now)
                render(result, fmt, None, store.actions_by_finding([f.finding_id for f in result.findings]))
        except DemoUnavailable as exc:
            raise fail(str(exc)) from None
    if write_config is not None:
        written = write_demo_config(write_config)
        err.print(plain(f"wrote {written.parent / 'hr.csv'} and {written}"))
        err.print(
            plain(
                f"next: offboard-audit --config {written} audit   (the HR source is set; add your LDAP, "
                "AWS and Google Cloud sources to that file, then `config check`)"
            )
        )
    elif fmt == "table":
        err.print(
            plain(
                "next: `offboard-audit demo --write-config DIR` writes this HR file and a starter config "
                "(or `offboard-audit config init`); point it at your own systems, then `audit` and "
                "`plan` (what would be revoked) run on them. The demo's systems were in-memory fakes."
            )
        )
    return EXIT_OK
