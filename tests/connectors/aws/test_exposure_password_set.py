"""A console password a leaver set on another user's login profile (UpdateLoginProfile): still
hers until the profile is made again or its password changes after her call. Pure: the record's
fingerprint and the state from GetLoginProfile's CreateDate and the credential report's
password_last_changed (which moto cannot tell apart: it reports the user's creation for both)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectors.aws_iam.exposure.states import password_set_state
from connectors.aws_iam.exposure.translate import password_set_at, record_events
from offboard_audit.core.exposure import ObjectRef
from offboard_audit.core.records import CredentialKind, ExposureHow
from tests.support.cloudtrail import iam_user, record

SET_AT = datetime(2026, 5, 1, 9, 30, 5, tzinfo=UTC)
REF = ObjectRef("123456789012", CredentialKind.PASSWORD, "svc/login-profile", "svc")


def test_the_update_names_the_profile_and_when_its_password_was_set() -> None:
    rec = record(
        "UpdateLoginProfile",
        "iam.amazonaws.com",
        SET_AT,
        iam_user("alice"),
        {"userName": "svc", "passwordResetRequired": False},
        event_id="e1",
    )
    (event,) = record_events(rec, "aws")
    assert (event.how, event.target.kind, event.target.object_id, event.target.owner) == (
        ExposureHow.CHANGED_ACCESS,
        CredentialKind.PASSWORD,
        "svc/login-profile",
        "svc",
    )
    assert password_set_at(event.target.fingerprint) == SET_AT
    # A CreateLoginProfile's fingerprint (the profile's creation date) is not a password set.
    assert password_set_at(SET_AT.isoformat()) is None


@pytest.mark.parametrize(
    ("created", "changed", "present", "detail"),
    [
        # The report stamps her own change during the call, a moment after its logged second.
        (SET_AT - timedelta(days=300), SET_AT + timedelta(seconds=1), True, "not changed since"),
        (SET_AT - timedelta(days=300), SET_AT - timedelta(days=300), True, "not changed since"),
        # Not dated (a user newer than the report): nothing proves a change.
        (SET_AT - timedelta(days=300), None, True, "not changed since"),
        (SET_AT - timedelta(days=300), SET_AT + timedelta(days=2), False, "password changed since"),
        (SET_AT + timedelta(days=2), SET_AT + timedelta(days=2), False, "re-created since"),
    ],
)
def test_the_password_stays_hers_until_the_profile_is_made_again_or_its_password_changes(
    created: datetime, changed: datetime | None, present: bool, detail: str
) -> None:
    state = password_set_state("aws", REF, SET_AT, created, changed)
    assert state.present is present and state.detail.endswith(detail)
