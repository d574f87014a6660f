"""Exposure actors through the ledger (store, engine, rules): the events of one identity are
never another's, however the names they carry coincide.

CloudTrail records go through the real translation into a SQLite ledger; the reader is a fake
that hands them over in one batch and lists one signing secret."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.aws_iam.exposure.translate import record_events
from offboard_audit.core.exposure import Checkpoint, EventBatch, InventoryRead, ObjectRef, SecretState
from offboard_audit.core.exposure_actors import ActorIndex
from offboard_audit.core.records import Account, CredentialKind, Link, Person, PersonStatus
from offboard_audit.engine.exposure import read_one
from offboard_audit.storage.store import Store

ACCOUNT = "111111111111"
NOW = datetime(2026, 6, 1, tzinfo=UTC)
ALICE = Person("E1", "alice@example.com", "Alice", PersonStatus.ACTIVE, source="hr")
BOB = Person("E2", "bob@example.com", "Bob", PersonStatus.TERMINATED, NOW - timedelta(days=10), source="hr")
JOHN = Person(
    "E3", "john@example.com", "John", PersonStatus.TERMINATED, NOW - timedelta(days=60), ("jdoe",), "hr"
)
SIGNING = SecretState(
    "aws",
    ACCOUNT,
    CredentialKind.SECRET,
    f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:prod/sign-AbCdEf",
    name="prod/sign",
    signing=True,
    current_version_created_at=NOW - timedelta(days=300),
    aliases=("us-east-1:prod/sign",),
)
DEPLOY_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/Deploy/terraform"
JDOE = f"arn:aws:iam::{ACCOUNT}:user/jdoe"


def read(event_id: str, at: datetime, identity: dict[str, Any]) -> dict[str, Any]:
    """A GetSecretValue of prod/sign as CloudTrail records it."""
    return {
        "eventTime": at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "secretsmanager.amazonaws.com",
        "eventName": "GetSecretValue",
        "awsRegion": "us-east-1",
        "eventID": event_id,
        "recipientAccountId": ACCOUNT,
        "userIdentity": {"accountId": ACCOUNT, **identity},
        "requestParameters": {"secretId": "prod/sign"},
    }


def terraform_session(source_identity: str) -> dict[str, Any]:
    """The Deploy role assumed under the fixed session name "terraform" by one person."""
    return {
        "type": "AssumedRole",
        "principalId": "AROAEXAMPLE:terraform",
        "arn": DEPLOY_SESSION,
        "sessionContext": {"sourceIdentity": source_identity},
    }


def jdoe(user_id: str) -> dict[str, Any]:
    return {"type": "IAMUser", "principalId": user_id, "arn": JDOE, "userName": "jdoe"}


@dataclass
class Reader:
    records: list[dict[str, Any]]
    name: str = "aws"
    system: str = "aws_iam"

    def read_events(self, checkpoints: Mapping[str, Checkpoint], now: datetime) -> Iterator[EventBatch]:
        events = tuple(e for r in self.records for e in record_events(r, "aws", "trail"))
        yield EventBatch("trail", ACCOUNT, events, Checkpoint("trail", f"k{len(checkpoints)}"))

    def inventory(self, wanted: Sequence[ObjectRef]) -> InventoryRead:
        return InventoryRead(secrets=(SIGNING,), scopes=(ACCOUNT,))


def blamed(store: Store, records: list[dict[str, Any]], links: Sequence[Link] = ()) -> list[str]:
    """Who the signing-secret findings of a run over ``records`` name."""
    index = ActorIndex.build(links, [ALICE, BOB, JOHN], ["email_local", "alias"])
    result = read_one("aws", Reader(records), store, index, NOW, "run", lambda _m: None)
    return sorted(f.person.employee_id for f in result.findings if f.person)


def test_two_people_sharing_a_role_session_name_stay_two_actors(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'x.db'}")
    records = [
        read("ev-alice", NOW - timedelta(days=40), terraform_session("alice@example.com")),
        read("ev-bob", NOW - timedelta(days=30), terraform_session("bob@example.com")),
    ]
    # Bob (departed) read the signing secret; Alice (active) did too, under the same session.
    assert blamed(store, records) == ["E2"]
    actors = {a.identity: a.names for a in store.exposure_actors("aws")}
    assert actors == {
        f"{DEPLOY_SESSION}#alice@example.com": ("alice@example.com", "terraform"),
        f"{DEPLOY_SESSION}#bob@example.com": ("bob@example.com", "terraform"),
    }


def test_a_re_created_users_account_does_not_take_the_old_users_reads(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'x.db'}")
    # John's user jdoe read the secret; the name now belongs to Alice's new user (active).
    alices_jdoe = Account("aws", "aws_iam", JDOE, "jdoe", True, scope=ACCOUNT, uid="AIDANEW")
    records = [read("ev-john", NOW - timedelta(days=90), jdoe("AIDAOLD"))]
    assert blamed(store, records, [Link(alices_jdoe, (ALICE,), "email")]) == ["E3"]
    [actor] = store.exposure_actors("aws")
    assert (actor.identity, actor.uid, actor.account_id) == ("AIDAOLD", "AIDAOLD", JDOE)
