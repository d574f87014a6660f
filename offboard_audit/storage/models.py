"""SQLModel tables. They stay inside the storage package; the rest of the code sees records.

Every change here ships an Alembic migration (``alembic/versions``); a test checks that the
models and the migrations agree, server defaults included: a fresh database is created from
these models (``storage/migrate.py``), an existing one by the migrations, and both must be the
same schema. A column a migration added to existing rows carries its ``server_default`` here too.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Index, Text, false
from sqlmodel import Field, SQLModel

from offboard_audit.core.jobs import EventStatus
from offboard_audit.core.runs import RunStatus
from offboard_audit.core.stored import RunKind
from offboard_audit.storage.types import UTCDateTime


def _dt(nullable: bool = True, index: bool = False) -> Column[datetime]:
    return Column(UTCDateTime(), nullable=nullable, index=index)


class RunRow(SQLModel, table=True):
    __tablename__ = "runs"

    run_id: str = Field(primary_key=True, max_length=64)
    kind: str = Field(default=RunKind.AUDIT.value, max_length=32)
    started_at: datetime = Field(sa_column=_dt(False, True))
    finished_at: datetime | None = Field(default=None, sa_column=_dt())
    status: str = Field(default=RunStatus.RUNNING.value, max_length=16)
    circuit_breaker: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    summary_json: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    # host:pid of the process running it, and until when its lease holds while it is running:
    # a running run whose lease ran out is marked abandoned (storage/runs.py).
    owner: str = Field(default="", max_length=255, sa_column_kwargs={"server_default": ""})
    lease_until: datetime | None = Field(default=None, sa_column=_dt())


class SourceRunRow(SQLModel, table=True):
    __tablename__ = "source_runs"

    id: int | None = Field(default=None, primary_key=True)
    run_id: str = Field(foreign_key="runs.run_id", index=True, max_length=64)
    name: str = Field(max_length=128)
    system: str = Field(max_length=64)
    status: str = Field(max_length=16)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    stale: bool = False
    counts_json: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    failed_scopes_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    warnings_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))


class PersonRow(SQLModel, table=True):
    __tablename__ = "people"

    source: str = Field(primary_key=True, max_length=128)
    employee_id: str = Field(sa_column=Column(Text, primary_key=True, nullable=False))
    email: str | None = Field(default=None, sa_column=Column(Text, nullable=True, index=True))
    name: str = Field(default="", sa_column=Column(Text, nullable=False))
    status: str = Field(max_length=16)
    terminated_at: datetime | None = Field(default=None, sa_column=_dt())
    aliases_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    # The row as the HR source gave it last (JSON; null: never listed by it, e.g. recorded from a
    # webhook event). A full HR read changes only the fields that changed against it.
    hr_row_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # Effective time of the last applied status change and what applied it: an HR webhook event
    # older than that is superseded.
    changed_at: datetime | None = Field(default=None, sa_column=_dt())
    changed_by: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    # Set while a terminated person is kept after dropping out of the HR read (sticky).
    missing_since: datetime | None = Field(default=None, sa_column=_dt())
    # Version of the row for conditional writes (a content hash).
    row_hash: str = Field(max_length=40)
    updated_run: str = Field(max_length=64)


class PersonKeyRow(SQLModel, table=True):
    """The identifiers a stored person can be matched by (``id:``, ``email:``, ``alias:`` and
    ``local:`` keys, normalised as matching does), so that one person's accounts are matched
    with indexed lookups instead of loading everybody (the HR webhook path)."""

    __tablename__ = "person_keys"
    __table_args__ = (Index("ix_person_keys_person", "source", "employee_id"),)

    key: str = Field(sa_column=Column(Text, primary_key=True, nullable=False))
    source: str = Field(primary_key=True, max_length=128)
    employee_id: str = Field(sa_column=Column(Text, primary_key=True, nullable=False))


class AccountRow(SQLModel, table=True):
    __tablename__ = "accounts"

    source: str = Field(primary_key=True, max_length=128)
    account_id: str = Field(sa_column=Column(Text, primary_key=True, nullable=False))
    system: str = Field(max_length=64)
    scope: str = Field(default="", sa_column=Column(Text, nullable=False))
    username: str = Field(default="", sa_column=Column(Text, nullable=False))
    display_name: str = Field(default="", sa_column=Column(Text, nullable=False))
    kind: str = Field(max_length=16)
    enabled: bool = True
    emails_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    attributes_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    last_login_at: datetime | None = Field(default=None, sa_column=_dt())
    last_login_precision_s: float | None = None
    uid: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    row_hash: str = Field(max_length=40)
    updated_run: str = Field(max_length=64)


class CredentialRow(SQLModel, table=True):
    __tablename__ = "credentials"

    source: str = Field(primary_key=True, max_length=128)
    account_id: str = Field(sa_column=Column(Text, primary_key=True, nullable=False))
    credential_id: str = Field(sa_column=Column(Text, primary_key=True, nullable=False))
    scope: str = Field(default="", sa_column=Column(Text, nullable=False))
    kind: str = Field(max_length=32)
    active: bool = True
    detail: str = Field(default="", sa_column=Column(Text, nullable=False))
    created_at: datetime | None = Field(default=None, sa_column=_dt())
    last_used_at: datetime | None = Field(default=None, sa_column=_dt())
    observed_at: datetime | None = Field(default=None, sa_column=_dt())
    last_used_precision_s: float | None = None
    provisional: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    row_hash: str = Field(max_length=40)
    updated_run: str = Field(max_length=64)


class FindingRow(SQLModel, table=True):
    """A finding with enough copied context to print it after its credential is gone."""

    __tablename__ = "findings"
    __table_args__ = (Index("ix_findings_status_severity", "status", "severity"),)

    finding_id: str = Field(primary_key=True, max_length=40)
    rule: str = Field(max_length=64)
    severity: str = Field(max_length=16)
    status: str = Field(max_length=16)
    source: str = Field(max_length=128)
    system: str = Field(max_length=64)
    scope: str = Field(default="", sa_column=Column(Text, nullable=False))
    account_id: str = Field(sa_column=Column(Text, nullable=False))
    account_name: str = Field(default="", sa_column=Column(Text, nullable=False))
    account_kind: str = Field(default="human", max_length=16)
    # Account.uid: the immutable identity the revocation engine re-checks before acting.
    account_uid: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    credential_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    credential_kind: str | None = Field(default=None, max_length=32)
    credential_active: bool | None = None
    credential_detail: str = Field(default="", sa_column=Column(Text, nullable=False))
    credential_created_at: datetime | None = Field(default=None, sa_column=_dt())
    credential_last_used_at: datetime | None = Field(default=None, sa_column=_dt())
    person_source: str | None = Field(default=None, max_length=128)
    person_employee_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True, index=True))
    person_email: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    person_name: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    person_status: str | None = Field(default=None, max_length=16)
    person_terminated_at: datetime | None = Field(default=None, sa_column=_dt())
    candidates_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    reason: str = Field(default="", sa_column=Column(Text, nullable=False))
    first_seen: datetime = Field(sa_column=_dt(False))
    last_seen: datetime = Field(sa_column=_dt(False))
    due_at: datetime | None = Field(default=None, sa_column=_dt())
    resolved_at: datetime | None = Field(default=None, sa_column=_dt())
    exemption_id: str | None = Field(default=None, max_length=64)
    stale: bool = False
    run_id: str = Field(max_length=64, index=True)
    # Exposure findings (issue 13): each access [{"at", "how", "event_id", "action"}] and the
    # rotate owner.
    exposure_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, server_default="[]"))
    owner_email: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    owner_via: str | None = Field(default=None, max_length=16)


class FindingEventRow(SQLModel, table=True):
    """Status history of a finding: one row per change, so a run can be explained later."""

    __tablename__ = "finding_events"

    id: int | None = Field(default=None, primary_key=True)
    finding_id: str = Field(index=True, max_length=40)
    run_id: str = Field(max_length=64)
    at: datetime = Field(sa_column=_dt(False))
    from_status: str | None = Field(default=None, max_length=16)
    to_status: str = Field(max_length=16)


class ExemptionRow(SQLModel, table=True):
    __tablename__ = "exemptions"

    exemption_id: str = Field(primary_key=True, max_length=64)
    selector: str = Field(max_length=1024)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    until: datetime = Field(sa_column=_dt(False))
    created_by: str = Field(max_length=256)
    created_at: datetime = Field(sa_column=_dt(False))
    removed_at: datetime | None = Field(default=None, sa_column=_dt())


class ActionRow(SQLModel, table=True):
    """One planned or applied revocation (or undo) of one credential."""

    __tablename__ = "actions"

    action_id: str = Field(primary_key=True, max_length=64)
    plan_id: str = Field(max_length=64, index=True)
    finding_id: str | None = Field(default=None, max_length=40, index=True)
    source: str = Field(max_length=128)
    system: str = Field(max_length=64)
    scope: str = Field(default="", sa_column=Column(Text, nullable=False))
    account_id: str = Field(sa_column=Column(Text, nullable=False))
    username: str = Field(default="", sa_column=Column(Text, nullable=False))
    account_uid: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    credential_id: str = Field(sa_column=Column(Text, nullable=False))
    credential_kind: str = Field(max_length=32)
    detail: str = Field(default="", sa_column=Column(Text, nullable=False))
    action: str = Field(max_length=64)
    stage: str = Field(max_length=16)
    reversible: bool = True
    person_employee_id: str | None = Field(default=None, sa_column=Column(Text, nullable=True, index=True))
    status: str = Field(max_length=16, index=True)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    prior_state_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    result_state_json: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    actor: str = Field(default="", max_length=256)
    undo_of: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(sa_column=_dt(False))
    updated_at: datetime = Field(sa_column=_dt(False))


class AuditEventRow(SQLModel, table=True):
    """Append-only, hash-chained log: each event carries the hash of the one before."""

    __tablename__ = "audit_events"

    seq: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_column=_dt(False))
    kind: str = Field(max_length=64)
    actor: str = Field(default="", max_length=256)
    run_id: str | None = Field(default=None, max_length=64)
    action_id: str | None = Field(default=None, max_length=64, index=True)
    payload_json: str = Field(sa_column=Column(Text, nullable=False))
    prev_hash: str = Field(max_length=64)
    hash: str = Field(max_length=64)
    # Keyed chain ([audit] key_env): HMAC-SHA256 with the audit key over the hash, and which key
    # (core/audit_chain.py). NULL on events written without a key.
    mac: str | None = Field(default=None, max_length=64)
    key_id: str | None = Field(default=None, max_length=16)


class LockRow(SQLModel, table=True):
    """Named lease used where the database has no advisory locks (SQLite)."""

    __tablename__ = "locks"

    name: str = Field(primary_key=True, max_length=128)
    holder: str = Field(max_length=256)
    acquired_at: datetime = Field(sa_column=_dt(False))
    expires_at: datetime = Field(sa_column=_dt(False))


# --- exposure ledger (issue 13) ----------------------------------------------------------------


class ExposureEventRow(SQLModel, table=True):
    """One event of the exposure ledger: an identity's access to a secret, or an object it made
    (core/exposure.py). Appended only; a duplicate ``event_id`` of the same source is dropped."""

    __tablename__ = "exposure_events"
    __table_args__ = (Index("ix_exposure_events_actor", "source", "actor_identity"),)

    source: str = Field(primary_key=True, max_length=128)
    event_id: str = Field(sa_column=Column(Text, primary_key=True, nullable=False))
    scope: str = Field(default="", sa_column=Column(Text, nullable=False))
    stream: str = Field(default="", sa_column=Column(Text, nullable=False))
    at: datetime = Field(sa_column=_dt(False))
    action: str = Field(sa_column=Column(Text, nullable=False))
    how: str = Field(max_length=32)
    actor_identity: str = Field(sa_column=Column(Text, nullable=False))
    actor_kind: str = Field(default="", max_length=64)
    actor_account_id: str = Field(default="", sa_column=Column(Text, nullable=False))
    actor_names_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    # The acting account's immutable id when the system logs one (an IAM user's UserId).
    actor_uid: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=""))
    target_scope: str = Field(default="", sa_column=Column(Text, nullable=False))
    target_kind: str = Field(max_length=32)
    target_id: str = Field(sa_column=Column(Text, nullable=False))
    target_owner: str = Field(default="", sa_column=Column(Text, nullable=False))
    target_fingerprint: str = Field(default="", sa_column=Column(Text, nullable=False))


class ExposureCheckpointRow(SQLModel, table=True):
    """How far one event stream of an exposure source has been read (core.exposure.Checkpoint)."""

    __tablename__ = "exposure_checkpoints"

    source: str = Field(primary_key=True, max_length=128)
    stream: str = Field(sa_column=Column(Text, primary_key=True, nullable=False))
    position: str = Field(sa_column=Column(Text, nullable=False))
    recent_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    updated_at: datetime = Field(sa_column=_dt(False))


class ExposureSecretRow(SQLModel, table=True):
    """The inventory: a secret or key as last read (core.exposure.SecretState); the rows of a
    scope are replaced only by a successful read of that scope."""

    __tablename__ = "exposure_secrets"

    source: str = Field(primary_key=True, max_length=128)
    scope: str = Field(sa_column=Column(Text, primary_key=True, nullable=False))
    kind: str = Field(primary_key=True, max_length=32)
    secret_id: str = Field(sa_column=Column(Text, primary_key=True, nullable=False))
    name: str = Field(default="", sa_column=Column(Text, nullable=False))
    owner: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_at: datetime | None = Field(default=None, sa_column=_dt())
    current_version_created_at: datetime | None = Field(default=None, sa_column=_dt())
    oldest_enabled_version_created_at: datetime | None = Field(default=None, sa_column=_dt())
    enabled: bool = True
    rotation_configured: bool = False
    exportable: bool = True
    signing: bool = False
    grantees_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    aliases_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    updated_run: str = Field(max_length=64)


class ExposureObjectRow(SQLModel, table=True):
    """Whether an object a leaver's event made is still in place (core.exposure.PersistenceState)."""

    __tablename__ = "exposure_objects"

    source: str = Field(primary_key=True, max_length=128)
    scope: str = Field(sa_column=Column(Text, primary_key=True, nullable=False))
    kind: str = Field(primary_key=True, max_length=32)
    object_id: str = Field(sa_column=Column(Text, primary_key=True, nullable=False))
    owner: str = Field(default="", sa_column=Column(Text, nullable=False))
    fingerprint: str = Field(default="", sa_column=Column(Text, nullable=False))
    present: bool = False
    detail: str = Field(default="", sa_column=Column(Text, nullable=False))
    remove_by_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, server_default="[]"))
    updated_run: str = Field(max_length=64)


# --- daemon and HR webhook (issue 7) ---------------------------------------------------------


class WebhookEventRow(SQLModel, table=True):
    """An accepted HR webhook event. The primary key makes a replayed ``event_id`` fail to insert."""

    __tablename__ = "webhook_events"

    event_id: str = Field(primary_key=True, max_length=128)
    event: str = Field(max_length=32)
    employee_id: str = Field(max_length=128, index=True)
    email: str | None = Field(default=None, max_length=320)
    effective_at: datetime = Field(sa_column=_dt(False))
    signed_at: datetime = Field(sa_column=_dt(False))
    received_at: datetime = Field(sa_column=_dt(False, True))
    body_json: str = Field(sa_column=Column(Text, nullable=False))
    job_id: str = Field(max_length=64)
    # received | applied | superseded | conflict (set by the job that handles the event)
    status: str = Field(
        default=EventStatus.RECEIVED.value, max_length=16, sa_column_kwargs={"server_default": "received"}
    )


class WebhookJobRow(SQLModel, table=True):
    """Work started by a webhook event or an HR refresh: a targeted reconcile, an undo, an update."""

    __tablename__ = "webhook_jobs"

    job_id: str = Field(primary_key=True, max_length=64)
    kind: str = Field(max_length=32)
    employee_id: str = Field(max_length=128, index=True)
    event_id: str | None = Field(default=None, max_length=128)
    state: str = Field(max_length=16, index=True)
    created_at: datetime = Field(sa_column=_dt(False))
    due_at: datetime | None = Field(default=None, sa_column=_dt())
    started_at: datetime | None = Field(default=None, sa_column=_dt())
    finished_at: datetime | None = Field(default=None, sa_column=_dt())
    node: str = Field(default="", max_length=256)
    run_id: str | None = Field(default=None, max_length=64)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    detail: str = Field(default="", sa_column=Column(Text, nullable=False))
    actions_json: str = Field(default="[]", sa_column=Column(Text, nullable=False))
    # ``node`` is the owning daemon instance; its lease is renewed while it holds the job.
    lease_expires_at: datetime | None = Field(default=None, sa_column=_dt(True, True))
    attempts: int = Field(
        default=0, sa_column_kwargs={"server_default": "0"}
    )  # times a daemon started it (more than 1: taken over)
    takeovers_json: str = Field(default="[]", sa_column=Column(Text, nullable=False, server_default="[]"))
    # An incomplete job (a read of its person failed) is retried then.
    next_attempt_at: datetime | None = Field(default=None, sa_column=_dt(True, True))


class ScheduledReconcileRow(SQLModel, table=True):
    """A targeted reconcile waiting for a future ``effective_at``; claimed by one replica only."""

    __tablename__ = "scheduled_reconciles"

    id: int | None = Field(default=None, primary_key=True)
    job_id: str = Field(max_length=64, index=True)
    employee_id: str = Field(max_length=128, index=True)
    due_at: datetime = Field(sa_column=_dt(False, True))
    state: str = Field(max_length=16, index=True)
    created_at: datetime = Field(sa_column=_dt(False))
    claimed_by: str | None = Field(default=None, max_length=256)
    claimed_at: datetime | None = Field(default=None, sa_column=_dt())


class NotificationRow(SQLModel, table=True):
    """The notification outbox: written with the run or job it belongs to, sent by the leader.

    One row per message and target; ``target`` is a hash of the URL (never the URL itself)."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_state_next", "state", "next_attempt_at"),)

    notification_id: str = Field(primary_key=True, max_length=200)
    origin: str = Field(max_length=128, index=True)
    kind: str = Field(max_length=32)
    target: str = Field(max_length=32)
    payload_json: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=_dt(False))
    # pending | delivered | undeliverable
    state: str = Field(max_length=16)
    attempts: int = Field(default=0)
    next_attempt_at: datetime | None = Field(default=None, sa_column=_dt())
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    delivered_at: datetime | None = Field(default=None, sa_column=_dt())


class ScheduledTickRow(SQLModel, table=True):
    """A firing of the daemon's schedule: which run it started, on which node; a tick left
    ``running`` by a leader that died is marked abandoned and re-run by the next one."""

    __tablename__ = "daemon_ticks"

    tick_id: str = Field(primary_key=True, max_length=160)
    kind: str = Field(max_length=32)
    scheduled_at: datetime = Field(sa_column=_dt(False))
    node: str = Field(max_length=256)
    state: str = Field(max_length=16, index=True)
    started_at: datetime = Field(sa_column=_dt(False))
    run_id: str | None = Field(default=None, max_length=64)
    finished_at: datetime | None = Field(default=None, sa_column=_dt())
