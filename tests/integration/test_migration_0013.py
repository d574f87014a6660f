"""Migration 0013 on an exposure ledger written before it: an IAM user's UserId was never stored,
so its old events stay keyed by ARN, without a uid; a new event of that user carries its UserId."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text

from connectors.aws_iam.exposure.translate import record_events
from offboard_audit.core.exposure import Actor, Checkpoint, EventBatch
from offboard_audit.storage.db import make_engine
from offboard_audit.storage.migrate import alembic_config, upgrade_head
from offboard_audit.storage.store import Store

AT = datetime(2026, 5, 1, 8, 30, tzinfo=UTC)
JDOE = "arn:aws:iam::111111111111:user/jdoe"

# (source, event id, actor identity, kind, account id, names) as the code before 0013 stored them.
LEGACY = [
    ("aws", "ev-jdoe", JDOE, "iam-user", JDOE, ["jdoe"]),
    ("vault", "ev-entity", "ent-1", "entity", "ent-1", ["alice", "userpass-alice"]),
]


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return str(request.getfixturevalue("postgres_url"))


def jdoe_read(event_id: str) -> dict[str, Any]:
    return {
        "eventTime": "2026-05-02T00:00:00Z",
        "eventSource": "secretsmanager.amazonaws.com",
        "eventName": "GetSecretValue",
        "awsRegion": "us-east-1",
        "eventID": event_id,
        "recipientAccountId": "111111111111",
        "userIdentity": {"type": "IAMUser", "principalId": "AIDAJDOE", "arn": JDOE, "userName": "jdoe"},
        "requestParameters": {"secretId": "prod/sign"},
    }


def test_upgrade_from_0012_keeps_stored_actors_and_stores_user_ids_from_now_on(url: str) -> None:
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
    assert store.exposure_actors("aws") == [legacy]
    assert store.exposure_actors("vault") == [Actor("ent-1", "entity", "ent-1", ("alice", "userpass-alice"))]

    [new] = record_events(jdoe_read("ev-jdoe-2"), "aws", "trail")
    store.save_batch("aws", EventBatch("trail", "111111111111", (new,), Checkpoint("trail", "k2")), AT)
    assert store.exposure_actors("aws") == sorted([legacy, new.actor], key=lambda a: a.identity)
    assert new.actor.uid == "AIDAJDOE"
