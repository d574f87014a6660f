"""The in-memory demo directory holds each case the demo organisation promises."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

from connectors.ldap import PLUGIN, LdapSource
from connectors.ldap.revoker import LOCK
from offboard_audit.core.actions import ActionTarget
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import AccountKind, CredentialKind, Person, PersonStatus
from offboard_audit.engine.steps import apply_step

HR = Path(__file__).resolve().parents[3] / "offboard_audit" / "demo" / "hr.csv"
NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


def demo_people() -> list[Person]:
    people = []
    with HR.open(newline="") as f:
        for row in csv.DictReader(f):
            when = None
            if row["termination_date"]:
                when = datetime.fromisoformat(row["termination_date"])
                when = when if when.tzinfo else when.replace(tzinfo=UTC)
            aliases = tuple(a for a in row["aliases"].split(";") if a)
            people.append(
                Person(
                    row["employee_id"], row["email"], row["name"], PersonStatus(row["status"]), when, aliases
                )
            )
    return people


def demo_source() -> tuple[LdapSource, object]:
    people = demo_people()
    assert PLUGIN.demo is not None
    part = PLUGIN.demo(people, NOW)
    ctx = SourceContext(Path("."), clients={part.source["name"]: part.client})
    src = PLUGIN.make_source(SourceOptions(dict(part.source)), ctx)
    assert isinstance(src, LdapSource)
    assert PLUGIN.make_revoker is not None
    return src, PLUGIN.make_revoker(SourceOptions(dict(part.source)), ctx)


def test_demo_directory_holds_the_promised_cases() -> None:
    people = {p.employee_id: p for p in demo_people()}
    src, _ = demo_source()
    data = src.collect()
    by_number = {v: a for a in data.accounts for k, v in a.attributes if k == "employeeNumber"}

    bob = by_number["E1002"]
    bob_term = people["E1002"].terminated_at
    assert bob_term is not None and bob.last_login_at is not None and bob.last_login_at > bob_term
    assert bob.enabled

    carol = by_number["E1003"]
    carol_term = people["E1003"].terminated_at
    assert carol.enabled and carol.last_login_at is not None and carol_term is not None
    assert carol.last_login_at < carol_term
    assert {c.kind for c in data.credentials if c.account_id == carol.account_id} >= {
        CredentialKind.SSH_KEY,
        CredentialKind.GROUP_MEMBERSHIP,
    }

    heidi = next(a for a in data.accounts if a.username == "heidi")
    assert heidi.emails == () and not heidi.attribute_values("employeeNumber")
    orphan = next(a for a in data.accounts if a.username == "mallory")
    assert orphan.enabled and orphan.kind is AccountKind.HUMAN
    assert any(a.kind is AccountKind.SERVICE for a in data.accounts)
    assert any(a.username == "breakglass" for a in data.accounts)
    assert data.failed_scopes == ()


def test_demo_revoker_locks_in_memory_and_refuses_break_glass() -> None:
    src, rev = demo_source()
    data = src.collect()
    bob = next(a for a in data.accounts if a.username == "bob")
    target = ActionTarget(
        src.name, "ldap", bob.account_id, "bob", bob.account_id, CredentialKind.ACCOUNT, account_uid=bob.uid
    )
    assert apply_step(rev, LOCK, target).status == "applied"
    assert not next(a for a in src.collect().accounts if a.username == "bob").enabled
    glass = next(a for a in data.accounts if a.username == "breakglass")
    glass_target = ActionTarget(
        src.name,
        "ldap",
        glass.account_id,
        "breakglass",
        glass.account_id,
        CredentialKind.ACCOUNT,
        account_uid=glass.uid,
    )
    refused = apply_step(rev, LOCK, glass_target)
    assert refused.status == "failed" and "protected" in (refused.error or "")
    assert next(a for a in src.collect().accounts if a.username == "breakglass").enabled
