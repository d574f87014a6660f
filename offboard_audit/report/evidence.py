"""Evidence pack for one departed person (``offboard-audit report --person ID``).

What an auditor asks for (SOC 2 CC6.2, ISO 27001 A.5.18, PCI DSS 8.2.5): every account and
credential found for the person, when each was last used, what was revoked, when and by whom,
and the time from termination to revocation.

Where each part comes from, and the pack says so:

* **Revocations** (what was revoked, when, by whom, undone or not, time to revoke, the history
  of every step) come from the hash-chained audit events only (``core/chain_history.py``).
  The ``actions`` table is not covered by the chain; where it disagrees with the events, the
  pack lists the disagreement under ``discrepancies`` and goes by the events.
* **Inventory** (accounts, credentials, last use, findings) comes from what the latest audit
  stored: it is what the systems showed then, not part of the audit log.
* **Secrets this person could carry away** (``report/carry_away.py``): the exposure findings
  (secrets and keys they read, wrote or exported that are still valid, objects they left for
  other identities), each with the accesses that exposed it (from the exposure ledger: the
  systems' audit logs as read), its rotation state (the stored inventory), the tool's own
  rotation if any (from the chain) and the rotate task's owner; PCI DSS 3.7.5 and 8.2.5 cited.
  They are not credentials of the person's accounts: they stay out of the credentials table and
  of the time to revoke.

Time to revoke is measured from termination to the revocation **in force now**: after revoke,
undo and revoke again it is the second revocation, and the history lists all three steps, each
with its own time. The whole chain is verified (with the audit key and against the anchors when
configured) and the pack states the mode that produced it and what that proves.

This module gathers the pack; ``report/evidence_render.py`` renders it as JSON and HTML.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from offboard_audit.core.chain_history import ChainAction, Discrepancy, discrepancies
from offboard_audit.core.records import Account, Finding, FindingStatus, Person
from offboard_audit.report import carry_away
from offboard_audit.report.audit_trail import AuditTrail, TrailCheck, check_trail
from offboard_audit.report.carry_away import CarriedSecret, carried_secrets
from offboard_audit.storage.actions import load_actions
from offboard_audit.storage.store import Store

# Findings whose credential should be revoked: open ones, and those an earlier audit saw revoked.
_NEEDS_REVOCATION = (FindingStatus.OPEN.value, FindingStatus.REVOKED.value)


@dataclass(frozen=True)
class CredentialEvidence:
    source: str
    system: str
    account_id: str
    username: str
    credential_id: str
    kind: str
    active: bool | None
    created_at: datetime | None
    last_used_at: datetime | None
    finding_id: str | None
    rule: str | None
    finding_status: str | None
    # The revocation in force now (from the chain), if any.
    revoked_at: datetime | None
    revoked_by: str | None
    revoked_by_action: str | None
    undone: bool
    time_to_revoke: timedelta | None
    # Every action and undo on this credential, oldest first (from the chain).
    history: tuple[ChainAction, ...] = ()

    @property
    def needs_revocation(self) -> bool:
        return self.finding_status in _NEEDS_REVOCATION


@dataclass(frozen=True)
class AccountEvidence:
    source: str
    account_id: str
    display_name: str
    owner_hints: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Evidence:
    employee_id: str
    people: tuple[Person, ...]
    generated_at: datetime
    credentials: tuple[CredentialEvidence, ...]
    # This person's actions as the chain has them, oldest first.
    actions: tuple[ChainAction, ...]
    check: TrailCheck
    discrepancies: tuple[Discrepancy, ...]
    accounts: tuple[AccountEvidence, ...] = ()
    # What they could carry away (exposure findings), open ones first.
    carried: tuple[CarriedSecret, ...] = ()

    @property
    def terminated_at(self) -> datetime | None:
        times = [p.terminated_at for p in self.people if p.terminated_at is not None]
        return min(times) if times else None

    @property
    def open_findings(self) -> int:
        return sum(1 for c in self.credentials if c.finding_status == FindingStatus.OPEN)

    @property
    def revoked(self) -> int:
        return sum(1 for c in self.credentials if c.revoked_at is not None)

    @property
    def fully_revoked_at(self) -> datetime | None:
        """When the last credential that needed revoking was revoked (revocations in force, per
        the chain); None while any of them has none."""
        needed = [c for c in self.credentials if c.needs_revocation]
        if not needed or any(c.revoked_at is None for c in needed):
            return None
        return max(c.revoked_at for c in needed if c.revoked_at is not None)

    @property
    def chain_ok(self) -> bool:
        return self.check.result.ok and not self.check.anchor_problems

    @property
    def chain_problems(self) -> tuple[str, ...]:
        return (*(str(p) for p in self.check.result.problems), *self.check.anchor_problems)

    @property
    def chain_head(self) -> str:
        return self.check.result.head_hash


def in_force(history: Sequence[ChainAction]) -> tuple[ChainAction | None, bool]:
    """The revocation in force now among one credential's actions, and whether its latest
    revocation was undone (with nothing in force since).

    Per action name (disable, delete), the latest attempt decides: a revocation is planned again
    only once the earlier one stopped holding (undone, or the credential seen active again), so
    an earlier success followed by another attempt is no longer in force. Of the actions in force
    (a disable and a later delete), the earliest is when access ended.
    """
    latest: dict[str, ChainAction] = {}
    for a in history:
        if a.undo_of is None:
            latest[str(a.field("action"))] = a
    holding = [a for a in latest.values() if a.revoked and a.undone_by is None]
    if holding:
        return min(holding, key=lambda a: (a.done_at, a.steps[0].seq)), False
    return None, any(a.undone_by is not None for a in latest.values())


def collect_evidence(
    store: Store, employee_id: str, now: datetime, trail: AuditTrail | None = None
) -> Evidence:
    """Gather everything known about one person's accounts, credentials and revocations."""
    trail = trail or AuditTrail()
    people = tuple(p for p in store.load_people() if p.employee_id == employee_id)
    everything_found = store.list_findings(None, person=employee_id)
    # Exposure findings name secrets, not credentials of the person's accounts: their own section.
    exposed = [f for f in everything_found if carry_away.is_exposure(f)]
    findings = [f for f in everything_found if not carry_away.is_exposure(f)]
    terminated = min((p.terminated_at for p in people if p.terminated_at), default=None)

    check = check_trail(store, trail, rows=(), expected=())
    everything = check.actions
    mine = {aid: a for aid, a in everything.items() if a.person == employee_id}
    rows = {r.action_id: r for r in load_actions(store, person=employee_id)}
    if mine:
        rows.update({r.action_id: r for r in load_actions(store, action_ids=list(mine))})
    found = discrepancies(list(rows.values()), everything, mine.keys())

    per_finding: dict[str, list[ChainAction]] = {}
    for a in everything.values():
        if a.finding_id is not None:
            per_finding.setdefault(a.finding_id, []).append(a)

    by_cred: dict[tuple[str, str, str], Finding] = {}
    for f in findings:
        if f.credential is not None:
            by_cred[(f.source, f.account.account_id, f.credential.credential_id)] = f

    accounts = {(f.source, f.account.account_id): f for f in findings}
    rows_out: list[CredentialEvidence] = []
    account_info: dict[tuple[str, str], AccountEvidence] = {}
    seen: set[tuple[str, str, str]] = set()
    for source in sorted({s for s, _ in accounts}):
        snapshot = store.load_snapshot(source)
        wanted = {aid for s, aid in accounts if s == source}
        names = {a.account_id: a for a in snapshot.accounts}
        for aid in wanted:
            account_info[(source, aid)] = _account_info(source, aid, names.get(aid), accounts[(source, aid)])
        for c in snapshot.credentials:
            if c.account_id not in wanted:
                continue
            key = (source, c.account_id, c.credential_id)
            seen.add(key)
            hit = by_cred.get(key)
            acct = names.get(c.account_id)
            rows_out.append(
                _row(
                    source,
                    acct.system if acct else accounts[(source, c.account_id)].system,
                    c.account_id,
                    acct.username if acct else accounts[(source, c.account_id)].account.username,
                    c.credential_id,
                    c.kind.value,
                    c.active,
                    c.created_at,
                    c.last_used_at,
                    hit,
                    per_finding,
                    terminated,
                )
            )
    for key, f in by_cred.items():
        if key in seen or f.credential is None:
            continue
        # The credential is gone from the latest snapshot (deleted); the finding kept a copy.
        rows_out.append(
            _row(
                f.source,
                f.system,
                f.account.account_id,
                f.account.username,
                f.credential.credential_id,
                f.credential.kind.value,
                None,
                f.credential.created_at,
                f.credential.last_used_at,
                f,
                per_finding,
                terminated,
            )
        )
    rows_out.sort(key=lambda r: (r.source, r.username, r.kind, r.credential_id))
    carried = carried_secrets(
        exposed,
        {src: store.exposure_secrets(src) for src in sorted({f.source for f in exposed})},
        per_finding,
        {f.finding_id: _closed_at(store, f.finding_id) for f in exposed},
        in_force,
    )
    return Evidence(
        employee_id=employee_id,
        people=people,
        generated_at=now,
        credentials=tuple(rows_out),
        actions=tuple(sorted(mine.values(), key=lambda a: a.steps[0].seq)),
        check=check,
        discrepancies=tuple(found),
        accounts=tuple(account_info[k] for k in sorted(account_info)),
        carried=carried,
    )


def _closed_at(store: Store, finding_id: str) -> datetime | None:
    """When an audit last closed the finding (resolved or revoked), from its status history."""
    closing = (FindingStatus.RESOLVED.value, FindingStatus.REVOKED.value)
    times = [at for at, _was, to, _run in store.finding_history(finding_id) if to in closing]
    return max(times, default=None)


def _account_info(source: str, account_id: str, account: Account | None, f: Finding) -> AccountEvidence:
    acct = account or f.account
    return AccountEvidence(source, account_id, acct.display_name, tuple(acct.attributes))


def _row(
    source: str,
    system: str,
    account_id: str,
    username: str,
    credential_id: str,
    kind: str,
    active: bool | None,
    created_at: datetime | None,
    last_used_at: datetime | None,
    f: Finding | None,
    per_finding: Mapping[str, list[ChainAction]],
    terminated: datetime | None,
) -> CredentialEvidence:
    history = sorted(per_finding.get(f.finding_id, []) if f else [], key=lambda a: a.steps[0].seq)
    action, undone = in_force(history)
    revoked_at = action.done_at if action else None
    return CredentialEvidence(
        source=source,
        system=system,
        account_id=account_id,
        username=username,
        credential_id=credential_id,
        kind=kind,
        active=active,
        created_at=created_at,
        last_used_at=last_used_at,
        finding_id=f.finding_id if f else None,
        rule=f.rule.value if f else None,
        finding_status=f.status.value if f else None,
        revoked_at=revoked_at,
        revoked_by=action.actor if action else None,
        revoked_by_action=action.action_id if action else None,
        undone=undone,
        time_to_revoke=(revoked_at - terminated) if revoked_at and terminated else None,
        history=tuple(history),
    )
