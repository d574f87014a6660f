"""In-memory fakes of the connector protocols for core tests (no I/O, call counting)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from offboard_audit.core.actions import ResourceState, Stage
from offboard_audit.core.errors import SourceError
from offboard_audit.core.records import (
    Account,
    AccountKind,
    Credential,
    CredentialKind,
    HRRead,
    Person,
    PersonStatus,
    ScopeFailure,
    SourceData,
)
from offboard_audit.core.stored import ActionRecord, ActionStatus

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def person(
    employee_id: str,
    email: str | None = None,
    status: PersonStatus = PersonStatus.ACTIVE,
    terminated_at: datetime | None = None,
    name: str = "",
    aliases: tuple[str, ...] = (),
    source: str = "hr",
) -> Person:
    return Person(
        employee_id=employee_id,
        email=email if email is not None else f"{employee_id.lower()}@example.com",
        name=name or employee_id,
        status=status,
        terminated_at=terminated_at,
        aliases=aliases,
        source=source,
    )


def leaver(employee_id: str, when: datetime = T0, **kw: object) -> Person:
    return person(employee_id, status=PersonStatus.TERMINATED, terminated_at=when, **kw)  # type: ignore[arg-type]


def account(
    account_id: str,
    source: str = "sys",
    username: str | None = None,
    emails: tuple[str, ...] = (),
    enabled: bool = True,
    kind: AccountKind = AccountKind.HUMAN,
    attributes: tuple[tuple[str, str], ...] = (),
    scope: str = "",
    last_login_at: datetime | None = None,
    uid: str | None = None,
) -> Account:
    return Account(
        source=source,
        system="fake",
        account_id=account_id,
        username=username if username is not None else account_id,
        enabled=enabled,
        kind=kind,
        emails=emails,
        attributes=attributes,
        scope=scope,
        last_login_at=last_login_at,
        uid=uid if uid is not None else f"uid-{account_id}",
    )


def credential(
    acct: Account,
    credential_id: str,
    kind: CredentialKind = CredentialKind.ACCESS_KEY,
    active: bool = True,
    last_used_at: datetime | None = None,
    created_at: datetime | None = None,
) -> Credential:
    return Credential(
        source=acct.source,
        account_id=acct.account_id,
        credential_id=credential_id,
        kind=kind,
        active=active,
        created_at=created_at or T0 - timedelta(days=365),
        last_used_at=last_used_at,
        scope=acct.scope,
    )


@dataclass
class FakeHRSource:
    name: str = "hr"
    people: list[Person] = field(default_factory=list)
    fail: str | None = None
    calls: int = 0

    def read_people(self) -> HRRead:
        self.calls += 1
        if self.fail:
            raise SourceError(self.fail)
        if not self.people:
            raise SourceError("HR read returned nobody")
        return HRRead(tuple(self.people))


@dataclass
class FakeAccountSource:
    """Holds accounts and credentials; ``detail_credentials`` replace bulk ones in the detail pass."""

    name: str = "sys"
    system: str = "fake"
    accounts: list[Account] = field(default_factory=list)
    credentials: list[Credential] = field(default_factory=list)
    detail_credentials: dict[str, list[Credential]] = field(default_factory=dict)
    fail: str | None = None
    failed_scopes: list[ScopeFailure] = field(default_factory=list)
    # Detail pass faults: raise this error, or report these scopes failed.
    detail_fail: str | None = None
    detail_failed_scopes: list[ScopeFailure] = field(default_factory=list)
    collect_calls: int = 0
    detail_requests: list[list[str]] = field(default_factory=list)

    def collect(self) -> SourceData:
        self.collect_calls += 1
        if self.fail:
            raise SourceError(self.fail)
        failed = {f.scope for f in self.failed_scopes}
        return SourceData(
            accounts=tuple(a for a in self.accounts if a.scope not in failed),
            credentials=tuple(c for c in self.credentials if c.scope not in failed),
            failed_scopes=tuple(self.failed_scopes),
            scopes=tuple({a.scope for a in self.accounts}),
        )

    def detail(self, accounts: Sequence[Account]) -> SourceData:
        self.detail_requests.append([a.account_id for a in accounts])
        if self.detail_fail:
            raise RuntimeError(self.detail_fail)
        failed = {f.scope for f in self.detail_failed_scopes}
        creds = [
            c
            for a in accounts
            if a.scope not in failed
            for c in self.detail_credentials.get(a.account_id, [])
        ]
        return SourceData(credentials=tuple(creds), failed_scopes=tuple(self.detail_failed_scopes))


def action_record(at: datetime, **changes: Any) -> ActionRecord:
    """An applied ``deactivate_key`` on bob's AKIA1 at ``at`` (finished three seconds later);
    ``changes`` replace any field."""
    base = ActionRecord(
        source="aws-main",
        system="aws",
        scope="111111111111",
        account_id="acct-bob",
        username="bob",
        credential_id="AKIA1",
        credential_kind=CredentialKind.ACCESS_KEY,
        detail="",
        account_uid="AIDA-bob",
        action_id="a-1",
        plan_id="p-1",
        finding_id="f-1",
        action="deactivate_key",
        stage=Stage.DISABLE,
        reversible=True,
        person="E7",
        status=ActionStatus.APPLIED,
        error=None,
        prior_state=ResourceState(True, True, (("status", "Active"),), "AIDA-bob"),
        result_state=ResourceState(True, False, (("status", "Inactive"),), "AIDA-bob"),
        actor="cli:alice",
        undo_of=None,
        created_at=at,
        updated_at=at + timedelta(seconds=3),
    )
    return replace(base, **changes)
