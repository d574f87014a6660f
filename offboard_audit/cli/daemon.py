"""``offboard-audit daemon``: the scheduler and the HR webhook server in one process."""

from __future__ import annotations

import os

import typer

from offboard_audit.cli.app import EXIT_OK, EXIT_SOURCE_FAILED, app, err, source_context, state
from offboard_audit.cli.common import EXIT_REFUSED
from offboard_audit.core.errors import ConfigError
from offboard_audit.core.jobs import JobState
from offboard_audit.daemon.logs import FORMATS, configure_logging
from offboard_audit.daemon.notify import redact_secrets
from offboard_audit.daemon.service import Daemon, DaemonOptions, check_webhook_secret, open_store
from offboard_audit.daemon.summary import job_error, revocation_failed
from offboard_audit.report.table import plain


@app.command()
def daemon(
    ctx: typer.Context,
    once: bool = typer.Option(
        False, "--once", help="Run one full reconcile (auto-revoke if configured) and exit."
    ),
    no_webhook: bool = typer.Option(
        False, "--no-webhook", help="Do not serve POST /hooks/hr (/healthz and /metrics stay up)."
    ),
    poll_interval: float = typer.Option(
        2.0,
        "--poll-interval",
        help="Seconds between leadership retries and checks for due scheduled reconciles.",
    ),
    workers: int = typer.Option(4, "--workers", help="Webhook jobs run at the same time."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
    log_format: str = typer.Option(
        "text",
        "--log-format",
        metavar="FORMAT",
        help="text, or json (one JSON object per line, for log shippers).",
    ),
) -> int:
    """Scheduled full reconciles, the HR webhook and targeted reconciles (see docs/daemon.md)."""
    if log_format not in FORMATS:
        raise ConfigError(f"--log-format must be one of {', '.join(FORMATS)}, got {log_format!r}")
    configure_logging(log_level, log_format)
    st = state(ctx)
    config = st.config()
    webhook = config.webhook.enabled and not no_webhook and not once
    secret = os.environ.get(config.webhook.secret_env, "") if webhook else ""
    options = DaemonOptions(
        poll_interval=poll_interval,
        workers=max(1, workers),
        serve_http=not once,
        webhook=webhook,
    )
    raw_secret = secret.encode("utf-8") if secret else None
    # Before the database is opened (and migrated): a missing secret changes nothing.
    check_webhook_secret(config, raw_secret, options)
    redact_secrets(config, os.environ)
    store = open_store(config.database_url)
    sctx = source_context(config)
    d = Daemon(config, store, sctx, options, secret=raw_secret)
    if once:
        run = d.run_once()
        if run is None:
            err.print(
                "no reconcile ran (another process holds the reconcile lock, or it failed: see the log)"
            )
            return EXIT_SOURCE_FAILED
        result = run.result
        summary = ", ".join(f"{k}={v}" for k, v in result.summary().items())
        err.print(f"run {result.run_id}: {len(result.findings)} findings ({summary})")
        if result.circuit_breaker:
            err.print(plain(f"circuit breaker: {result.circuit_breaker}"))
        if result.any_source_failed:
            return EXIT_SOURCE_FAILED
        # With auto_revoke, the run's point is the revocation: a refused pass (cap, breaker), a
        # failed action or a pass that raised must not read as done to cron (as for revoke).
        if revocation_failed(run.revocation):
            err.print(plain(f"auto-revoke: {job_error(JobState.FAILED, run.revocation)}"))
            return EXIT_REFUSED
        return EXIT_OK
    return d.serve()
