"""Commands: demo, audit, findings, db upgrade, config check."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from offboard_audit import output
from offboard_audit.cli.app import (
    EXIT_FINDINGS,
    EXIT_OK,
    EXIT_SOURCE_FAILED,
    app,
    config_app,
    db_app,
    err,
    fail,
    now_utc,
    parse_severity,
    show_progress,
    source_context,
    state,
)
from offboard_audit.config import Config
from offboard_audit.matching import validate_username_rules
from offboard_audit.pipeline import Pipeline
from offboard_audit.records import FindingStatus, RunResult, Severity
from offboard_audit.storage.store import Store


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str], None]]:
    if not enabled:
        yield lambda _m: None
        return
    with err.status("starting") as status:
        yield lambda message: status.update(message)


def _emit(text: str, output_file: Path | None) -> None:
    if output_file is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
    else:
        output_file.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
        err.print(f"wrote {output_file}")


def render(result: RunResult, fmt: str, output_file: Path | None, actions: output.ActionInfo | None) -> None:
    if fmt == "json":
        _emit(output.dumps(output.run_json(result, actions)), output_file)
    elif fmt == "csv":
        _emit(output.findings_csv(result.findings, actions), output_file)
    elif output_file is not None:
        with output_file.open("w", encoding="utf-8") as fh:
            output.print_run_table(output.console(fh), result, actions)
        err.print(f"wrote {output_file}")
    else:
        output.print_run_table(output.console(), result, actions)


def exit_code(result: RunResult, threshold: Severity | None) -> int:
    """3 when a source failed (its results are incomplete), else 1 for open findings at/above threshold."""
    if result.any_source_failed:
        return EXIT_SOURCE_FAILED
    if threshold is not None and any(
        f.status is FindingStatus.OPEN and f.severity.rank >= threshold.rank for f in result.findings
    ):
        return EXIT_FINDINGS
    return EXIT_OK


def _check_format(fmt: str) -> str:
    if fmt not in output.FORMATS:
        raise fail(f"--format must be one of {', '.join(output.FORMATS)}; got {fmt!r}")
    return fmt


@app.command()
def audit(
    ctx: typer.Context,
    source: list[str] = typer.Option([], "--source", help="Only these account sources (repeatable)."),
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    output_file: Path | None = typer.Option(None, "--output", help="Write the report to FILE."),
    accept_hr: bool = typer.Option(
        False,
        "--accept-hr",
        help="Accept this HR read as the new baseline even if it trips the circuit breaker; "
        "the breaker is released for this run (a failed HR source is never accepted).",
    ),
    fail_on: str = typer.Option(
        "high", "--fail-on", help="Exit 1 on open findings at/above: critical, high, medium, low, none."
    ),
) -> int:
    """Collect from every source, match, evaluate, store and print findings."""
    _check_format(fmt)
    threshold = parse_severity(fail_on)
    st = state(ctx)
    config = st.config()
    store = st.store(config)
    with _progress(show_progress(fmt, output_file)) as report:
        pipeline = Pipeline(config, store, source_context(config), report)
        result = pipeline.run(now_utc(), source, accept_hr=accept_hr)
    if accept_hr:
        if pipeline.accepted_breaker is not None:
            err.print(
                "[bold yellow]--accept-hr:[/] this HR read is the new baseline and the circuit breaker "
                f"is released for this run; it had tripped: {escape(pipeline.accepted_breaker)}"
            )
        elif result.circuit_breaker is not None:
            err.print(
                "[bold yellow]--accept-hr:[/] not accepted, a failed HR read cannot be: "
                f"{escape(result.circuit_breaker)}"
            )
        else:
            err.print("--accept-hr: this HR read is the new baseline (the circuit breaker did not trip)")
    render(result, fmt, output_file, store.actions_by_finding([f.finding_id for f in result.findings]))
    return exit_code(result, threshold)


@app.command()
def findings(
    ctx: typer.Context,
    status: str = typer.Option("open", "--status", help="open, exempted, revoked, resolved or all."),
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    person: str | None = typer.Option(None, "--person", help="Only findings of this employee id."),
) -> int:
    """Stored findings from earlier runs."""
    _check_format(fmt)
    valid = [s.value for s in FindingStatus]
    if status != "all" and status not in valid:
        raise fail(f"--status must be one of {', '.join(valid)} or all; got {status!r}")
    st = state(ctx)
    store = st.store()
    rows = store.list_findings(None if status == "all" else [status], person=person)
    actions = store.actions_by_finding([f.finding_id for f in rows])
    if fmt == "json":
        _emit(
            output.dumps(
                {
                    "findings": [output.finding_json(f, actions) for f in output.sort_findings(rows)],
                    "summary": output.summary(rows),
                }
            ),
            None,
        )
    elif fmt == "csv":
        _emit(output.findings_csv(rows, actions), None)
    else:
        console = output.console()
        if rows:
            console.print(output.findings_table(rows, actions, title=f"{status} findings"))
        else:
            console.print(f"no {status} findings")
    return EXIT_OK


@app.command()
def demo(
    ctx: typer.Context,
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
) -> int:
    """Audit an embedded sample organisation: no config, no network, no server."""
    from offboard_audit.demo import demo_org

    _check_format(fmt)
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
            with _progress(show_progress(fmt, None)) as report:
                result = Pipeline(org.config, store, org.ctx, report).run(now)
            render(result, fmt, None, store.actions_by_finding([f.finding_id for f in result.findings]))
            if fmt == "table":
                err.print(
                    "next: write an offboard-audit.toml (see README) and run `offboard-audit audit`; "
                    "`offboard-audit plan` shows what would be revoked."
                )
    return EXIT_OK


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context) -> int:
    """Apply the database migrations (alembic upgrade head)."""
    from offboard_audit.storage.migrate import current_revision, head_revision

    st = state(ctx)
    url = st.database_url()
    store = Store.open(url)
    err.print(f"database at revision {current_revision(store.engine)} (head {head_revision()})")
    return EXIT_OK


def _permissions_table(config: Config) -> Table:
    table = Table(title="sources and the permissions they need", header_style="bold", show_lines=True)
    for col in ("source", "type", "read needs", "revoke actions (permissions)"):
        table.add_column(col)
    for s in config.sources:
        actions = "\n".join(
            f"{a.name} ({a.stage.value}{'' if a.reversible else ', irreversible'}): {', '.join(a.permissions)}"
            for a in s.plugin.revoker_actions.values()
        )
        table.add_row(s.name, s.type, "\n".join(s.plugin.read_permissions) or "-", actions or "-")
    return table


@config_app.command("check")
def config_check(ctx: typer.Context) -> int:
    """Validate the config file and print the permissions each source needs."""
    st = state(ctx)
    config = st.config()
    problems = validate_username_rules(config.matching.username_rules)
    if problems:
        raise fail("matching.username_rules: " + "; ".join(problems))
    sctx = source_context(config)
    for s in config.sources:
        s.plugin.make_source(s.options, sctx)  # builds only; raises ConfigError naming the key
    console = output.console()
    console.print(
        f"[green]ok[/]: {config.path} ({len(config.sources)} sources, database {config.database_url})"
    )
    console.print(_permissions_table(config))
    pol = config.policy
    console.print(
        f"policy: grace_period={pol.grace_period}, auto_revoke={pol.auto_revoke}, "
        f"max_revocations_per_run={pol.max_revocations_per_run}, "
        f"max_new_terminations={pol.max_new_terminations}, max_missing_people={pol.max_missing_people}, "
        f"min_breaker_count={pol.min_breaker_count}, protected={list(pol.protected)}"
    )
    if not config.hr_sources:
        err.print("[yellow]warning:[/] no HR source configured; audits will refuse to run")
    return EXIT_OK


@config_app.command("reference")
def config_reference() -> int:
    """Print the reference of every config option (Markdown)."""
    from offboard_audit.reference import config_reference_markdown

    sys.stdout.write(config_reference_markdown())
    return EXIT_OK
