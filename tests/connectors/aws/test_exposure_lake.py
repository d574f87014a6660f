"""CloudTrail Lake instead of log files, against botocore's Stubber (no Lake in moto): the query
names only the relevant events, pages become batches with checkpoints, a re-run resumes
``overlap`` before the last event read, and a failed query is a failed read, never "no events".
Then, against a fake event data store that answers what it has ingested so far: an event Lake
ingests late is read on the next run (and none twice), and a malformed page fails every
account's exposure scope (no finding closes on it)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from connectors.aws_iam.clients import AwsClients, ClientProvider
from connectors.aws_iam.exposure.lake import STREAM, LakeReader, lake_query
from connectors.aws_iam.exposure.settings import ExposureSettings
from connectors.aws_iam.exposure.source import AwsExposureSource
from connectors.aws_iam.settings import AwsSettings
from connectors.aws_iam.source import AwsIamSource
from offboard_audit.core.errors import SourceError
from offboard_audit.core.exposure import Checkpoint, InventoryRead, ObjectRef, SecretState
from offboard_audit.core.exposure_actors import ActorIndex
from offboard_audit.core.lifecycle import update_findings
from offboard_audit.core.records import Account, CredentialKind, ExposureHow, Link, Person, PersonStatus
from offboard_audit.engine.exposure import read_one
from offboard_audit.storage.store import Store

NOW = datetime(2026, 6, 30, tzinfo=UTC)
Q1 = "11111111-2222-3333-4444-555555555555"
Q2 = "66666666-7777-8888-9999-000000000000"
STORE = "arn:aws:cloudtrail:us-east-1:123456789012:eventdatastore/EXAMPLE-f852-4e8f-8bd1-bcf6cEXAMPLE"
ACCOUNT, OTHER = "123456789012", "210987654321"
HOUR = timedelta(hours=1)


def row(
    event_id: str, at: str, name: str, request: dict[str, Any], user: str = "alice"
) -> list[dict[str, str]]:
    return [
        {"eventID": event_id},
        {"eventTime": at},
        {"eventSource": "secretsmanager.amazonaws.com"},
        {"eventName": name},
        {"awsRegion": "us-east-1"},
        {"recipientAccountId": "123456789012"},
        {"userIdentity.type": "IAMUser"},
        {"userIdentity.arn": f"arn:aws:iam::123456789012:user/{user}"},
        {"userIdentity.username": user},
        {"requestParameters": json.dumps(request)},
    ]


def client() -> Any:
    return boto3.client(
        "cloudtrail", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )


def test_lake_pages_become_batches_and_a_rerun_resumes_an_overlap_before_the_last_event() -> None:
    ct = client()
    reader = LakeReader("aws", ct, STORE, timedelta(days=365), HOUR, lambda: [ACCOUNT], sleep=lambda _s: None)
    with Stubber(ct) as stub:
        stub.add_response(
            "start_query",
            {"QueryId": Q1},
            {"QueryStatement": lake_query(STORE, "2025-06-30 00:00:00.000")},
        )
        stub.add_response("get_query_results", {"QueryStatus": "RUNNING"}, {"QueryId": Q1})
        stub.add_response(
            "get_query_results",
            {
                "QueryStatus": "FINISHED",
                "QueryResultRows": [
                    row("e1", "2026-06-01 10:00:00.000", "GetSecretValue", {"secretId": "prod/sign"})
                ],
                "NextToken": "page-2",
            },
            {"QueryId": Q1},
        )
        stub.add_response(
            "get_query_results",
            {
                "QueryStatus": "FINISHED",
                "QueryResultRows": [
                    row(
                        "e2", "2026-06-02 11:00:00.000", "PutSecretValue", {"secretId": "prod/db"}, user="bob"
                    )
                ],
            },
            {"QueryId": Q1, "NextToken": "page-2"},
        )
        batches = list(reader.read({}, NOW))
        stub.assert_no_pending_responses()
    assert [[(e.event_id, e.how, e.target.kind, e.target.object_id) for e in b.events] for b in batches] == [
        [("e1", ExposureHow.READ, CredentialKind.SECRET, "us-east-1:prod/sign")],
        [("e2", ExposureHow.CREATED, CredentialKind.SECRET, "us-east-1:prod/db")],
    ]
    last = batches[-1].checkpoint
    # e1, a day older, is before the next run's overlap: not kept.
    assert last == Checkpoint(STREAM, "2026-06-02 11:00:00.000", ("2026-06-02 11:00:00.000 e2",))

    # The next run asks from an hour (overlap) before the last event on; e2 is skipped.
    with Stubber(ct) as stub:
        stub.add_response(
            "start_query", {"QueryId": Q2}, {"QueryStatement": lake_query(STORE, "2026-06-02 10:00:00.000")}
        )
        stub.add_response(
            "get_query_results",
            {
                "QueryStatus": "FINISHED",
                "QueryResultRows": [
                    row("e2", "2026-06-02 11:00:00.000", "PutSecretValue", {"secretId": "prod/db"})
                ],
            },
            {"QueryId": Q2},
        )
        again = list(reader.read({STREAM: last}, NOW))
    assert [b.events for b in again] == [()]


def test_the_lake_query_names_only_relevant_events_and_no_failed_calls() -> None:
    query = lake_query(STORE, "2026-06-01 00:00:00")
    assert "FROM EXAMPLE-f852-4e8f-8bd1-bcf6cEXAMPLE " in query
    assert "'GetSecretValue'" in query and "'CreateAccessKey'" in query and "'DescribeInstances'" not in query
    assert "errorCode IS NULL" in query
    with pytest.raises(SourceError, match="not an event data store"):
        lake_query("x; DROP TABLE y", "2026-06-01 00:00:00")


def test_a_lake_row_names_an_iam_user_by_its_user_id_as_a_trail_record_does() -> None:
    from connectors.aws_iam.exposure.lake import row_record
    from connectors.aws_iam.exposure.translate import actor_of

    assert "userIdentity.principalid" in lake_query(STORE, "2026-06-01 00:00:00")
    record = row_record(
        [*row("e1", "2026-06-01 10:00:00.000", "GetSecretValue", {}), {"userIdentity.principalid": "AIDAOLD"}]
    )
    actor = actor_of(record["userIdentity"])
    assert actor is not None and (actor.identity, actor.uid) == ("AIDAOLD", "AIDAOLD")


def test_a_lake_row_names_a_federated_session_by_the_iam_user_that_made_it() -> None:
    from connectors.aws_iam.exposure.lake import row_record
    from connectors.aws_iam.exposure.translate import actor_of

    issuer = "userIdentity.sessioncontext.sessionissuer"
    assert f"{issuer}.principalid" in lake_query(STORE, "2026-06-01 00:00:00")
    cells = row("e1", "2026-06-01 10:00:00.000", "GetSecretValue", {})
    cells = [
        c for c in cells if not {"userIdentity.type", "userIdentity.arn", "userIdentity.username"} & set(c)
    ]
    record = row_record(
        [
            *cells,
            {"userIdentity.type": "FederatedUser"},
            {"userIdentity.arn": f"arn:aws:sts::{ACCOUNT}:federated-user/tmp-export"},
            {f"{issuer}.type": "IAMUser"},
            {f"{issuer}.principalid": "AIDAALICE"},
            {f"{issuer}.arn": f"arn:aws:iam::{ACCOUNT}:user/alice"},
            {f"{issuer}.username": "alice"},
        ]
    )
    actor = actor_of(record["userIdentity"])
    assert actor is not None
    assert (actor.uid, actor.account_id, actor.names) == (
        "AIDAALICE",
        f"arn:aws:iam::{ACCOUNT}:user/alice",
        ("alice", "tmp-export"),
    )


def test_a_failed_lake_query_is_a_failed_read() -> None:
    ct = client()
    reader = LakeReader("aws", ct, STORE, timedelta(days=365), HOUR, lambda: [ACCOUNT], sleep=lambda _s: None)
    with Stubber(ct) as stub:
        stub.add_response("start_query", {"QueryId": Q1}, {"QueryStatement": ANY})
        stub.add_response(
            "get_query_results", {"QueryStatus": "FAILED", "ErrorMessage": "query timed out"}, {"QueryId": Q1}
        )
        with pytest.raises(SourceError, match="ended FAILED"):
            list(reader.read({}, NOW))


# --- against a fake event data store --------------------------------------------------------


def lake_time(t: datetime) -> str:
    """How Lake writes an ``eventTime``."""
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.000")


def read_row(
    event_id: str, at: datetime, user: str = "alice", secret: str = "prod/sign"
) -> list[dict[str, str]]:
    """Row of a GetSecretValue call by IAM user ``user`` of ACCOUNT."""
    return [
        *row(event_id, lake_time(at), "GetSecretValue", {"secretId": secret}, user=user),
        {"userIdentity.principalid": f"AIDA{user.upper()}"},
    ]


class FakeLake:
    """A CloudTrail Lake event data store holding the rows ingested so far. StartQuery keeps the
    rows with ``eventTime >= since`` (the query's only time predicate) in eventTime order;
    GetQueryResults answers them in one page."""

    def __init__(self) -> None:
        self.rows: list[list[dict[str, str]]] = []
        self.queries: dict[str, list[list[dict[str, str]]]] = {}

    def start_query(self, QueryStatement: str) -> dict[str, str]:
        found = re.search(r"eventTime >= '([^']+)'", QueryStatement)
        assert found is not None
        since = datetime.fromisoformat(found.group(1))

        def cell(r: list[dict[str, str]], name: str) -> str:
            return next((c[name] for c in r if name in c), "")

        rows = [r for r in self.rows if datetime.fromisoformat(cell(r, "eventTime")) >= since]
        rows.sort(key=lambda r: (cell(r, "eventTime"), cell(r, "eventID")))
        query_id = f"q{len(self.queries)}"
        self.queries[query_id] = rows
        return {"QueryId": query_id}

    def get_query_results(self, QueryId: str) -> dict[str, Any]:
        return {"QueryStatus": "FINISHED", "QueryResultRows": self.queries[QueryId]}


def read_ids(
    reader: LakeReader, checkpoint: Checkpoint | None, now: datetime
) -> tuple[list[str], Checkpoint | None]:
    """The event ids one run reads, and the checkpoint it leaves."""
    ids: list[str] = []
    for batch in reader.read({STREAM: checkpoint} if checkpoint else {}, now):
        assert batch.failure is None
        ids += [e.event_id for e in batch.events]
        checkpoint = batch.checkpoint or checkpoint
    return ids, checkpoint


def test_an_event_lake_ingests_late_is_read_on_the_next_run_and_none_is_read_twice() -> None:
    lake = FakeLake()
    reader = LakeReader("aws", lake, STORE, timedelta(days=365), HOUR, lambda: [ACCOUNT])
    noon = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
    # 11:56: Bob's call of 11:55 is in Lake; Alice's of 11:52 is still on its way.
    lake.rows.append(read_row("e-bob", noon - timedelta(minutes=5), user="bob", secret="prod/db"))
    first, cp = read_ids(reader, None, noon - timedelta(minutes=4))
    assert first == ["e-bob"]
    lake.rows.append(read_row("e-alice", noon - timedelta(minutes=8)))
    second, cp = read_ids(reader, cp, noon)
    third, _cp = read_ids(reader, cp, noon + HOUR)
    assert (second, third) == (["e-alice"], [])


def test_a_checkpoint_of_bare_event_ids_resumes_with_the_overlap() -> None:
    """A checkpoint stored before the overlap ("recent" holds the ids read at the position)."""
    lake = FakeLake()
    reader = LakeReader("aws", lake, STORE, timedelta(days=365), HOUR, lambda: [ACCOUNT])
    noon = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
    lake.rows.append(read_row("e-bob", noon - timedelta(minutes=5), user="bob", secret="prod/db"))
    lake.rows.append(read_row("e-alice", noon - timedelta(minutes=8)))
    old = Checkpoint(STREAM, lake_time(noon - timedelta(minutes=5)), ("e-bob",))
    assert read_ids(reader, old, noon)[0] == ["e-alice"]


class _Clients:
    def __init__(self, lake: FakeLake) -> None:
        self.lake = lake

    def home(self, service: str, region: str | None = None) -> FakeLake:
        assert service == "cloudtrail"
        return self.lake


class LakeExposure(AwsExposureSource):
    """The real AwsExposureSource events from Lake; the inventory faked as inventory_by_scope
    gives it: every account of the IAM source read, holding ``secrets``."""

    secrets: tuple[SecretState, ...] = ()

    def inventory(self, wanted: Sequence[ObjectRef]) -> InventoryRead:
        return InventoryRead(secrets=self.secrets, scopes=tuple(self.accounts.scopes()))


def lake_source(lake: FakeLake, *secrets: SecretState) -> LakeExposure:
    settings = AwsSettings("aws", accounts=(ACCOUNT, OTHER))
    accounts = AwsIamSource(settings, ClientProvider(settings, AwsClients()))
    exposure = ExposureSettings(lake_event_data_store=STORE)
    source = LakeExposure("aws", exposure, _Clients(lake), accounts)  # type: ignore[arg-type]
    source.secrets = secrets
    return source


def signing_secret(rotated: datetime) -> SecretState:
    return SecretState(
        "aws",
        ACCOUNT,
        CredentialKind.SECRET,
        f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:prod/sign-AbCdEf",
        name="prod/sign",
        current_version_created_at=rotated,
        aliases=("us-east-1:prod/sign",),
    )


ALICE = Person(
    "E1", "alice@example.com", "Alice", PersonStatus.TERMINATED, NOW - timedelta(days=10), source="hr"
)
ALICE_USER = Account(
    "aws", "aws_iam", f"arn:aws:iam::{ACCOUNT}:user/alice", "alice", True, scope=ACCOUNT, uid="AIDAALICE"
)


def test_a_malformed_lake_page_fails_every_accounts_exposure_scope_and_closes_nothing(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'a.db'}")
    index = ActorIndex.build([Link(ALICE_USER, (ALICE,), "email")], [ALICE], ["email_local"])
    lake = FakeLake()

    def audit(source: LakeExposure, now: datetime, run_id: str) -> Any:
        result = read_one("aws", source, store, index, now, run_id, lambda _m: None)
        changes = update_findings(store.stored_findings(), result.findings, result.read, (), result.stale)
        store.save_findings(run_id, now, changes)
        return result, changes

    # Run 1: Alice (left 10 days ago) read the secret 20 days ago; its value is 100 days old.
    lake.rows.append(read_row("e1", NOW - timedelta(days=20)))
    _r1, first = audit(
        lake_source(lake, signing_secret(NOW - timedelta(days=100))), NOW - timedelta(days=3), "r1"
    )
    assert [f.rule.value for f in first.new] == ["secret-exposed-to-leaver"]

    # The secret was rotated 2 days ago and Alice read the new value yesterday, but Lake answers
    # that row without its eventID: the read of yesterday is unknown, so the finding stays open.
    lake.rows.append(read_row("e2", NOW - timedelta(days=1)))
    lake.rows.append([{"eventTime": lake_time(NOW - timedelta(hours=1))}])
    second, changes = audit(lake_source(lake, signing_secret(NOW - timedelta(days=2))), NOW, "r2")
    assert changes.closed == ()
    assert [(f.status.value, f.stale) for f in store.stored_findings().values()] == [("open", True)]
    failed = sorted(f.scope for f in second.runs[0].failed_scopes)
    assert failed == [f"exposure:{ACCOUNT}", f"exposure:{OTHER}"]
    assert all("malformed row" in f.error for f in second.runs[0].failed_scopes)
