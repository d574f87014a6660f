"""Stored findings and their status history.

Which findings are new, changed or closed is decided by :mod:`offboard_audit.core.lifecycle`
from :meth:`FindingStore.stored_findings`; :meth:`FindingStore.save_findings` only writes that
decision, with one status event per change.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import fields
from datetime import datetime

from sqlalchemy import RowMapping, insert, select, update

from offboard_audit.core.records import (
    Account,
    AccountKind,
    Credential,
    CredentialKind,
    ExposureAccess,
    ExposureHow,
    Finding,
    OwnerVia,
    Person,
    PersonStatus,
    RotateOwner,
)
from offboard_audit.core.stored import FindingUpdate, StoredFinding
from offboard_audit.storage.db import Database, chunks
from offboard_audit.storage.rows import record_of, row_of
from offboard_audit.storage.tables import FINDING_EVENTS, FINDINGS


class FindingStore(Database):
    def finding_first_seen(self) -> dict[str, datetime]:
        with self.begin() as conn:
            rows = conn.execute(select(FINDINGS.c.finding_id, FINDINGS.c.first_seen))
            return {finding_id: first_seen for finding_id, first_seen in rows}

    def finding_ids_of_people(self, people: Collection[tuple[str, str]]) -> frozenset[str]:
        """The ids of the stored findings about these people ((HR source, employee id) pairs)."""
        wanted = set(people)
        found: set[str] = set()
        cols = (FINDINGS.c.finding_id, FINDINGS.c.person_source, FINDINGS.c.person_employee_id)
        with self.begin() as conn:
            for batch in chunks(sorted({eid for _source, eid in wanted})):
                q = select(*cols).where(FINDINGS.c.person_employee_id.in_(list(batch)))
                found.update(fid for fid, src, eid in conn.execute(q) if (src, eid) in wanted)
        return frozenset(found)

    def stored_findings(self) -> dict[str, StoredFinding]:
        """Every stored finding, as much of it as the lifecycle compares, by id."""
        cols = [FINDINGS.c[f.name] for f in fields(StoredFinding)]
        with self.begin() as conn:
            rows = conn.execute(select(*cols)).mappings()
            return {r["finding_id"]: record_of(StoredFinding, r) for r in rows}

    def save_findings(self, run_id: str, now: datetime, changes: FindingUpdate) -> None:
        """Write what :func:`offboard_audit.core.lifecycle.update_findings` decided for a run."""
        events: list[dict[str, object]] = []
        with self.begin() as conn:
            for f in changes.new:
                events.append(_event(f.finding_id, run_id, now, None, f.status.value))
            for batch in chunks([_finding_row(f, run_id, now) for f in changes.new]):
                conn.execute(insert(FINDINGS), list(batch))
            for change in changes.changed:
                f = change.finding
                row = _finding_row(f, run_id, now)
                del row["finding_id"], row["first_seen"]
                conn.execute(update(FINDINGS).where(FINDINGS.c.finding_id == f.finding_id).values(row))
                if change.was is not f.status:
                    events.append(_event(f.finding_id, run_id, now, change.was.value, f.status.value))
            for closed in changes.closed:
                conn.execute(
                    update(FINDINGS)
                    .where(FINDINGS.c.finding_id == closed.finding_id)
                    .values(status=closed.to.value, resolved_at=now, run_id=run_id, stale=False)
                )
                events.append(_event(closed.finding_id, run_id, now, closed.was.value, closed.to.value))
            for batch in chunks(events):
                conn.execute(insert(FINDING_EVENTS), list(batch))

    def list_findings(
        self,
        statuses: Sequence[str] | None = None,
        person: str | None = None,
        finding_ids: Sequence[str] | None = None,
    ) -> list[Finding]:
        q = select(FINDINGS)
        if statuses:
            q = q.where(FINDINGS.c.status.in_(list(statuses)))
        if person:
            q = q.where(FINDINGS.c.person_employee_id == person)
        if finding_ids:
            q = q.where(FINDINGS.c.finding_id.in_(list(finding_ids)))
        q = q.order_by(FINDINGS.c.severity, FINDINGS.c.source, FINDINGS.c.account_id)
        with self.begin() as conn:
            return [_finding(r) for r in conn.execute(q).mappings()]

    def finding_history(self, finding_id: str) -> list[tuple[datetime, str | None, str, str]]:
        """Status changes of one finding, oldest first: (at, from, to, run id)."""
        e = FINDING_EVENTS.c
        q = (
            select(e.at, e.from_status, e.to_status, e.run_id)
            .where(e.finding_id == finding_id)
            .order_by(e.id)
        )
        with self.begin() as conn:
            return [(at, was, to, run_id) for at, was, to, run_id in conn.execute(q)]


def _event(fid: str, run_id: str, at: datetime, from_status: str | None, to_status: str) -> dict[str, object]:
    return {"finding_id": fid, "run_id": run_id, "at": at, "from_status": from_status, "to_status": to_status}


def _finding_row(f: Finding, run_id: str, now: datetime) -> dict[str, object]:
    """A finding with enough copied context to print it after its credential is gone."""
    a, c, p = f.account, f.credential, f.person
    return row_of(
        f,
        FINDINGS,
        source=a.source,
        system=a.system,
        scope=a.scope,
        account_id=a.account_id,
        account_name=a.username,
        account_kind=a.kind.value,
        account_uid=a.uid,
        credential_id=c.credential_id if c else None,
        credential_kind=c.kind.value if c else None,
        credential_active=c.active if c else None,
        credential_detail=c.detail if c else "",
        credential_created_at=c.created_at if c else None,
        credential_last_used_at=c.last_used_at if c else None,
        person_source=p.source if p else None,
        person_employee_id=p.employee_id if p else None,
        person_email=p.email if p else None,
        person_name=p.name if p else None,
        person_status=p.status.value if p else None,
        person_terminated_at=p.terminated_at if p else None,
        candidates_json=json.dumps([[x.employee_id, x.email, x.name] for x in f.candidates]),
        exposure_json=json.dumps([[x.at.isoformat(), x.how.value, x.event_id, x.action] for x in f.exposure]),
        owner_email=f.owner.email if f.owner else None,
        owner_via=f.owner.via.value if f.owner else None,
        last_seen=now,
        resolved_at=None,
        run_id=run_id,
    )


def _finding(r: RowMapping) -> Finding:
    account = record_of(
        Account,
        r,
        username=r["account_name"],
        enabled=True,
        kind=AccountKind(r["account_kind"]),
        uid=r["account_uid"],
    )
    person = None
    if r["person_employee_id"] is not None:
        person = Person(
            employee_id=r["person_employee_id"],
            email=r["person_email"],
            name=r["person_name"] or "",
            status=PersonStatus(r["person_status"]),
            terminated_at=r["person_terminated_at"],
            source=r["person_source"] or "",
        )
    credential = None
    if r["credential_id"] is not None:
        credential = Credential(
            source=r["source"],
            account_id=r["account_id"],
            credential_id=r["credential_id"],
            kind=CredentialKind(r["credential_kind"]),
            active=bool(r["credential_active"]),
            created_at=r["credential_created_at"],
            last_used_at=r["credential_last_used_at"],
            detail=r["credential_detail"],
            scope=r["scope"],
        )
    candidates = tuple(
        Person(employee_id=e, email=m, name=n or "", status=PersonStatus.ACTIVE)
        for e, m, n in json.loads(r["candidates_json"])
    )
    exposure = tuple(
        ExposureAccess(datetime.fromisoformat(at), ExposureHow(how), event_id, action)
        for at, how, event_id, action in json.loads(r["exposure_json"] or "[]")
    )
    owner = RotateOwner(OwnerVia(r["owner_via"]), r["owner_email"]) if r["owner_via"] else None
    return record_of(
        Finding,
        r,
        account=account,
        person=person,
        credential=credential,
        candidates=candidates,
        exposure=exposure,
        owner=owner,
    )
