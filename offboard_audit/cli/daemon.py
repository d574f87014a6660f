"""``offboard-audit daemon``: the scheduler and the HR webhook server in one process."""

from __future__ import annotations

import logging
import os
import sys

import typer

from offboard_audit.cli.app import EXIT_OK, EXIT_SOURCE_FAILED, app, err, source_context, state
from offboard_audit.daemon.service import Daemon, DaemonOptions, open_store
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
) -> int:
    """Scheduled full reconciles, the HR webhook and targeted reconciles (see docs/daemon.md)."""
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    st = state(ctx)
    config = st.config()
    store = open_store(config.database_url)
    sctx = source_context(config)
    webhook = config.webhook.enabled and not no_webhook and not once
    secret = os.environ.get(config.webhook.secret_env, "") if webhook else ""
    options = DaemonOptions(
        poll_interval=poll_interval,
        workers=max(1, workers),
        serve_http=not once,
        webhook=webhook,
    )
    d = Daemon(config, store, sctx, options, secret=secret.encode("utf-8") if secret else None)
    if once:
        result = d.run_once()
        if result is None:
            err.print(
                "no reconcile ran (another process holds the reconcile lock, or it failed: see the log)"
            )
            return EXIT_SOURCE_FAILED
        summary = ", ".join(f"{k}={v}" for k, v in result.summary().items())
        err.print(f"run {result.run_id}: {len(result.findings)} findings ({summary})")
        if result.circuit_breaker:
            err.print(plain(f"circuit breaker: {result.circuit_breaker}"))
        return EXIT_SOURCE_FAILED if result.any_source_failed else EXIT_OK
    return d.serve()
