"""Migration 0013 on an exposure ledger written before it: the role sessions stored then are
keyed as the translation keys them now (with their source identity), so the events of two people
sharing a role session name are two actors' and a new event of a session joins its old ones; a
GCP impersonation names the person only, as the translation does now. An
IAM user's UserId was never stored: its old events stay keyed by ARN, without a uid; a new event
of that user carries its UserId."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text

from connectors.aws_iam.exposure.translate import record_events
from connectors.gcp_iam.exposure.translate import entry_events
from offboard_audit.core.exposure import Actor, Checkpoint, EventBatch
from offboard_audit.storage.db import make_engine
from offboard_audit.storage.migrate import alembic_config, upgrade_head
from offboard_audit.storage.store import Store

AT = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
JDOE = "arn:aws:iam::111111111111:user/jdoe"
SESSION = "arn:aws:sts::111111111111:assumed-role/Deploy/terraform"
CAROL_AS_DEPLOYER = "user:carol@example.com as serviceAccount:deployer@prod-app.iam.gserviceaccount.com"
GCP_AUDIT = Path(__file__).resolve().parents[1] / "connectors/gcp/fixtures/audit"

# (source, event id, actor identity, kind, account id, names) as the code before 0013 stored them.
LEGACY = [
    ("aws", "ev-alice", SESSION, "assumedrole", "", ["alice@example.com", "terraform"]),
    ("aws", "ev-bob", SESSION, "assumedrole", "", ["bob@example.com", "terraform"]),
    ("aws", "ev-tool", SESSION, "assumedrole", "", ["terraform"]),
    ("aws", "ev-jdoe", JDOE, "iam-user", JDOE, ["jdoe"]),
    (
        "gcp",
        "ev-carol",
        CAROL_AS_DEPLOYER,
        "impersonation",
        "",
        ["carol@example.com", "deployer@prod-app.iam.gserviceaccount.com"],
    ),
    ("vault", "ev-entity", "ent-1", "entity", "ent-1", ["alice", "userpass-alice"]),
]


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return str(request.getfixturevalue("postgres_url"))


def read(event_id: str, identity: dict[str, Any]) -> dict[str, Any]:
    return {
        "eventTime": "2026-05-02T00:00:00Z",
        "eventSource": "secretsmanager.amazonaws.com",
        "eventName": "GetSecretValue",
        "awsRegion": "us-east-1",
        "eventID": event_id,
        "recipientAccountId": "111111111111",
        "userIdentity": identity,
        "requestParameters": {"secretId": "prod/sign"},
    }


def jdoe_read(event_id: str) -> dict[str, Any]:
    return read(event_id, {"type": "IAMUser", "principalId": "AIDAJDOE", "arn": JDOE, "userName": "jdoe"})


def session_read(event_id: str, source_identity: str | None) -> dict[str, Any]:
    identity: dict[str, Any] = {"type": "AssumedRole", "principalId": "AROAEXAMPLE:terraform", "arn": SESSION}
    if source_identity:
        identity["sessionContext"] = {"sourceIdentity": source_identity}
    return read(event_id, identity)


def translated(record: dict[str, Any]) -> Actor:
    [event] = record_events(record, "aws")
    return event.actor


def test_upgrade_from_0012_keys_stored_actors_as_the_translation_does_now(url: str) -> None:
    engine = make_engine(url)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0012")
    at = AT if engine.dialect.name == "postgresql" else AT.replace(tzinfo=None)
    with engine.begin() as conn:
        for source, event_id, identity, kind, account_id, names in LEGACY:
            conn.execute(
                text(
                    "INSERT INTO exposure_events (source, event_id, scope, stream, at, action, how, "
                    "actor_identity, actor_kind, actor_account_id, actor_names_json, target_scope, "
                    "target_kind, target_id, target_owner, target_fingerprint) VALUES (:source, :eid, "
                    "'s', 'trail', :at, 'GetSecretValue', 'read', :identity, :kind, :account_id, :names, "
                    "'s', 'secret', 'prod/sign', '', '')"
                ),
                {
                    "source": source,
                    "eid": event_id,
                    "at": at,
                    "identity": identity,
                    "kind": kind,
                    "account_id": account_id,
                    "names": json.dumps(names),
                },
            )
    upgrade_head(engine)

    store = Store(engine)
    legacy = Actor(JDOE, "iam-user", JDOE, ("jdoe",))
    alice = translated(session_read("new-alice", "alice@example.com"))
    bob = translated(session_read("new-bob", "bob@example.com"))
    tool = translated(session_read("new-tool", None))
    assert len({alice.identity, bob.identity, tool.identity}) == 3
    stored = sorted([alice, bob, tool, legacy], key=lambda a: a.identity)
    assert store.exposure_actors("aws") == stored
    impersonated = json.loads((GCP_AUDIT / "access_secret_version_impersonated.json").read_text())
    assert store.exposure_actors("gcp") == [e.actor for e in entry_events(impersonated, "gcp")]
    assert store.exposure_actors("vault") == [Actor("ent-1", "entity", "ent-1", ("alice", "userpass-alice"))]

    # Bob's next read joins his stored one, not Alice's; jdoe's next one carries its UserId.
    new = [
        e
        for r in (session_read("ev-bob-2", "bob@example.com"), jdoe_read("ev-jdoe-2"))
        for e in record_events(r, "aws", "trail")
    ]
    store.save_batch("aws", EventBatch("trail", "111111111111", tuple(new), Checkpoint("trail", "k2")), AT)
    assert [e.event_id for e in store.exposure_events("aws", [bob.identity])] == ["ev-bob", "ev-bob-2"]
    assert store.exposure_actors("aws") == sorted([*stored, new[1].actor], key=lambda a: a.identity)
    assert new[1].actor.uid == "AIDAJDOE"
