"""The exposure rules and actor matching, pure: exact findings for each case."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectors.aws_iam.exposure.translate import record_events
from connectors.gcp_iam.exposure.translate import entry_events
from offboard_audit.core.exposure import Actor, ExposureEvent, ObjectRef, PersistenceState, SecretState
from offboard_audit.core.exposure_actors import ActorIndex, link_actors
from offboard_audit.core.exposure_rules import ExposureInputs, SecretIndex, evaluate_exposure
from offboard_audit.core.lifecycle import update_findings
from offboard_audit.core.records import (
    Account,
    CredentialKind,
    ExposureHow,
    Finding,
    Link,
    Person,
    PersonStatus,
)
from offboard_audit.core.stored import StoredFinding

NOW = datetime(2026, 6, 1, tzinfo=UTC)
LEFT = NOW - timedelta(days=10)
ALICE = Person(
    "E1", "alice@example.com", "Alice", PersonStatus.TERMINATED, LEFT, source="hr", manager_email="m@x.com"
)
ALICE2 = Person(
    "E9", "alice@other.example", "Alice Two", PersonStatus.ACTIVE, aliases=("alice",), source="hr"
)
BOB = Person("E2", "bob@example.com", "Bob", PersonStatus.ACTIVE, source="hr")
ALICE_ARN = "arn:aws:iam::111111111111:user/alice"
ALICE_ACCOUNT = Account("aws", "aws", ALICE_ARN, "alice", True, scope="111111111111", uid="AIDA1")
SVC = Account("aws", "aws", "arn:aws:iam::111111111111:user/svc", "svc", True, scope="111111111111")


def index(*people: Person) -> ActorIndex:
    return ActorIndex.build(
        [Link(ALICE_ACCOUNT, (ALICE,), "email"), Link(SVC, (), "")], people, ["email_local"]
    )


def event(
    actor: Actor,
    target: ObjectRef,
    how: ExposureHow = ExposureHow.READ,
    at: datetime = NOW - timedelta(days=20),
    eid: str = "e1",
    action: str = "GetSecretValue",
) -> ExposureEvent:
    return ExposureEvent("aws", "111111111111", eid, at, action, how, actor, target)


SECRET = SecretState(
    "aws",
    "111111111111",
    CredentialKind.SECRET,
    "arn:s1",
    name="prod/sign",
    current_version_created_at=NOW - timedelta(days=100),
    aliases=("us-east-1:prod/sign",),
)


def run(events: list[ExposureEvent], secrets: list[SecretState] = (SECRET,), objects=(), people=(ALICE, BOB)):  # type: ignore[no-untyped-def,assignment]
    idx = index(*people)
    links = link_actors("aws", "aws", {e.actor for e in events}, idx)
    inputs = ExposureInputs(
        "aws", "aws", events, links, SecretIndex(secrets), {o.ref.key: o for o in objects}, idx
    )
    return evaluate_exposure(inputs, NOW)


IAM_ALICE = Actor(ALICE_ARN, "iam-user", ALICE_ARN, ("alice",))
SECRET_REF = ObjectRef("111111111111", CredentialKind.SECRET, "us-east-1:prod/sign")


def test_read_not_rotated_names_secret_leaver_access_and_manager() -> None:
    [f] = run([event(IAM_ALICE, SECRET_REF)])
    assert (
        f.rule.value,
        f.severity.value,
        f.person,
        f.credential.credential_id if f.credential else None,
    ) == ("secret-exposed-to-leaver", "high", ALICE, "arn:s1")
    assert [(a.how.value, a.event_id) for a in f.exposure] == [("read", "e1")]
    assert f.owner is not None and (f.owner.via.value, f.owner.email) == ("manager", "m@x.com")
    assert f.account.uid == "AIDA1" and f.account.scope == "exposure:111111111111"


def test_rotated_after_the_read_or_deleted_or_disabled_is_no_finding() -> None:
    from dataclasses import replace

    rotated = replace(SECRET, current_version_created_at=NOW - timedelta(days=15))
    assert run([event(IAM_ALICE, SECRET_REF)], [rotated]) == []
    assert run([event(IAM_ALICE, SECRET_REF)], []) == []
    assert run([event(IAM_ALICE, SECRET_REF)], [replace(SECRET, enabled=False)]) == []
    # Vault-style: the current version is new but an older one is still usable.
    old_usable = replace(rotated, oldest_enabled_version_created_at=NOW - timedelta(days=100))
    assert len(run([event(IAM_ALICE, SECRET_REF)], [old_usable])) == 1


def test_signing_key_read_is_critical_and_an_active_persons_read_is_nothing() -> None:
    from dataclasses import replace

    [f] = run([event(IAM_ALICE, SECRET_REF)], [replace(SECRET, signing=True, owner="sec@x.com")])
    assert f.severity.value == "critical" and f.owner is not None and f.owner.via.value == "owner-tag"
    bob = Actor(
        "arn:aws:sts::111111111111:assumed-role/R/bob@example.com", "assumedrole", names=("bob@example.com",)
    )
    assert run([event(bob, SECRET_REF)]) == []


def test_sso_session_by_email_and_source_identity_and_ambiguous_names() -> None:
    sso = Actor(
        "arn:aws:sts::111111111111:assumed-role/AWSReservedSSO_Admin_1/alice@example.com",
        "assumedrole",
        names=("alice@example.com",),
    )
    [f] = run([event(sso, SECRET_REF)])
    assert f.person == ALICE and f.account.account_id == sso.identity
    # "alice" as a user name matches two people (Alice and Alice Two): ambiguous, nobody blamed.
    by_name = Actor("arn:aws:sts::111111111111:assumed-role/R/alice", "assumedrole", names=("alice",))
    assert run([event(by_name, SECRET_REF)], people=(ALICE, ALICE2, BOB)) == []


def test_kms_key_material_never_leaves_but_a_live_grant_or_an_export_exposes_it() -> None:
    key = SecretState(
        "aws",
        "111111111111",
        CredentialKind.KMS_KEY,
        "arn:k1",
        exportable=False,
        current_version_created_at=NOW - timedelta(days=300),
        aliases=("us-east-1:k1",),
    )
    ref = ObjectRef("111111111111", CredentialKind.KMS_KEY, "us-east-1:k1")
    assert run([event(IAM_ALICE, ref, ExposureHow.CREATED, action="CreateKey")], [key]) == []
    from dataclasses import replace

    [granted] = run(
        [event(IAM_ALICE, ref, ExposureHow.CHANGED_ACCESS, action="CreateGrant")],
        [replace(key, grantees=(ALICE_ARN,))],
    )
    assert granted.severity.value == "high"
    [exported] = run(
        [event(IAM_ALICE, ref, ExposureHow.EXPORTED, action="ImportKeyMaterial")],
        [replace(key, signing=True)],
    )
    assert exported.severity.value == "critical"


def test_persistence_for_another_identity_only_while_present() -> None:
    ref = ObjectRef("111111111111", CredentialKind.ACCESS_KEY, "AKIA1", owner="svc")
    made = event(IAM_ALICE, ref, ExposureHow.CREATED, action="CreateAccessKey")
    [f] = run([made], objects=[PersistenceState("aws", ref, True, "active")])
    assert (f.rule.value, f.credential.credential_id if f.credential else None) == (
        "persistence-left-by-leaver",
        "AKIA1",
    )
    assert f.credential is not None and f.credential.account_id == SVC.account_id
    assert run([made], objects=[PersistenceState("aws", ref, False)]) == []
    own = ObjectRef("111111111111", CredentialKind.ACCESS_KEY, "AKIA2", owner="alice")
    assert (
        run([event(IAM_ALICE, own, ExposureHow.CREATED)], objects=[PersistenceState("aws", own, True)]) == []
    )


def test_translate_skips_failed_calls_and_undecrypted_reads() -> None:
    base = {
        "eventTime": "2026-05-01T00:00:00Z",
        "eventID": "x",
        "awsRegion": "us-east-1",
        "recipientAccountId": "111111111111",
        "userIdentity": {"type": "IAMUser", "arn": ALICE_ARN, "userName": "alice"},
    }
    ok = {
        **base,
        "eventSource": "ssm.amazonaws.com",
        "eventName": "GetParameter",
        "requestParameters": {"name": "/a/b", "withDecryption": True},
    }
    assert [e.target.object_id for e in record_events(ok, "aws")] == ["us-east-1:/a/b"]
    assert record_events({**ok, "requestParameters": {"name": "/a/b"}}, "aws") == []
    assert record_events({**ok, "errorCode": "AccessDenied"}, "aws") == []
    service = {**ok, "userIdentity": {"type": "AWSService", "invokedBy": "lambda.amazonaws.com"}}
    assert record_events(service, "aws") == []


def test_persistence_remove_task_goes_to_the_objects_admins_before_the_manager() -> None:
    ref = ObjectRef("acme/infra", CredentialKind.DEPLOY_KEY, "acme/infra/keys/7", owner="acme/infra")
    made = event(IAM_ALICE, ref, ExposureHow.CREATED, action="deploy_key.create")
    admins = PersistenceState("aws", ref, True, "present", remove_by=("octo", "hub"))
    [f] = run([made], objects=[admins])
    assert f.owner is not None and (f.owner.via.value, f.owner.email) == ("object-admins", "octo, hub")
    # Without admins named by the system, the leaver's manager gets it (ALICE has one).
    [g] = run([made], objects=[PersistenceState("aws", ref, True, "present")])
    assert g.owner is not None and (g.owner.via.value, g.owner.email) == ("manager", "m@x.com")


# --- IAM users by UserId, not by name -----------------------------------------------------------

JOHN = Person(
    "E3", "john.doe@example.com", "John Doe", PersonStatus.TERMINATED, LEFT, aliases=("jdoe",), source="hr"
)
JANE = Person("E4", "jane.doe@example.com", "Jane Doe", PersonStatus.ACTIVE, source="hr")
JDOE_ARN = "arn:aws:iam::111111111111:user/jdoe"
# The user named jdoe now: Jane's, made after John's was deleted (same ARN, a new UserId).
JANES_JDOE = Account(
    "aws",
    "aws",
    JDOE_ARN,
    "jdoe",
    True,
    emails=("jane.doe@example.com",),
    scope="111111111111",
    uid="AIDANEW",
)
SIGNING = SecretState(
    "aws",
    "111111111111",
    CredentialKind.SECRET,
    "arn:s2",
    name="prod/sign",
    signing=True,
    current_version_created_at=NOW - timedelta(days=400),
    aliases=("us-east-1:prod/sign",),
)


def read_record(user_id: str, arn: str, user_name: str) -> dict[str, object]:
    """A CloudTrail GetSecretValue of prod/sign by an IAM user, as CloudTrail writes it."""
    return {
        "eventTime": (NOW - timedelta(days=20)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "secretsmanager.amazonaws.com",
        "eventName": "GetSecretValue",
        "eventID": "ev-1",
        "awsRegion": "us-east-1",
        "recipientAccountId": "111111111111",
        "userIdentity": {"type": "IAMUser", "principalId": user_id, "arn": arn, "userName": user_name},
        "requestParameters": {"secretId": "prod/sign"},
    }


def findings_of(record: dict[str, object], links: list[Link], people: list[Person]) -> list[Finding]:
    events = record_events(record, "aws")
    idx = ActorIndex.build(links, people, ["email_local", "alias"])
    actors = link_actors("aws", "aws", {e.actor for e in events}, idx)
    return evaluate_exposure(
        ExposureInputs("aws", "aws", events, actors, SecretIndex([SIGNING]), {}, idx), NOW
    )


def test_a_deleted_users_read_stays_its_own_when_the_name_is_given_to_someone_else() -> None:
    johns_read = read_record("AIDAOLD", JDOE_ARN, "jdoe")
    # Before the name was reused: nobody holds jdoe, John is found by his alias.
    before = findings_of(johns_read, [], [JOHN, JANE])
    assert [(f.person, f.severity.value) for f in before] == [(JOHN, "critical")]
    # After: Jane holds jdoe under another UserId; the read is still John's, and his stored
    # finding stays open on the next run (the scope was read fine).
    after = findings_of(johns_read, [Link(JANES_JDOE, (JANE,), "email")], [JOHN, JANE])
    assert [(f.person, f.severity.value, f.account.uid) for f in after] == [(JOHN, "critical", "AIDAOLD")]
    stored = {
        f.finding_id: StoredFinding(
            finding_id=f.finding_id,
            status=f.status,
            source="aws",
            scope=f.account.scope,
            reason=f.reason,
            stale=False,
            exemption_id=None,
            due_at=f.due_at,
            account_uid=f.account.uid,
        )
        for f in before
    }
    assert update_findings(stored, after, read={("aws", "exposure:111111111111")}).closed == ()


def test_the_new_holder_of_a_reused_name_is_not_blamed_for_the_old_users_read() -> None:
    jane_left = replace(JANE, status=PersonStatus.TERMINATED, terminated_at=LEFT)
    found = findings_of(
        read_record("AIDAOLD", JDOE_ARN, "jdoe"), [Link(JANES_JDOE, (jane_left,), "email")], [JOHN, jane_left]
    )
    assert [f.person for f in found] == [JOHN]


def test_a_user_is_linked_by_its_user_id_after_a_rename() -> None:
    # ALICE_ACCOUNT (UserId AIDA1, linked to Alice) was called "a-smith" when it read the secret:
    # a name and an ARN that match no account and nobody.
    found = findings_of(
        read_record("AIDA1", "arn:aws:iam::111111111111:user/a-smith", "a-smith"),
        [Link(ALICE_ACCOUNT, (ALICE,), "email")],
        [ALICE, BOB],
    )
    assert [(f.person, f.account.account_id) for f in found] == [(ALICE, ALICE_ARN)]


# --- GCP impersonation: the person is the actor, the service account is not theirs --------------

GCP_AUDIT = Path(__file__).resolve().parents[1] / "connectors/gcp/fixtures/audit"


def test_a_key_made_for_an_impersonated_service_account_is_persistence_left_by_the_person() -> None:
    entry = json.loads((GCP_AUDIT / "create_service_account_key.json").read_text())
    service_account = "svc-deploy@prod-app.iam.gserviceaccount.com"
    entry["protoPayload"]["authenticationInfo"] = {
        "principalEmail": service_account,
        "serviceAccountDelegationInfo": [{"firstPartyPrincipal": {"principalEmail": "alice@example.com"}}],
    }
    events = entry_events(entry, "gcp")
    idx = ActorIndex.build([], [ALICE, BOB], ["email_local"])
    links = link_actors("gcp", "gcp_iam", {e.actor for e in events}, idx)
    objects = {e.target.key: PersistenceState("gcp", e.target, True, "user-managed key") for e in events}
    inputs = ExposureInputs("gcp", "gcp_iam", events, links, SecretIndex([]), objects, idx)
    [f] = evaluate_exposure(inputs, NOW)
    assert (f.rule.value, f.person, f.credential.kind if f.credential else None) == (
        "persistence-left-by-leaver",
        ALICE,
        CredentialKind.SERVICE_ACCOUNT_KEY,
    )
    assert f.credential is not None and f.credential.credential_id.endswith(
        f"/serviceAccounts/{service_account}/keys/c2a1f0e9d8b7a6c5b4a3f2e1d0c9b8a7f6e5d4c3"
    )


def test_the_version_a_leavers_write_made_is_hers_though_stamped_after_the_logged_call() -> None:
    """CloudTrail dates a call to its second; the version the call made is stamped a moment later.
    It is the value she wrote (finding; the rotate action's boundary and the evidence pack's
    rotation state say so); a version made minutes later is a rotation."""
    from offboard_audit.core.exposure import exposed_until
    from offboard_audit.core.records import FindingStatus
    from offboard_audit.report.carry_away import carried_secrets

    wrote_at = NOW - timedelta(days=20)
    put = event(IAM_ALICE, SECRET_REF, ExposureHow.CREATED, wrote_at, action="PutSecretValue")
    hers = replace(SECRET, current_version_created_at=wrote_at + timedelta(milliseconds=350))
    [f] = run([put], [hers])
    assert [a.event_id for a in f.exposure] == ["e1"] and f.status is FindingStatus.OPEN
    # A version made after this ends her exposure (what the rotate actions compare with).
    assert f.credential is not None and exposed_until(f.credential.detail) == wrote_at + timedelta(minutes=1)
    [entry] = carried_secrets([f], {"aws": [hers]}, {}, {}, lambda _h: (None, False))
    assert (entry.rotation.state, entry.rotation.rotated_at) == ("not rotated since the last access", None)
    rotated = replace(SECRET, current_version_created_at=wrote_at + timedelta(minutes=5))
    assert run([put], [rotated]) == []
