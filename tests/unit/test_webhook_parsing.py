"""The HR webhook's pure parts, called in process: ``verify`` (headers and signature),
``parse_event`` / ``_parse_time`` / ``_parse_id`` (the JSON body), ``_job_for`` (the job an
accepted event starts) and ``job_json`` (what the job API shows).

Every rejection is checked for its exact status and for a message that names the field; the
signatures are computed here with ``hmac``/``hashlib``, never with the product's ``sign``.
(Issue 10: these tests kill the mutation survivors of ``offboard_audit/daemon/webhook.py``.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from offboard_audit.core.jobs import (
    EventStatus,
    HREvent,
    HREventType,
    Job,
    JobAction,
    JobKind,
    JobState,
    Takeover,
)
from offboard_audit.daemon.webhook import Rejected, _job_for, _parse_time, job_json, parse_event, verify

SECRET = b"unit-test-webhook-secret"
NOW = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
TS = str(int(NOW.timestamp()))
WINDOW = timedelta(minutes=5)
SIGNED_AT = NOW - timedelta(seconds=3)


def mac(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value, computed independently of the product."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def rejected(call: Callable[[], object]) -> Rejected:
    with pytest.raises(Rejected) as info:
        call()
    return info.value


def body(**overrides: Any) -> bytes:
    """A valid termination, with fields replaced (``...`` removes a field)."""
    payload: dict[str, Any] = {
        "event_id": "evt-1",
        "event": "employee.terminated",
        "employee_id": "E1",
        "email": "e1@example.com",
        "effective_at": "2026-03-01T09:00:00Z",
    }
    payload.update(overrides)
    return json.dumps({k: v for k, v in payload.items() if v is not ...}).encode()


def parse(raw: bytes) -> HREvent:
    return parse_event(raw, SIGNED_AT, NOW)


# --- Rejected --------------------------------------------------------------------------------


def test_rejected_reads_as_its_message_when_printed_or_logged() -> None:
    exc = Rejected(422, "event_id must be a non-empty string")
    assert (exc.status, exc.message) == (422, "event_id must be a non-empty string")
    assert str(exc) == "event_id must be a non-empty string"
    assert exc.args == ("event_id must be a non-empty string",)


# --- verify: headers, signature, window ------------------------------------------------------


def test_verify_accepts_a_plain_mapping_of_lowercase_header_names() -> None:
    raw = body()
    headers = {"x-offboard-timestamp": TS, "x-offboard-signature": mac(SECRET, TS, raw)}
    assert verify(headers, raw, SECRET, NOW, WINDOW) == datetime.fromtimestamp(int(TS), UTC)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="both-missing"),
        pytest.param({"x-offboard-signature": "SIG"}, id="timestamp-missing"),
        pytest.param({"x-offboard-timestamp": TS}, id="signature-missing"),
        pytest.param({"x-offboard-timestamp": "", "x-offboard-signature": "SIG"}, id="timestamp-empty"),
        pytest.param({"x-offboard-timestamp": TS, "x-offboard-signature": ""}, id="signature-empty"),
    ],
)
def test_verify_refuses_a_missing_or_empty_header_with_401_saying_it_is_missing(
    headers: dict[str, str],
) -> None:
    raw = body()
    headers = {k: (mac(SECRET, TS, raw) if v == "SIG" else v) for k, v in headers.items()}
    exc = rejected(lambda: verify(headers, raw, SECRET, NOW, WINDOW))
    assert exc.status == 401
    assert exc.message == "missing X-Offboard-Timestamp or X-Offboard-Signature header"


# --- _parse_id (event_id, employee_id) ----------------------------------------------------------


@pytest.mark.parametrize("field", ["event_id", "employee_id"])
@pytest.mark.parametrize("value", [..., None, "", "   ", 7, ["E1"], {"id": "E1"}, True])
def test_an_id_that_is_not_a_non_empty_string_is_422_naming_the_field(field: str, value: Any) -> None:
    exc = rejected(lambda: parse(body(**{field: value})))
    assert exc.status == 422
    assert exc.message == f"{field} must be a non-empty string"


@pytest.mark.parametrize("field", ["event_id", "employee_id"])
def test_an_id_of_exactly_128_characters_is_accepted(field: str) -> None:
    value = "i" * 128
    event = parse(body(**{field: value}))
    assert getattr(event, field) == value


@pytest.mark.parametrize("field", ["event_id", "employee_id"])
@pytest.mark.parametrize(
    "value", ["i" * 129, "E\x001", "E\n1", "E\u20281", "x" * 100_000], ids=["129", "nul", "lf", "ls", "huge"]
)
def test_an_id_too_long_or_not_printable_is_422_naming_the_field_and_the_limit(
    field: str, value: str
) -> None:
    exc = rejected(lambda: parse(body(**{field: value})))
    assert exc.status == 422
    assert exc.message == f"{field} must be at most 128 printable characters"


# --- parse_event: the body as a whole ------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe{}", b'{"event_id": "\xc3("}', b"{not json", b"", b'{"event_id": "e"'],
    ids=["bad-bom", "bad-utf8-inside", "not-json", "empty", "truncated"],
)
def test_a_body_that_is_not_utf8_json_is_422_saying_so(raw: bytes) -> None:
    exc = rejected(lambda: parse(raw))
    assert (exc.status, exc.message) == (422, "body is not UTF-8 JSON")


@pytest.mark.parametrize("raw", [b"[]", b"null", b'"employee.terminated"', b"42", b"true", b"[{}]"])
def test_a_json_body_that_is_not_an_object_is_422_saying_so(raw: bytes) -> None:
    exc = rejected(lambda: parse(raw))
    assert (exc.status, exc.message) == (422, "body must be a JSON object")


@pytest.mark.parametrize(
    "value", [..., None, "employee.fired", "EMPLOYEE.TERMINATED", 3, ["employee.rehired"]]
)
def test_an_unknown_event_is_422_listing_the_three_known_events(value: Any) -> None:
    exc = rejected(lambda: parse(body(event=value)))
    assert exc.status == 422
    assert exc.message == "event must be one of employee.terminated, employee.rehired, employee.updated"


@pytest.mark.parametrize(
    "email",
    [
        "no-at-sign.example.com",
        "a\x00@example.com",
        "a\n@example.com",
        "a\u2028@example.com",
        "a@" + "e" * 319,
        17,
        ["a@example.com"],
        "",
    ],
    ids=["no-at", "nul", "newline", "line-separator", "321-chars", "int", "list", "empty"],
)
def test_a_bad_email_is_422_naming_email(email: Any) -> None:
    exc = rejected(lambda: parse(body(email=email)))
    assert (exc.status, exc.message) == (422, "email must be an email address or null")


def test_an_email_of_exactly_320_characters_is_accepted() -> None:
    email = "a@" + "e" * 318
    assert len(email) == 320
    assert parse(body(email=email)).email == email


@pytest.mark.parametrize("email", [None, ...], ids=["null", "absent"])
def test_a_null_or_absent_email_is_accepted_as_none(email: Any) -> None:
    assert parse(body(email=email)).email is None


@pytest.mark.parametrize("effective_at", [None, ...], ids=["null", "absent"])
def test_a_termination_without_effective_at_is_422_saying_it_is_required(effective_at: Any) -> None:
    exc = rejected(lambda: parse(body(effective_at=effective_at)))
    assert (exc.status, exc.message) == (422, "effective_at is required for employee.terminated")


@pytest.mark.parametrize("event", ["employee.rehired", "employee.updated"])
@pytest.mark.parametrize("effective_at", [None, ...], ids=["null", "absent"])
def test_a_rehire_or_update_without_effective_at_takes_effect_when_received(
    event: str, effective_at: Any
) -> None:
    parsed = parse(body(event=event, effective_at=effective_at))
    assert parsed.event == HREventType(event)
    assert parsed.effective_at == NOW


def test_a_valid_event_carries_every_field_trimmed_and_the_body_as_text() -> None:
    raw = body(event_id="  evt-9 ", employee_id=" E9  ", email=" e9@example.com ", note="ünïcode extra")
    event = parse(raw)
    assert event == HREvent(
        event_id="evt-9",
        event=HREventType.TERMINATED,
        employee_id="E9",
        email="e9@example.com",
        effective_at=datetime(2026, 3, 1, 9, 0, tzinfo=UTC),
        signed_at=SIGNED_AT,
        received_at=NOW,
        body=raw.decode(),
    )


def test_employee_id_and_email_are_read_in_nfc_and_invisible_characters_are_still_refused() -> None:
    # HR sources store identifiers in NFC: an event that spells the accent decomposed (E + U+0301,
    # e + U+0301) names the stored person, not a new one. The event id is the sender's own.
    event = parse(body(event_id="evt-E\u0301", employee_id=" E\u03011 ", email="jose\u0301@example.com"))
    assert (event.event_id, event.employee_id, event.email) == (
        "evt-E\u0301",
        "\u00c91",
        "jos\u00e9@example.com",
    )
    assert rejected(lambda: parse(body(employee_id="E\u200b1"))).status == 422
    assert rejected(lambda: parse(body(email="alice\u200b@example.com"))).status == 422


# --- effective_at (_parse_time) --------------------------------------------------------------------


@pytest.mark.parametrize("value", [123, 1.5e9, True, ["2026-03-01T09:00:00Z"], {"t": 1}])
def test_an_effective_at_that_is_not_a_string_is_422_naming_effective_at(value: Any) -> None:
    exc = rejected(lambda: parse(body(effective_at=value)))
    assert (exc.status, exc.message) == (422, "effective_at must be an ISO 8601 time with offset")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("yesterday", "'yesterday'"),
        ("2026-13-01T00:00:00Z", "'2026-13-01T00:00:00Z'"),
        ("2026-01-31T17:00:00z", "'2026-01-31T17:00:00z'"),
        # A Z that is not at the end is no UTC designator (rewriting it would make this parse).
        ("2026-01-31Z-01:00", "'2026-01-31Z-01:00'"),
        # The value echoed back is cut at 40 characters.
        ("not-a-time-" * 6, "'not-a-time-not-a-time-not-a-time-not-a-t'"),
    ],
)
def test_an_effective_at_that_is_not_iso_8601_is_422_echoing_at_most_40_characters(
    value: str, shown: str
) -> None:
    exc = rejected(lambda: parse(body(effective_at=value)))
    assert exc.status == 422
    assert exc.message == f"effective_at is not an ISO 8601 time: {shown}"


@pytest.mark.parametrize("value", ["2026-03-01T09:00:00", "2026-03-01 09:00", "2026-03-01T09"])
def test_a_naive_effective_at_is_422_asking_for_a_utc_offset(value: str) -> None:
    exc = rejected(lambda: parse(body(effective_at=value)))
    assert exc.status == 422
    assert exc.message == "effective_at must carry a UTC offset (e.g. 2026-01-31T17:00:00Z)"


# Python reads "2026-03-01+05:00" as 05:00 on that day (any character after the date is taken
# as the separator); a date alone, whatever follows it, must be refused as a date, not as naive.
@pytest.mark.parametrize("value", ["2026-03-01", "2026-03-01+05:00", "2026-03-01-0800", "2026-03-01Z"])
def test_a_date_without_a_time_of_day_is_422_saying_a_date_alone_is_not_enough(value: str) -> None:
    exc = rejected(lambda: parse(body(effective_at=value)))
    assert exc.status == 422
    assert exc.message == (
        "effective_at must be a time of day with a UTC offset, not a date alone (e.g. 2026-01-31T17:00:00Z)"
    )


# A date followed by stray Zs carries no time of day. Rewriting every Z to "+00:00" before parsing
# turned these into "2026-01-31+00:00+00:00" and the like, which Python reads as midnight UTC: a
# termination time the sender never wrote.
@pytest.mark.parametrize("value", ["2026-01-31ZZ", "2026-01-31Z9Z", "2026-01-31Z:00Z"])
def test_a_date_followed_by_stray_zs_is_422_never_read_as_midnight_utc(value: str) -> None:
    exc = rejected(lambda: parse(body(effective_at=value)))
    assert exc.status == 422
    assert exc.message == f"effective_at is not an ISO 8601 time: {value!r}"


# Python's parser takes any character between date and time; only T, t and a space separate them
# (ISO 8601, RFC 3339). A date with an offset and a stray Z must not become a time of day.
@pytest.mark.parametrize(
    "value", ["2026-01-31+05:00Z", "2026-01-31Z17:00:00Z", "2026-01-31x17:00:00Z", "2026-01-31_17:00:00Z"]
)
def test_a_date_and_time_joined_by_anything_but_t_or_a_space_is_422_never_read_as_a_time(value: str) -> None:
    exc = rejected(lambda: parse(body(effective_at=value)))
    assert exc.status == 422
    assert exc.message == f"effective_at is not an ISO 8601 time: {value!r}"


@pytest.mark.parametrize(
    ("value", "utc"),
    [
        ("2026-01-31T17:00:00Z", datetime(2026, 1, 31, 17, 0, tzinfo=UTC)),
        # The other separators and forms ISO 8601 / RFC 3339 allow.
        ("2026-01-31t17:00:00Z", datetime(2026, 1, 31, 17, 0, tzinfo=UTC)),
        ("2026-01-31 17:00:00+01:00", datetime(2026, 1, 31, 16, 0, tzinfo=UTC)),
        ("20260131T170000Z", datetime(2026, 1, 31, 17, 0, tzinfo=UTC)),
        ("2026-W05-6T17:00:00Z", datetime(2026, 1, 31, 17, 0, tzinfo=UTC)),
        ("2026-01-31T17:00:00+02:00", datetime(2026, 1, 31, 15, 0, tzinfo=UTC)),
        ("2026-01-31T17:00:00-05:30", datetime(2026, 1, 31, 22, 30, tzinfo=UTC)),
        # The edges of what can be stored and read back in any zone: both are accepted.
        ("0001-01-01T16:00:00Z", datetime(1, 1, 1, 16, 0, tzinfo=UTC)),
        ("0001-01-02T00:00:00+08:00", datetime(1, 1, 1, 16, 0, tzinfo=UTC)),
        ("9999-12-31T07:59:59.999999Z", datetime(9999, 12, 31, 7, 59, 59, 999999, tzinfo=UTC)),
        ("9999-12-30T23:59:59.999999-08:00", datetime(9999, 12, 31, 7, 59, 59, 999999, tzinfo=UTC)),
    ],
)
def test_an_effective_at_with_an_offset_is_returned_in_utc(value: str, utc: datetime) -> None:
    parsed = _parse_time(value, "effective_at")
    assert parsed == utc
    assert parsed.utcoffset() == timedelta(0)
    assert parsed.isoformat() == utc.isoformat()


@pytest.fixture
def local_zone_far_from_utc() -> Iterator[None]:
    """The process's local zone set to UTC+05:45 (a POSIX TZ string: no tz database needed)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TZ", "NPT-05:45")
        time.tzset()
        try:
            yield
        finally:
            mp.undo()
            time.tzset()


@pytest.mark.usefixtures("local_zone_far_from_utc")
def test_effective_at_is_converted_to_utc_not_to_the_process_local_zone() -> None:
    assert datetime(2026, 1, 31, 12, 0, tzinfo=UTC).astimezone().utcoffset() == timedelta(hours=5, minutes=45)
    parsed = parse(body(effective_at="2026-01-31T17:00:00+02:00")).effective_at
    assert parsed.utcoffset() == timedelta(0)
    assert parsed.isoformat() == "2026-01-31T15:00:00+00:00"


RANGE = "it must lie between 0001-01-01T16:00:00+00:00 and 9999-12-31T07:59:59.999999+00:00 in UTC"


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("0001-01-01T15:59:59.999999Z", "'0001-01-01T15:59:59.999999Z'"),
        ("0001-01-01T00:00:00+01:00", "'0001-01-01T00:00:00+01:00'"),  # before year 1 in UTC
        ("9999-12-31T08:00:00Z", "'9999-12-31T08:00:00Z'"),
        ("9999-12-31T23:59:59-01:00", "'9999-12-31T23:59:59-01:00'"),  # after year 9999 in UTC
        # 42 characters, echoed cut at 40.
        ("9999-12-31T08:00:00.000000+00:00:00.000000", "'9999-12-31T08:00:00.000000+00:00:00.0000'"),
    ],
)
def test_an_effective_at_outside_the_storable_range_is_422_naming_effective_at_and_the_range(
    value: str, shown: str
) -> None:
    exc = rejected(lambda: parse(body(effective_at=value)))
    assert exc.status == 422
    assert exc.message == f"effective_at {shown} is out of range: {RANGE}"


# --- _job_for: the job an accepted event starts ------------------------------------------------


def event(kind: HREventType, effective_at: datetime) -> HREvent:
    return HREvent("evt-7", kind, "E7", None, effective_at, NOW, NOW)


LEASE = timedelta(seconds=45)


@pytest.mark.parametrize(
    ("kind", "effective_at", "job_kind"),
    [
        (HREventType.TERMINATED, NOW, JobKind.TERMINATE),  # due now: not in the future
        (HREventType.TERMINATED, NOW - timedelta(days=3), JobKind.TERMINATE),
        (HREventType.REHIRED, NOW + timedelta(days=3), JobKind.REHIRE),  # only terminations wait
        (HREventType.UPDATED, NOW + timedelta(days=3), JobKind.UPDATE),
    ],
)
def test_an_event_due_now_or_past_queues_a_job_owned_by_this_node_for_one_lease(
    kind: HREventType, effective_at: datetime, job_kind: JobKind
) -> None:
    job = _job_for(event(kind, effective_at), NOW, "node-a", LEASE)
    assert (job.kind, job.state, job.employee_id, job.event_id, job.created_at) == (
        job_kind,
        JobState.QUEUED,
        "E7",
        "evt-7",
        NOW,
    )
    assert job.due_at is None
    assert job.node == "node-a"
    assert job.lease_expires_at == NOW + timedelta(seconds=45)


@pytest.mark.parametrize("ahead", [timedelta(microseconds=1), timedelta(days=30)])
def test_a_future_termination_is_scheduled_for_its_time_unowned_and_without_a_lease(ahead: timedelta) -> None:
    job = _job_for(event(HREventType.TERMINATED, NOW + ahead), NOW, "node-a", LEASE)
    assert (job.kind, job.state, job.due_at) == (JobKind.TERMINATE, JobState.SCHEDULED, NOW + ahead)
    assert job.node == ""
    assert job.lease_expires_at is None


# --- job_json: what the job API shows -----------------------------------------------------------


def test_job_json_shows_every_field_of_a_job_with_its_actions_and_takeovers() -> None:
    t = [NOW + timedelta(minutes=m) for m in range(8)]
    job = Job(
        job_id="job-1",
        kind=JobKind.TERMINATE,
        employee_id="E1",
        state=JobState.FAILED,
        created_at=t[0],
        event_id="evt-1",
        due_at=t[1],
        started_at=t[2],
        finished_at=t[3],
        node="node-b",
        run_id="run-1",
        error="revocation refused: blast radius",
        detail="2 of 3 applied",
        actions=(
            JobAction("act-1", "find-1", "github", "remove_member", "applied"),
            JobAction("act-2", None, "aws", "delete_key", "failed", "AccessDenied"),
        ),
        lease_expires_at=t[4],
        attempts=3,
        takeovers=(Takeover(t[5], "node-a", "node-b", JobState.RUNNING, t[6]),),
        next_attempt_at=t[7],
    )
    assert job_json(job, EventStatus.APPLIED) == {
        "job_id": "job-1",
        "kind": "terminate",
        "state": "failed",
        "employee_id": "E1",
        "event_id": "evt-1",
        "event_status": "applied",
        "outcome": "refused",
        "created_at": "2026-03-02T12:00:00+00:00",
        "due_at": "2026-03-02T12:01:00+00:00",
        "started_at": "2026-03-02T12:02:00+00:00",
        "finished_at": "2026-03-02T12:03:00+00:00",
        "run_id": "run-1",
        "error": "revocation refused: blast radius",
        "detail": "2 of 3 applied",
        "actions": [
            {
                "action_id": "act-1",
                "finding_id": "find-1",
                "source": "github",
                "action": "remove_member",
                "status": "applied",
                "error": None,
            },
            {
                "action_id": "act-2",
                "finding_id": None,
                "source": "aws",
                "action": "delete_key",
                "status": "failed",
                "error": "AccessDenied",
            },
        ],
        "owner": "node-b",
        "lease_expires_at": "2026-03-02T12:04:00+00:00",
        "attempts": 3,
        "next_attempt_at": "2026-03-02T12:07:00+00:00",
        "takeovers": [
            {
                "at": "2026-03-02T12:05:00+00:00",
                "previous_owner": "node-a",
                "new_owner": "node-b",
                "from_state": "running",
                "lease_expired_at": "2026-03-02T12:06:00+00:00",
            }
        ],
    }


def test_job_json_of_a_fresh_scheduled_job_shows_nulls_and_no_owner() -> None:
    job = Job("job-2", JobKind.TERMINATE, "E2", JobState.SCHEDULED, NOW, event_id="evt-2", due_at=NOW)
    assert job_json(job) == {
        "job_id": "job-2",
        "kind": "terminate",
        "state": "scheduled",
        "employee_id": "E2",
        "event_id": "evt-2",
        "event_status": None,
        "outcome": None,
        "created_at": "2026-03-02T12:00:00+00:00",
        "due_at": "2026-03-02T12:00:00+00:00",
        "started_at": None,
        "finished_at": None,
        "run_id": None,
        "error": None,
        "detail": "",
        "actions": [],
        "owner": None,
        "lease_expires_at": None,
        "attempts": 0,
        "next_attempt_at": None,
        "takeovers": [],
    }
