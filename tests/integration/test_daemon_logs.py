"""Issue 15, "the daemon says what it did": one log line per job outcome (done, failed, refused,
incomplete, superseded) with its reason and the actions applied, one per scheduled run (counts by
severity, sources failed), counters labelled by the real outcome, third-party loggers quiet at
INFO, and /metrics parsed with prometheus_client's parser."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from offboard_audit.core.jobs import HREventType, JobState
from offboard_audit.core.records import Person, SourceData
from offboard_audit.daemon.logs import JsonFormatter, configure_logging
from tests.support.daemon_world import NOW, World, accept, world


def samples(w: World) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(w.daemon.metrics.render()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
    return out


def job_lines(caplog: pytest.LogCaptureFixture, job_id: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(f"job {job_id} ")]


def test_each_job_outcome_is_one_log_line_with_its_reason_and_actions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    w = world(tmp_path)
    w.daemon.run_full("audit")

    done = w.daemon.run_job(accept(w, "E2").job_id)
    assert done is not None and done.state is JobState.DONE
    (line,) = job_lines(caplog, done.job_id)
    assert line.levelno == logging.INFO
    assert line.getMessage().startswith(f"job {done.job_id} (terminate for E2): done: 2 finding(s)")
    assert "actions applied: tgt disable applied, full disable applied" in line.getMessage()

    w.fake.status = "failed"
    failed = w.daemon.run_job(accept(w, "E1").job_id)
    assert failed is not None and failed.state is JobState.FAILED
    (line,) = job_lines(caplog, failed.job_id)
    assert line.levelno == logging.WARNING
    assert ": failed: 2 action(s) failed: tgt disable: boom" in line.getMessage()
    w.fake.status = "applied"

    original = w.tgt.collect_for

    def throttled(person: Person) -> SourceData:
        raise ConnectionError("Throttling")

    w.tgt.collect_for = throttled  # type: ignore[method-assign]
    incomplete = w.daemon.run_job(accept(w, "E3").job_id)
    w.tgt.collect_for = original  # type: ignore[method-assign]
    assert incomplete is not None and incomplete.state is JobState.INCOMPLETE
    (line,) = job_lines(caplog, incomplete.job_id)
    assert ": incomplete: the read of E3 failed in tgt (retried)" in line.getMessage()
    assert "next attempt at" in line.getMessage()

    w.daemon.run_job(accept(w, "S1", HREventType.REHIRED, effective_at=NOW).job_id)
    late = w.daemon.run_job(accept(w, "S1", effective_at=NOW - timedelta(days=2)).job_id)
    assert late is not None and late.state is JobState.SUPERSEDED
    (line,) = job_lines(caplog, late.job_id)
    assert ": superseded: superseded: effective_at" in line.getMessage()
    assert "actions applied: none" in line.getMessage()

    counts = samples(w)
    for outcome in ("done", "failed", "incomplete", "superseded"):
        assert (
            counts[("offboard_audit_webhook_jobs_total", (("kind", "terminate"), ("outcome", outcome)))] == 1
        )


def test_a_breaker_refused_job_and_its_run_are_counted_and_logged_as_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    w = world(tmp_path, staff=0, policy={"min_breaker_count": 0}, real_engine=True)
    w.daemon.run_full("audit")
    job = w.daemon.run_job(accept(w, "E2").job_id)
    assert job is not None and job.state is JobState.FAILED and job.outcome is not None
    assert job.outcome.value == "refused"
    (line,) = job_lines(caplog, job.job_id)
    assert ": refused: revocation refused: HR circuit breaker tripped" in line.getMessage()
    counts = samples(w)
    assert counts[("offboard_audit_webhook_jobs_total", (("kind", "terminate"), ("outcome", "refused")))] == 1
    assert ("offboard_audit_webhook_jobs_total", (("kind", "terminate"), ("outcome", "done"))) not in counts
    assert counts[("offboard_audit_runs_total", (("kind", "targeted"), ("status", "refused")))] == 1
    assert ("offboard_audit_runs_total", (("kind", "targeted"), ("status", "done"))) not in counts
    assert (
        counts[("offboard_audit_webhook_job_seconds_count", (("kind", "terminate"), ("state", "failed")))]
        == 1
    )


def test_each_scheduled_run_is_one_log_line_with_counts_by_severity_and_failed_sources(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    w = world(tmp_path, carol_terminated=True, policy={"auto_revoke": False})
    run = w.daemon.run_full("audit")
    assert run is not None
    (line,) = [r for r in caplog.records if r.getMessage().startswith(f"audit run {run.run_id}")]
    assert line.getMessage() == (
        f"audit run {run.run_id}: done; findings critical=0 high=2 medium=0 low=0; sources failed: none"
    )
    w.full.fail = "AccessDenied"
    failing = w.daemon.run_full("audit")
    assert failing is not None
    (line,) = [r for r in caplog.records if r.getMessage().startswith(f"audit run {failing.run_id}")]
    assert line.levelno == logging.WARNING
    assert line.getMessage().startswith(
        f"audit run {failing.run_id}: failed_sources; findings critical=0 high=2"
    )
    assert line.getMessage().endswith("sources failed: full")
    counts = samples(w)
    assert counts[("offboard_audit_runs_total", (("kind", "audit"), ("status", "failed_sources")))] == 1
    assert counts[("offboard_audit_findings", (("severity", "high"),))] == 2


def test_third_party_loggers_are_quiet_at_info_and_json_lines_parse(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json
    import sys

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("info", "json", stream=sys.stderr)
        for name in ("alembic.runtime.migration", "botocore.credentials", "httpx", "httpcore.connection"):
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
        logging.getLogger("alembic.runtime.migration").info("Running upgrade 0008 -> 0009")
        logging.getLogger("botocore.credentials").info("Found credentials in environment variables.")
        logging.getLogger("offboard_audit.daemon.service").info("daemon %s running", "n1")
        lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
        assert [(x["level"], x["logger"], x["message"]) for x in lines] == [
            ("info", "offboard_audit.daemon.service", "daemon n1 running")
        ]
        with pytest.raises(ValueError):
            configure_logging("info", "xml")
        assert JsonFormatter().format(logging.LogRecord("x", logging.ERROR, "", 0, "é %s", ("ü",), None))
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])


def test_the_database_password_and_notification_urls_never_reach_the_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys
    from dataclasses import replace

    from offboard_audit.config.sections import NotificationConfig
    from offboard_audit.daemon.notify import redact_secrets
    from tests.support.configs import config_with

    config = config_with(tmp_path)
    config = replace(
        config,
        database_url="postgresql+psycopg://audit:s3cr%40t-pw@db.example:5432/audit",
        notifications=NotificationConfig(urls=("https://hooks.example.test/services/T0/B0/tok-123",)),
    )
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("info", "text", stream=sys.stderr)
        redact_secrets(config, {})
        log = logging.getLogger("offboard_audit.daemon.test")
        try:
            raise RuntimeError(f"cannot connect to {config.database_url} (password s3cr@t-pw)")
        except RuntimeError:
            log.exception("leadership step failed")
        log.warning("posting to https://hooks.example.test/services/T0/B0/tok-123 failed")
        err = capsys.readouterr().err
        assert "s3cr" not in err and "tok-123" not in err
        assert "postgresql+psycopg://audit:***@db.example:5432/audit" in err
        assert "https://hooks.example.test/***" in err
    finally:
        from offboard_audit.daemon import logs

        logs._REDACTIONS.clear()
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])


def test_a_revocation_pass_that_stops_part_way_fails_the_job_lists_what_it_did_and_is_not_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from offboard_audit.engine.revocation import ActionOutcome, ApplyReport, PassInterrupted

    caplog.set_level(logging.INFO)
    w = world(tmp_path)
    w.daemon.run_full("audit")

    def stops(result: object, now: object, person: str | None = None) -> ApplyReport:
        done = ApplyReport(None, (ActionOutcome("a-1", None, "tgt", "disable", "applied", person="E2"),))
        raise PassInterrupted(done, RuntimeError("database is locked"))

    w.fake.auto_revoke = stops  # type: ignore[method-assign]
    job = w.daemon.run_job(accept(w, "E2").job_id)
    assert job is not None and job.state is JobState.FAILED and job.outcome is not None
    assert job.outcome.value == "failed"
    assert job.error == "revocation engine error: RuntimeError: database is locked"
    assert [(a.action_id, a.status) for a in job.actions] == [("a-1", "applied")]
    (line,) = job_lines(caplog, job.job_id)
    assert ": failed: revocation engine error: RuntimeError: database is locked" in line.getMessage()
    assert (
        samples(w)[("offboard_audit_webhook_jobs_total", (("kind", "terminate"), ("outcome", "failed")))] == 1
    )


def test_a_database_password_with_json_escaped_characters_never_reaches_the_json_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--log-format json`` redacts like the text format: a password with a quote or a backslash
    is written JSON-escaped (``pa\\"ss``), which the redaction of the raw password did not match,
    and a log shipper decodes it back to the password."""
    import json
    import sys
    from dataclasses import replace

    from offboard_audit.daemon.notify import redact_secrets
    from tests.support.configs import config_with

    password = 'pa"ss\\wd'
    config = replace(
        config_with(tmp_path),
        database_url="postgresql+psycopg://audit:pa%22ss%5Cwd@db.example:5432/audit",
    )
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("info", "json", stream=sys.stderr)
        redact_secrets(config, {})
        log = logging.getLogger("offboard_audit.daemon.test")
        try:
            raise RuntimeError(f"cannot connect (password {password})")
        except RuntimeError:
            log.exception("leadership step failed: password %s", password)
        lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
        (entry,) = lines
        shown = entry["message"] + entry["exception"]
        assert password not in shown
        assert entry["message"] == "leadership step failed: password ***"
        assert "cannot connect (password ***)" in entry["exception"]
    finally:
        from offboard_audit.daemon import logs

        logs._REDACTIONS.clear()
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
