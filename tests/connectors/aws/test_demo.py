"""The AWS part of the demo: in-process moto seeded from the demo HR file, nothing left behind."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

from connectors.aws_iam import PLUGIN
from connectors.aws_iam.source import AwsIamSource
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import CredentialKind, Person, PersonStatus

HR = Path(__file__).resolve().parents[3] / "offboard_audit" / "demo" / "hr.csv"


def demo_people() -> list[Person]:
    people = []
    with HR.open() as fh:
        for row in csv.DictReader(fh):
            date = row["termination_date"]
            terminated = (
                datetime.fromisoformat(date if "T" in date else f"{date}T00:00:00+00:00") if date else None
            )
            aliases = tuple(a for a in row["aliases"].split(";") if a)
            people.append(
                Person(
                    row["employee_id"],
                    row["email"],
                    row["name"],
                    PersonStatus(row["status"]),
                    terminated,
                    aliases,
                )
            )
    return people


def test_demo_seeds_a_key_used_after_termination_and_stops_its_mock() -> None:
    from moto.core.models import botocore_stubber

    assert not botocore_stubber.enabled
    people = demo_people()
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    part = PLUGIN.demo(people, now) if PLUGIN.demo else None
    assert part is not None
    try:
        name = part.source["name"]
        source = PLUGIN.make_source(
            SourceOptions(dict(part.source)), SourceContext(Path("."), clients={name: part.client})
        )
        assert isinstance(source, AwsIamSource)
        bulk = source.collect()
        users = {a.username: a for a in bulk.accounts}
        # bob left on 2026-09-30 17:00; his key (found under his alias) was used twelve days later.
        bob = next(p for p in people if p.employee_id == "E1002")
        assert bob.terminated_at is not None
        detail = source.detail([users["bleaver"]])
        key = next(c for c in detail.credentials if c.kind is CredentialKind.ACCESS_KEY)
        assert key.credential_id.startswith("AKIA") and key.last_used_at is not None
        assert key.last_used_at > bob.terminated_at
        # carol: console password and key, both last used before she left.
        carol = next(p for p in people if p.employee_id == "E1003")
        carol_creds = [c for c in bulk.credentials if c.account_id == users["cgone"].account_id]
        assert {c.kind for c in carol_creds} >= {CredentialKind.PASSWORD, CredentialKind.ACCESS_KEY}
        assert all(c.last_used_at is None or c.last_used_at < carol.terminated_at for c in carol_creds)  # type: ignore[operator]
        assert "heidi" in users and not users["heidi"].emails  # shared alias, no email: ambiguous
        assert any(a.kind.value == "service" for a in bulk.accounts)
    finally:
        part.close()
    assert not botocore_stubber.enabled
