"""Command: demo (an embedded sample organisation; no config, no network)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from offboard_audit.cli.app import (
    EXIT_OK,
    app,
    err,
    now_utc,
    show_progress,
    state,
)
from offboard_audit.cli.common import (
    check_output_format,
    progress,
    render,
)
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.storage.store import Store


@app.command()
def demo(
    ctx: typer.Context,
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
) -> int:
    """Audit an embedded sample organisation: no config, no network, no server."""
    from offboard_audit.demo import demo_org

    check_output_format(fmt)
    st = state(ctx)
    with tempfile.TemporaryDirectory(prefix="offboard-audit-demo-") as tmp:
        workdir = Path(tmp)
        db_url = st.db_url or f"sqlite:///{workdir / 'demo.db'}"
        now = now_utc()
        with demo_org(now, db_url, workdir) as org:
            for note in org.skipped:
                err.print(f"[yellow]demo: connector not available:[/] {note}")
            if fmt == "table":
                names = ", ".join(f"{s.name} ({s.type})" for s in org.config.sources)
                err.print(f"[bold]offboard-audit demo[/]: sample organisation with sources {names}")
            store = Store.open(org.config.database_url)
            with progress(show_progress(fmt, None)) as report:
                result = Pipeline(org.config, store, org.ctx, report).run(now)
            render(result, fmt, None, store.actions_by_finding([f.finding_id for f in result.findings]))
            if fmt == "table":
                err.print(
                    "next: write an offboard-audit.toml (see README) and run `offboard-audit audit`; "
                    "`offboard-audit plan` shows what would be revoked."
                )
    return EXIT_OK
