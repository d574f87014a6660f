"""The finding lifecycle and the run status (pure): which stored findings close, and never from a
failed or stale scope; revoked versus resolved; done, degraded or failed_sources."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from offboard_audit.core.lifecycle import update_findings
from offboard_audit.core.records import Finding, FindingStatus, Rule, ScopeFailure, finding_id
from offboard_audit.core.runs import RunStatus, SourceRun, SourceStatus, run_status
from offboard_audit.core.stored import FindingChange, FindingClosure, StoredFinding
from tests.support.fakes import T0, account, credential, leaver

NOW = T0 + timedelta(days=3)


def finding(name: str, scope: str = "111", status: FindingStatus = FindingStatus.OPEN) -> Finding:
    acct = account(name, scope=scope)
    cred = credential(acct, f"K-{name}")
    rule = Rule.CREDENTIAL_AFTER_TERMINATION
    return Finding(
        finding_id=finding_id(rule, acct.source, acct.account_id, cred.credential_id),
        rule=rule,
        severity=rule.severity,
        status=status,
        account=acct,
        person=leaver(name.upper()),
        credential=cred,
        first_seen=T0,
        due_at=T0,
        reason=f"access_key K-{name} still active",
    )


def stored(f: Finding, status: FindingStatus | None = None) -> StoredFinding:
    """``f`` as the store keeps it (optionally with another stored status)."""
    return StoredFinding(
        finding_id=f.finding_id,
        status=status or f.status,
        source=f.account.source,
        scope=f.account.scope,
        reason=f.reason,
        stale=f.stale,
        exemption_id=f.exemption_id,
        due_at=f.due_at,
        account_uid=f.account.uid,
    )


def by_id(*items: StoredFinding) -> dict[str, StoredFinding]:
    return {s.finding_id: s for s in items}


def test_a_finding_not_stored_is_new_and_an_identical_one_changes_nothing() -> None:
    fresh, same = finding("bob"), finding("carol")
    update = update_findings(by_id(stored(same)), [fresh, same], read={("sys", "111")})
    assert update.new == (fresh,) and update.changed == () and update.closed == ()


def test_a_finding_whose_status_reason_staleness_or_identity_differs_is_changed_with_its_old_status() -> None:
    f = finding("bob")
    variants = [
        replace(f, status=FindingStatus.EXEMPTED, exemption_id="ex-1"),
        replace(f, reason="used after termination"),
        replace(f, stale=True),
        replace(f, due_at=T0 + timedelta(days=1)),
        replace(f, account=replace(f.account, uid="uid-reused")),
    ]
    for v in variants:
        update = update_findings(by_id(stored(f)), [v], read=set())
        assert update.changed == (FindingChange(v, FindingStatus.OPEN),), v


def test_a_vanished_finding_of_a_scope_read_now_is_resolved_or_revoked_by_an_applied_action() -> None:
    gone, revoked = finding("bob"), finding("carol")
    update = update_findings(
        by_id(stored(gone), stored(revoked)), [], read={("sys", "111")}, revoked={revoked.finding_id}
    )
    assert set(update.closed) == {
        FindingClosure(gone.finding_id, FindingStatus.OPEN, FindingStatus.RESOLVED),
        FindingClosure(revoked.finding_id, FindingStatus.OPEN, FindingStatus.REVOKED),
    }


def test_an_exempted_finding_closes_too() -> None:
    f = finding("bob", status=FindingStatus.EXEMPTED)
    (closed,) = update_findings(by_id(stored(f)), [], read={("sys", "111")}).closed
    assert (closed.was, closed.to) == (FindingStatus.EXEMPTED, FindingStatus.RESOLVED)


def test_nothing_closes_from_a_scope_that_was_not_read() -> None:
    f = finding("bob", scope="222")
    assert update_findings(by_id(stored(f)), [], read={("sys", "111")}).closed == ()
    # A run that may close nothing (a targeted run, an untrusted HR read) reads no scope.
    assert update_findings(by_id(stored(f)), [], read=set()).closed == ()


def test_nothing_closes_from_a_stale_scope_or_a_failed_source_even_when_listed_as_read() -> None:
    f = finding("bob")
    read = {("sys", "111")}
    assert update_findings(by_id(stored(f)), [], read=read, stale={("sys", "111")}).closed == ()
    assert update_findings(by_id(stored(f)), [], read=read, stale={("sys", "*")}).closed == ()
    # Another source's failure does not hold this one back.
    assert len(update_findings(by_id(stored(f)), [], read=read, stale={("other", "*")}).closed) == 1


def test_revoked_and_resolved_findings_stay_closed() -> None:
    for status in (FindingStatus.REVOKED, FindingStatus.RESOLVED):
        f = finding("bob", status=status)
        assert update_findings(by_id(stored(f)), [], read={("sys", "111")}).closed == ()


def source(status: SourceStatus, failed_scopes: tuple[ScopeFailure, ...] = ()) -> SourceRun:
    return SourceRun("s", "fake", status, failed_scopes=failed_scopes)


def test_run_status_is_failed_sources_over_degraded_over_done() -> None:
    ok, degraded, failed = source(SourceStatus.OK), source(SourceStatus.DEGRADED), source(SourceStatus.FAILED)
    assert run_status([]) is RunStatus.DONE
    assert run_status([ok, ok]) is RunStatus.DONE
    assert run_status([ok, degraded]) is RunStatus.DEGRADED
    assert run_status([degraded, failed, ok]) is RunStatus.FAILED_SOURCES
    # A failed scope fails the run whatever the source's own status says.
    assert run_status([source(SourceStatus.OK, (ScopeFailure("111", "denied"),))]) is RunStatus.FAILED_SOURCES
