"""The finding lifecycle: what one run's findings change in the stored ones (pure).

A finding this run produced is new (not stored yet), changed (status, reason, staleness,
exemption, due time or the account's identity differ from the stored row) or unchanged. A stored
``open`` or ``exempted`` finding that this run did not produce is closed, but only when its
source and scope were read successfully in this run: a failed or stale scope proves nothing, an
unreachable source is never taken as clean. Nor does a finding close while its credential is
still there but the optional enrichment that decides its rule failed (``keep_open``): missing
evidence never resolves or downgrades a finding. A closed finding is ``revoked`` when an applied
action revoked its credential, else ``resolved`` (the credential went away by other means).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping

from offboard_audit.core.records import Account, Credential, Finding, FindingStatus, Rule, finding_id
from offboard_audit.core.stored import FindingChange, FindingClosure, FindingUpdate, StoredFinding

Scope = tuple[str, str]  # (source name, scope); scope "*" stands for every scope of the source

# Only these close when their credential is gone; revoked and resolved findings stay closed.
CLOSABLE = frozenset({FindingStatus.OPEN, FindingStatus.EXEMPTED})


def _unchanged(old: StoredFinding, f: Finding) -> bool:
    return (
        old.status is f.status
        and old.reason == f.reason
        and old.stale == f.stale
        and old.exemption_id == f.exemption_id
        and old.due_at == f.due_at
        and old.account_uid == f.account.uid
    )


def closable(old: StoredFinding, read: Collection[Scope], stale: Collection[Scope]) -> bool:
    """Whether a stored finding that this run did not produce may close: it is open or exempted
    and its scope was read in this run (``read``), and neither that scope nor its whole source
    is stale."""
    if old.status not in CLOSABLE:
        return False
    if (old.source, old.scope) in stale or (old.source, "*") in stale:
        return False
    return (old.source, old.scope) in read


def update_findings(
    stored: Mapping[str, StoredFinding],
    findings: Iterable[Finding],
    read: Collection[Scope],
    revoked: Collection[str] = (),
    stale: Collection[Scope] = (),
    keep_open: Collection[str] = (),
) -> FindingUpdate:
    """What storing ``findings`` changes in ``stored`` (by finding id).

    ``read`` holds the (source, scope) pairs this run read successfully (empty for a run that
    may close nothing: a targeted run, an untrusted HR read); ``stale`` those it did not; a
    finding in a stale scope never closes even if ``read`` names its scope. ``revoked`` holds
    the ids of findings whose credential an applied action revoked. ``keep_open`` holds ids of
    findings this run cannot disprove (:func:`unproven_ids`): they never close.
    """
    current = {f.finding_id: f for f in findings}
    new: list[Finding] = []
    changed: list[FindingChange] = []
    for fid, f in current.items():
        old = stored.get(fid)
        if old is None:
            new.append(f)
        elif not _unchanged(old, f):
            changed.append(FindingChange(f, old.status))
    closed = [
        FindingClosure(fid, old.status, FindingStatus.REVOKED if fid in revoked else FindingStatus.RESOLVED)
        for fid, old in stored.items()
        if fid not in current and fid not in keep_open and closable(old, read, stale)
    ]
    return FindingUpdate(tuple(new), tuple(changed), tuple(closed))


def unproven_ids(accounts: Iterable[Account], credentials: Iterable[Credential]) -> frozenset[str]:
    """Every finding id that could stand for these accounts and credentials, under any rule.

    Given the enabled accounts and active credentials of the scopes whose optional enrichment
    failed: a stored finding about one of them that this run did not produce may be missing only
    for lack of the evidence (a last use that was not read turns ``used-after-termination`` into
    ``credential-after-termination``), so it must not close. A credential that is gone or
    inactive is proved so by the read itself, and its finding closes as usual.
    """
    ids: set[str] = set()
    for a in accounts:
        if a.enabled:
            ids.update(finding_id(rule, a.source, a.account_id, None) for rule in Rule)
    for c in credentials:
        if c.active and not c.provisional:
            ids.update(finding_id(rule, c.source, c.account_id, c.credential_id) for rule in Rule)
    return frozenset(ids)
