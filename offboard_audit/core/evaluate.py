"""Turn linked accounts and their credentials into findings. Pure: takes ``now``, does no I/O.

Rules (design.md):

* ``used-after-termination`` (critical): an active credential, or an enabled account, whose
  last use is after its owner's termination.
* ``credential-after-termination`` (high): an active credential or enabled account of a
  departed person.
* ``ambiguous-owner`` (medium): an enabled human account that matches several people; also a
  service or disabled account that matches several people, one of them departed, while it holds
  an active credential (owned by the departed one alone it would be flagged).
* ``orphan-account`` (medium): an enabled human account that matches nobody.

One finding per credential: the most severe rule wins. Inactive credentials raise nothing;
a finding whose credential became inactive or vanished is resolved by storage. Provisional
credentials (placeholder ids from a bulk listing that the detail pass did not replace) raise
nothing either: no placeholder id may reach a finding, a plan or evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from offboard_audit.core import selectors
from offboard_audit.core.records import (
    Account,
    AccountKind,
    Credential,
    Exemption,
    Finding,
    FindingStatus,
    Link,
    Person,
    Rule,
    finding_id,
)

if TYPE_CHECKING:
    from offboard_audit.core.policy import PolicyConfig


@dataclass(frozen=True)
class EvalPolicy:
    grace_period: timedelta = timedelta(0)
    orphan_accounts: bool = True
    service_accounts_owned: bool = True
    # Protected accounts (break-glass, root) are ownerless on purpose: no orphan/ambiguous noise.
    protected: tuple[str, ...] = ()

    @classmethod
    def of(cls, policy: PolicyConfig) -> EvalPolicy:
        """The part of the configured policy that evaluation uses."""
        return cls(
            policy.grace_period, policy.orphan_accounts, policy.service_accounts_owned, policy.protected
        )


def _fmt(t: datetime) -> str:
    return t.isoformat(timespec="seconds")


def _used_after(credential: Credential, person: Person) -> bool:
    assert person.terminated_at is not None
    return credential.last_used_at is not None and credential.last_used_at > person.terminated_at


def _ambiguous_leaver_holding(
    link: Link, creds: Sequence[Credential], now: datetime, policy: EvalPolicy
) -> bool:
    """Whether a service account, or a disabled account, is ambiguous between people of whom one
    has left while it still holds an active credential. Owned by that person alone, it would be
    flagged; a second candidate (a new hire given the leaver's email, a rehire) must not make
    it vanish from the findings (and resolve the open ones): it is reported as ambiguous."""
    if not link.ambiguous or not any(p.is_departed(now) for p in link.people):
        return False
    if link.account.kind is AccountKind.SERVICE and not policy.service_accounts_owned:
        return False
    return any(c.active and not c.provisional for c in creds)


def evaluate(
    links: Iterable[Link],
    credentials: Mapping[tuple[str, str], Sequence[Credential]],
    now: datetime,
    policy: EvalPolicy = EvalPolicy(),
    exemptions: Sequence[Exemption] = (),
    first_seen: Mapping[str, datetime] | None = None,
    stale_scopes: frozenset[tuple[str, str]] = frozenset(),
) -> list[Finding]:
    """Evaluate every link. ``credentials`` is keyed by (source, account_id).

    ``first_seen`` carries finding ids already known (so ids and first_seen stay stable);
    ``stale_scopes`` lists (source, scope) pairs whose data is from an earlier run.
    """
    seen = first_seen or {}
    findings: list[Finding] = []

    def make(
        rule: Rule,
        account: Account,
        person: Person | None,
        credential: Credential | None,
        reason: str,
        due_at: datetime | None,
        candidates: tuple[Person, ...] = (),
    ) -> Finding:
        fid = finding_id(
            rule, account.source, account.account_id, credential.credential_id if credential else None
        )
        exemption = selectors.active_exemption(exemptions, account, credential, now)
        stale = (account.source, account.scope) in stale_scopes or (account.source, "*") in stale_scopes
        return Finding(
            finding_id=fid,
            rule=rule,
            severity=rule.severity,
            status=FindingStatus.EXEMPTED if exemption else FindingStatus.OPEN,
            account=account,
            person=person,
            credential=credential,
            first_seen=seen.get(fid, now),
            due_at=due_at,
            reason=reason,
            candidates=candidates,
            exemption_id=exemption.exemption_id if exemption else None,
            stale=stale,
        )

    for link in links:
        account = link.account
        creds = credentials.get((account.source, account.account_id), ())
        person = link.person
        if person is not None and person.is_departed(now):
            if account.kind is AccountKind.SERVICE and not policy.service_accounts_owned:
                continue
            assert person.terminated_at is not None
            due = person.terminated_at + policy.grace_period
            for cred in creds:
                if not cred.active or cred.provisional:
                    continue
                if _used_after(cred, person):
                    assert cred.last_used_at is not None
                    precision = ""
                    if cred.last_used_precision:
                        precision = f" (recorded to within {cred.last_used_precision})"
                    if cred.last_used_stale:
                        precision += " (as of an earlier read: this run could not read its last use)"
                    reason = (
                        f"{cred.kind.value} {cred.credential_id} last used {_fmt(cred.last_used_at)}{precision}, "
                        f"after {person.name or person.employee_id} left on {_fmt(person.terminated_at)}"
                    )
                    findings.append(make(Rule.USED_AFTER_TERMINATION, account, person, cred, reason, due))
                else:
                    reason = (
                        f"{cred.kind.value} {cred.credential_id} still active; "
                        f"{person.name or person.employee_id} left on {_fmt(person.terminated_at)}"
                    )
                    if cred.last_used_stale:
                        # The last use kept from an earlier read says nothing of the time since:
                        # a use after leaving is not ruled out, so say so rather than imply it.
                        last = _fmt(cred.last_used_at) if cred.last_used_at else "none"
                        reason += (
                            f"; this run could not read its last use (last known: {last}), "
                            "so a use after leaving is not ruled out"
                        )
                    findings.append(
                        make(Rule.CREDENTIAL_AFTER_TERMINATION, account, person, cred, reason, due)
                    )
            continue
        if (account.kind is not AccountKind.HUMAN or not account.enabled) and not _ambiguous_leaver_holding(
            link, creds, now, policy
        ):
            continue
        if selectors.first_match(policy.protected, account) is not None:
            continue
        if link.ambiguous:
            names = ", ".join(f"{p.employee_id} ({p.email or p.name})" for p in link.people)
            reason = f"account {account.username!r} matches {len(link.people)} people by {link.matched_by}: {names}"
            findings.append(make(Rule.AMBIGUOUS_OWNER, account, None, None, reason, None, link.people))
        elif not link.people and policy.orphan_accounts:
            reason = f"enabled human account {account.username!r} matches nobody in HR"
            findings.append(make(Rule.ORPHAN_ACCOUNT, account, None, None, reason, None))
    return findings
