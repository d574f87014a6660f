"""The Google Cloud part of ``offboard-audit demo``: a fake organisation on local fake servers.

Seeded from the demo HR people (looked up by employee id, so the HR file stays the one
source of names): two projects with bindings of leavers (a live binding, a ``deleted:``
member that would revive), a CI service account owned by a leaver through its description
with one key created after her termination and used after it, an unowned service account
and a binding of someone HR has never heard of. Both servers listen on 127.0.0.1 on
OS-chosen ports; ``close`` stops them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from offboard_audit.core.protocols import DemoPart
from offboard_audit.core.records import Person

PROJECTS = ("demo-prod", "demo-data")


def _email(people: dict[str, Person], employee_id: str) -> str | None:
    person = people.get(employee_id)
    return person.email.lower() if person is not None and person.email else None


def _alias_email(people: dict[str, Person], employee_id: str) -> str | None:
    person = people.get(employee_id)
    if person is None:
        return None
    return next((a.lower() for a in person.aliases if "@" in a), None)


def demo(people: Sequence[Person], now: datetime) -> DemoPart:
    from connectors.gcp_iam.demo_fake import FakeGcp, GcpFakeState

    by_id = {p.employee_id: p for p in people}
    state = GcpFakeState()
    for project in PROJECTS:
        state.add_project(project, parent="organizations/1000")
    prod, data = PROJECTS

    def bind(project: str, role: str, employee_id: str) -> None:
        email = _email(by_id, employee_id)
        if email:
            state.bind(project, role, f"user:{email}")

    bind(prod, "roles/owner", "E1001")  # alice: active, owns the project
    bind(prod, "roles/viewer", "E1002")  # bob: left in September
    bind(prod, "roles/editor", "E1003")  # carol: left in June
    bind(prod, "roles/viewer", "E1004")  # dave: leaves in 2031, nothing to flag yet
    bind(prod, "roles/viewer", "E1005")  # erin: rehired
    bind(prod, "roles/viewer", "E1006")  # frank: on leave
    bind(prod, "roles/editor", "E1007")  # grace: left in August
    state.bind(prod, "roles/viewer", "group:engineering@example.com")
    # Nobody in HR: an orphan.
    state.bind(prod, "roles/viewer", "user:mallory.contractor@example.com")
    carol_alias = _alias_email(by_id, "E1003")
    if carol_alias:
        state.bind(data, "roles/bigquery.dataViewer", f"user:{carol_alias}")
    carol = _email(by_id, "E1003")
    if carol:
        # Her Google account was deleted, the binding was not: restoring the account revives it.
        state.bind(data, "roles/storage.admin", f"deleted:user:{carol}?uid=108234567890123456789")

    grace = by_id.get("E1007")
    grace_email = _email(by_id, "E1007")
    if grace is not None and grace_email:
        left = grace.terminated_at or now - timedelta(days=90)
        ci = state.add_service_account(
            prod,
            "ci-deployer",
            display_name="CI deployer",
            description=f"Deploys from CI. owner: {grace_email}",
            last_auth=min(left + timedelta(days=20), now - timedelta(hours=2)),
        )
        state.add_key(ci.email, created=left - timedelta(days=400), last_auth=left - timedelta(days=30))
        # Created two weeks after she left, and used since: the key she walked away with.
        state.add_key(
            ci.email,
            created=min(left + timedelta(days=14), now - timedelta(days=1)),
            last_auth=min(left + timedelta(days=20), now - timedelta(hours=2)),
        )
    bob_email = _email(by_id, "E1002")
    if bob_email:
        scripts = state.add_service_account(data, "bob-scripts", description=f"owner={bob_email}")
        state.add_key(scripts.email, created=now - timedelta(days=300))
    reporting = state.add_service_account(prod, "reporting", display_name="Reporting")
    state.add_key(reporting.email, created=now - timedelta(days=60), last_auth=now - timedelta(days=1))
    legacy = state.add_service_account(data, "legacy-etl", description="nobody remembers")
    state.add_key(legacy.email, created=now - timedelta(days=900))

    fake = FakeGcp(state).start()
    owners = {}
    alice = _email(by_id, "E1001")
    if alice:
        owners[reporting.email] = alice
    source = fake.source_table("gcp", projects=list(PROJECTS), key_last_auth=True, owners=owners)
    return DemoPart(source=source, client=None, close=fake.stop)
