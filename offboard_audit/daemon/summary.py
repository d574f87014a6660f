"""What the daemon says about its runs (all pure): the revocation summary a job records, the
job's error and detail lines, and the notification messages of a run."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from offboard_audit.core.jobs import REFUSED_PREFIX, Job, JobAction, JobState, Outcome
from offboard_audit.core.records import FindingStatus, Severity
from offboard_audit.core.rotation import owner_label, rotate_task, rotate_task_json
from offboard_audit.core.runs import RunResult, SourceStatus
from offboard_audit.core.stored import ActionRecord
from offboard_audit.daemon.notify import Message
from offboard_audit.engine.revocation import ApplyReport

_NOTIFY_SEVERITIES = (Severity.CRITICAL, Severity.HIGH)
_SETTLED = ("applied", "noop")


@dataclass(frozen=True)
class RevokeSummary:
    """What a revocation (or undo) pass did, as a job records it."""

    refused: str | None
    actions: tuple[JobAction, ...]
    # The person of each action (None: not known), in the order of ``actions``.
    people: tuple[str | None, ...] = ()
    # The pass raised (or stopped part-way): ``actions`` is what it had done by then.
    error: str | None = None

    @property
    def failed(self) -> tuple[JobAction, ...]:
        return tuple(a for a in self.actions if a.status == "failed")


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended, before it is recorded."""

    state: JobState
    run_id: str | None = None
    detail: str = ""
    summary: RevokeSummary | None = None
    error: str | None = None
    # Notifications that belong to the job: written in the transaction that records its outcome.
    messages: tuple[Message, ...] = ()
    # The job's actions when they differ from the summary's (see ``job_actions``).
    actions: tuple[JobAction, ...] | None = None

    @property
    def job_actions(self) -> tuple[JobAction, ...]:
        if self.actions is not None:
            return self.actions
        return self.summary.actions if self.summary else ()


@dataclass(frozen=True, slots=True)
class FailedAction:
    action_id: str
    source: str
    action: str
    error: str


def summarize(report: ApplyReport) -> RevokeSummary:
    """The actions of a pass: what it did, and what it recovered from a dead daemon."""
    done = report.outcomes
    # An action a dead daemon left before its change took effect is recovered as "failed" and
    # retried by this same pass: when the retry succeeded, the job did not fail.
    settled = {(o.source, o.action, o.finding_id) for o in done if str(o.status) in _SETTLED}
    recovered = tuple(
        o
        for o in report.recovered
        if not (str(o.status) == "failed" and (o.source, o.action, o.finding_id) in settled)
    )
    return RevokeSummary(
        report.refused,
        tuple(
            JobAction(
                action_id=str(o.action_id),
                finding_id=o.finding_id,
                source=o.source,
                action=o.action,
                status=str(o.status),
                error=o.error,
            )
            for o in done + recovered
        ),
        tuple(o.person for o in done + recovered),
    )


def engine_error(exc: BaseException, done: ApplyReport | None = None) -> RevokeSummary:
    """The summary of a pass that raised (a failure, not a refusal), with what it had done by
    then when it says (``done``: a pass stopped part-way)."""
    base = summarize(done) if done is not None else RevokeSummary(None, ())
    return replace(base, refused=None, error=f"revocation engine error: {type(exc).__name__}: {exc}")


def revocation_failed(summary: RevokeSummary | None) -> bool:
    """A job's point is the revocation: refused or failed actions, or a pass that raised, fail the
    job."""
    return summary is not None and (
        summary.refused is not None or summary.error is not None or bool(summary.failed)
    )


def job_error(state: JobState, summary: RevokeSummary | None) -> str | None:
    if state is not JobState.FAILED or summary is None:
        return None
    if summary.refused:
        return f"{REFUSED_PREFIX}{summary.refused}"
    if summary.error:
        return summary.error
    return f"{len(summary.failed)} action(s) failed: " + "; ".join(
        f"{a.source} {a.action}: {a.error}" for a in summary.failed
    )


def describe_run(result: RunResult, summary: RevokeSummary | None, auto_revoke: bool) -> str:
    """The job's ``detail`` for a targeted reconcile."""
    parts = [f"{len(result.findings)} finding(s)"]
    failed = [s.name for s in result.sources if s.status is SourceStatus.FAILED]
    if failed:
        parts.append(f"failed sources: {', '.join(failed)}")
    if result.circuit_breaker:
        parts.append(f"circuit breaker: {result.circuit_breaker}")
    if not auto_revoke:
        parts.append("audit only (policy.auto_revoke = false)")
    elif summary is not None:
        if summary.refused:
            parts.append(f"revocation refused: {summary.refused}")
        if summary.error:
            parts.append(summary.error)
        counts: dict[str, int] = {}
        for a in summary.actions:
            counts[a.status] = counts.get(a.status, 0) + 1
        parts.append("actions: " + (", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none"))
    return "; ".join(parts)


def revocation_messages(
    result: RunResult, kind: str, summary: RevokeSummary | None, *, include_run: bool = True
) -> list[Message]:
    """What a finished run and its revocation pass (if any) should tell people; without
    ``include_run``, only what the revocation pass adds (the run's own messages, new findings
    and a tripped breaker, are written when the run is stored)."""
    failed = [
        FailedAction(a.action_id, a.source, a.action, a.error or a.status)
        for a in (summary.failed if summary else ())
    ]
    messages = run_messages(
        result, kind, failed, summary.refused if summary else None, include_run=include_run
    )
    if summary is not None and summary.error:
        messages.append(
            Message(
                "run_error",
                f"offboard-audit {kind} run {result.run_id}: {summary.error}",
                (("run_id", result.run_id), ("error", summary.error)),
            )
        )
    return messages


def run_error_messages(kind: str, exc: BaseException) -> list[Message]:
    return [Message("run_error", f"offboard-audit {kind} run failed: {type(exc).__name__}: {exc}")]


def run_messages(
    result: RunResult,
    kind: str,
    failed_actions: Sequence[FailedAction] = (),
    refused: str | None = None,
    *,
    include_run: bool = True,
) -> list[Message]:
    """What a finished run should tell people (pure)."""
    messages: list[Message] = []
    new = (
        []
        if not include_run
        else [
            f
            for f in result.findings
            if f.status is FindingStatus.OPEN
            and f.severity in _NOTIFY_SEVERITIES
            and f.first_seen >= result.started_at
        ]
    )
    if new:
        lines = [
            f"- {f.severity.value}: {f.rule.value} {f.source}/{f.account.username}"
            + (f" {f.credential.kind.value} {f.credential.credential_id}" if f.credential else "")
            + (f" (person {f.person.employee_id})" if f.person else "")
            for f in new[:_LISTED]
        ]
        messages.append(
            Message(
                "new_findings",
                f"offboard-audit {kind} run {result.run_id}: {len(new)} new critical/high finding(s)\n"
                + _listed(lines, len(new)),
                (
                    ("run_id", result.run_id),
                    (
                        "findings",
                        [
                            {"id": f.finding_id, "severity": f.severity.value, "rule": f.rule.value}
                            for f in new
                        ],
                    ),
                ),
            )
        )
    tasks = [t for f in new if (t := rotate_task(f)) is not None]
    if tasks:
        # Secrets a leaver could carry away are rotated by people, not by this tool: say who.
        lines = [
            f"- {t.task} {t.kind} {t.object_id} ({t.person_name or t.person}): owner {owner_label(t.owner)}"
            for t in tasks[:_LISTED]
        ]
        messages.append(
            Message(
                "rotate_tasks",
                f"offboard-audit {kind} run {result.run_id}: {len(tasks)} secret(s) or key(s) to rotate or "
                "remove\n" + _listed(lines, len(tasks)),
                (("run_id", result.run_id), ("rotate_tasks", [rotate_task_json(t) for t in tasks])),
            )
        )
    if result.circuit_breaker and include_run:
        messages.append(
            Message(
                "circuit_breaker",
                f"offboard-audit {kind} run {result.run_id}: circuit breaker tripped, nothing revoked: "
                f"{result.circuit_breaker}",
                (("run_id", result.run_id), ("reason", result.circuit_breaker)),
            )
        )
    if refused and not result.circuit_breaker:
        messages.append(
            Message(
                "revocation_refused",
                f"offboard-audit {kind} run {result.run_id}: revocation refused: {refused}",
                (("run_id", result.run_id), ("reason", refused)),
            )
        )
    if failed_actions:
        lines = [f"- {a.source} {a.action} ({a.action_id}): {a.error}" for a in failed_actions[:20]]
        messages.append(
            Message(
                "failed_actions",
                f"offboard-audit {kind} run {result.run_id}: {len(failed_actions)} action(s) failed\n"
                + "\n".join(lines),
                (
                    ("run_id", result.run_id),
                    (
                        "actions",
                        [{"id": a.action_id, "source": a.source, "error": a.error} for a in failed_actions],
                    ),
                ),
            )
        )
    return messages


# How many findings or rotate tasks a message lists; it says how many more there are.
_LISTED = 20


def _listed(lines: Sequence[str], total: int) -> str:
    """The lines of the first ``_LISTED`` of ``total`` items, and how many more there are."""
    more = f"\n...and {total - _LISTED} more" if total > _LISTED else ""
    return "\n".join(lines) + more


def read_failed(result: RunResult) -> tuple[str, ...]:
    """The account sources whose read of the person failed (whole, or some scopes) in a run."""
    return tuple(s.name for s in result.sources if s.status is SourceStatus.FAILED or s.failed_scopes)


def job_actions(
    employee_id: str,
    previous: Sequence[JobAction],
    summary: RevokeSummary | None,
    stored: Iterable[ActionRecord],
) -> tuple[JobAction, ...]:
    """Exactly the actions of one person's job.

    ``previous``: what earlier attempts of the job recorded (an incomplete job retried);
    ``summary``: this attempt's pass (its recovered actions include other people's, left by a dead
    daemon: only this person's are kept); ``stored``: this person's actions a dead owner of the job
    started, whichever pass settled them since. A failed action retried in the same pass (same
    source, action and finding) is not listed once it succeeded.
    """
    listed: dict[str, JobAction] = {a.action_id: a for a in previous}
    for rec in stored:
        listed[rec.action_id] = JobAction(
            rec.action_id, rec.finding_id, rec.source, rec.action, str(rec.status), rec.error
        )
    for a, person in _summary_people(summary):
        if person is None or person == employee_id:
            listed[a.action_id] = a
    settled = {(a.source, a.action, a.finding_id) for a in listed.values() if a.status in _SETTLED}
    return tuple(
        a
        for a in listed.values()
        if not (a.status == "failed" and (a.source, a.action, a.finding_id) in settled)
    )


def _summary_people(summary: RevokeSummary | None) -> list[tuple[JobAction, str | None]]:
    if summary is None:
        return []
    return list(zip(summary.actions, summary.people or (None,) * len(summary.actions), strict=True))


def outcome_line(job: Job, outcome: Outcome | None, actions: Sequence[JobAction]) -> str:
    """One log line for a job's outcome: what, for whom, why, and the actions taken."""
    reason = job.error or job.detail or ""
    counts: dict[str, int] = {}
    for a in actions:
        counts[a.status] = counts.get(a.status, 0) + 1
    acted = ", ".join(f"{a.source} {a.action} {a.status}" for a in actions[:10])
    more = f" and {len(actions) - 10} more" if len(actions) > 10 else ""
    label = outcome.value if outcome is not None else job.state.value
    line = f"job {job.job_id} ({job.kind.value} for {job.employee_id}): {label}"
    if reason:
        line += f": {reason}"
    line += "; actions applied: " + (acted + more if actions else "none")
    if job.state is JobState.INCOMPLETE and job.next_attempt_at is not None:
        line += f"; next attempt at {job.next_attempt_at.isoformat(timespec='seconds')}"
    return line


def run_line(kind: str, result: RunResult, outcome: str, refused: str | None = None) -> str:
    """One log line for a scheduled run: its outcome, open findings by severity, failed sources."""
    counts = {sev.value: 0 for sev in (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW)}
    for f in result.findings:
        if f.status is FindingStatus.OPEN and f.severity.value in counts:
            counts[f.severity.value] += 1
    failed = read_failed(result)
    parts = [
        f"{kind} run {result.run_id}: {outcome}",
        "findings " + " ".join(f"{k}={v}" for k, v in counts.items()),
        "sources failed: " + (", ".join(failed) if failed else "none"),
    ]
    if result.circuit_breaker:
        parts.append(f"circuit breaker: {result.circuit_breaker}")
    elif refused:
        parts.append(f"revocation refused: {refused}")
    return "; ".join(parts)


def with_people(summary: RevokeSummary, people: Sequence[str | None]) -> RevokeSummary:
    return replace(summary, people=tuple(people))
