"""Every table, declared once, as SQLAlchemy Core tables of the SQLModel rows in ``models``.

Storage reads and writes through these (Core statements, no ORM sessions); the rows never leave
the storage package.
"""

from __future__ import annotations

from sqlalchemy import Table, inspect
from sqlmodel import SQLModel

from offboard_audit.storage.models import (
    AccountRow,
    ActionRow,
    AuditEventRow,
    CredentialRow,
    ExemptionRow,
    ExposureCheckpointRow,
    ExposureEventRow,
    ExposureObjectRow,
    ExposureSecretRow,
    FindingEventRow,
    FindingRow,
    LockRow,
    NotificationRow,
    PersonKeyRow,
    PersonRow,
    RunRow,
    ScheduledReconcileRow,
    ScheduledTickRow,
    SourceRunRow,
    WebhookEventRow,
    WebhookJobRow,
)


def table_of(model: type[SQLModel]) -> Table:
    """The Core table of a table model (SQLModel does not declare ``__table__`` for type checkers)."""
    table = inspect(model).local_table
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not a table model")
    return table


RUNS = table_of(RunRow)
SOURCE_RUNS = table_of(SourceRunRow)
PEOPLE = table_of(PersonRow)
PERSON_KEYS = table_of(PersonKeyRow)
ACCOUNTS = table_of(AccountRow)
CREDENTIALS = table_of(CredentialRow)
FINDINGS = table_of(FindingRow)
FINDING_EVENTS = table_of(FindingEventRow)
EXEMPTIONS = table_of(ExemptionRow)
ACTIONS = table_of(ActionRow)
EXPOSURE_EVENTS = table_of(ExposureEventRow)
EXPOSURE_CHECKPOINTS = table_of(ExposureCheckpointRow)
EXPOSURE_SECRETS = table_of(ExposureSecretRow)
EXPOSURE_OBJECTS = table_of(ExposureObjectRow)
AUDIT_EVENTS = table_of(AuditEventRow)
LOCKS = table_of(LockRow)
WEBHOOK_EVENTS = table_of(WebhookEventRow)
WEBHOOK_JOBS = table_of(WebhookJobRow)
SCHEDULED_RECONCILES = table_of(ScheduledReconcileRow)
NOTIFICATIONS = table_of(NotificationRow)
DAEMON_TICKS = table_of(ScheduledTickRow)
