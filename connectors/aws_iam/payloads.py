"""Raw IAM payloads as typed values: the credential report and ``GetAccountAuthorizationDetails``
user entries (``translate.py`` turns these into the core's records).

Pure functions over raw API payloads: no I/O, no boto3. The credential report is a CSV
(``GetCredentialReport``'s ``Content``) with one row per IAM user plus, on real AWS, a
``<root_account>`` row. Its sentinel values mean different things and must not be read as dates:

- ``N/A``: the thing does not exist (no access key in that slot, no password), or a key that
  was never used;
- ``no_information``: a password exists but was never used (or not since October 2014);
- ``not_supported``: the column does not apply (the root row's password fields, moto's regions).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

ROOT_ROW = "<root_account>"
_SENTINELS = frozenset({"", "N/A", "no_information", "not_supported"})


def parse_report_time(value: str | None) -> datetime | None:
    """An ISO 8601 report timestamp, or ``None`` for the report's sentinel values."""
    if value is None:
        return None
    text = value.strip()
    if text in _SENTINELS:
        return None
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    # The report is documented as UTC; a bare timestamp is taken as UTC rather than local time.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _flag(value: str | None) -> bool | None:
    """``true``/``false`` as a bool; ``None`` for ``not_supported`` and other sentinels."""
    if value is None:
        return None
    text = value.strip().lower()
    if text == "true":
        return True
    if text == "false":
        return False
    return None


def _text(value: str | None) -> str | None:
    if value is None or value.strip() in _SENTINELS:
        return None
    return value.strip()


@dataclass(frozen=True, slots=True)
class ReportKey:
    """One access key slot (1 or 2) of a report row. The report never gives the key id."""

    slot: int
    active: bool
    last_rotated: datetime | None
    last_used: datetime | None
    last_used_region: str | None
    last_used_service: str | None


@dataclass(frozen=True, slots=True)
class ReportCert:
    slot: int
    active: bool
    last_rotated: datetime | None


@dataclass(frozen=True, slots=True)
class ReportRow:
    user: str
    arn: str
    created_at: datetime | None
    # None for the root row, whose password columns are ``not_supported``.
    password_enabled: bool | None
    password_last_used: datetime | None
    password_last_changed: datetime | None
    mfa_active: bool
    keys: tuple[ReportKey, ...]
    certs: tuple[ReportCert, ...]

    @property
    def has_signing_certificate(self) -> bool:
        return bool(self.certs)


@dataclass(frozen=True, slots=True)
class CredentialReport:
    generated_at: datetime
    rows: Mapping[str, ReportRow]
    root: ReportRow | None = None

    def row_for(self, user: UserDetail) -> ReportRow | None:
        """The row of ``user``, or None when the report has none for this very user.

        Rows are keyed by name, and AWS serves one report for up to four hours: a user deleted
        and re-created under the same name since then has the old user's row, whose password,
        MFA and certificate columns say nothing about the new one. The creation times (the
        report has whole seconds) tell them apart."""
        row = self.rows.get(user.name)
        if row is None or row.created_at is None or user.created_at is None:
            return row
        if row.created_at.replace(microsecond=0) != user.created_at.replace(microsecond=0):
            return None
        return row


def _slot(raw: Mapping[str, str], prefix: str) -> tuple[bool, datetime | None] | None:
    """(active, last rotated) of one access key or certificate slot, None when the slot is empty.

    A slot exists when it has a rotation (creation) date, which an inactive key still has, or
    when it is active: moto leaves last_rotated at N/A even for an existing certificate."""
    active = _flag(raw.get(prefix + "active")) is True
    rotated = parse_report_time(raw.get(prefix + "last_rotated"))
    return None if rotated is None and not active else (active, rotated)


def _key_slot(raw: Mapping[str, str], slot: int) -> ReportKey | None:
    prefix = f"access_key_{slot}_"
    found = _slot(raw, prefix)
    if found is None:
        return None
    return ReportKey(
        slot=slot,
        active=found[0],
        last_rotated=found[1],
        last_used=parse_report_time(raw.get(prefix + "last_used_date")),
        last_used_region=_text(raw.get(prefix + "last_used_region")),
        last_used_service=_text(raw.get(prefix + "last_used_service")),
    )


def _cert_slot(raw: Mapping[str, str], slot: int) -> ReportCert | None:
    found = _slot(raw, f"cert_{slot}_")
    return None if found is None else ReportCert(slot=slot, active=found[0], last_rotated=found[1])


def parse_report_row(raw: Mapping[str, str]) -> ReportRow:
    keys = tuple(k for k in (_key_slot(raw, 1), _key_slot(raw, 2)) if k is not None)
    certs = tuple(c for c in (_cert_slot(raw, 1), _cert_slot(raw, 2)) if c is not None)
    return ReportRow(
        user=raw["user"],
        arn=raw["arn"],
        created_at=parse_report_time(raw.get("user_creation_time")),
        password_enabled=_flag(raw.get("password_enabled")),
        password_last_used=parse_report_time(raw.get("password_last_used")),
        password_last_changed=parse_report_time(raw.get("password_last_changed")),
        mfa_active=_flag(raw.get("mfa_active")) is True,
        keys=keys,
        certs=certs,
    )


def parse_credential_report(content: bytes | str, generated_at: datetime) -> CredentialReport:
    """Parse the CSV ``Content`` of ``GetCredentialReport``."""
    text = content.decode("utf-8") if isinstance(content, bytes) else content
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or "user" not in reader.fieldnames or "arn" not in reader.fieldnames:
        raise ValueError("credential report has no 'user'/'arn' header")
    rows: dict[str, ReportRow] = {}
    root: ReportRow | None = None
    for raw in reader:
        # DictReader pads a short row with None and files extra values under None: a row cut
        # off (or shifted) would read as "no key, no certificate, no MFA" in the missing columns.
        if None in raw or any(value is None for value in raw.values()):
            found = sum(v is not None for k, v in raw.items() if k is not None) + len(raw.get(None) or ())
            raise ValueError(
                f"credential report line {reader.line_num}: {found} values where the header has "
                f"{len(reader.fieldnames)} columns: the report is cut off or malformed"
            )
        row = parse_report_row(raw)
        if row.user == ROOT_ROW:
            root = row
        else:
            rows[row.user] = row
    return CredentialReport(generated_at=as_aware(generated_at), rows=rows, root=root)


def as_aware(value: datetime) -> datetime:
    """botocore returns tz-aware datetimes (tzutc/tzlocal); normalise to UTC, refuse nothing."""
    if value.tzinfo is None or value.utcoffset() is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def opt_time(value: Any) -> datetime | None:
    """A timestamp field of a boto3 response (datetime, or an ISO string in fixtures)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return as_aware(value)
    if isinstance(value, str):
        return parse_report_time(value)
    raise TypeError(f"not a timestamp: {value!r}")


@dataclass(frozen=True, slots=True)
class UserDetail:
    """One entry of ``GetAccountAuthorizationDetails(Filter=["User"])``'s ``UserDetailList``."""

    name: str
    user_id: str
    arn: str
    path: str
    created_at: datetime | None
    tags: tuple[tuple[str, str], ...]
    groups: tuple[str, ...]
    attached_policies: tuple[str, ...]
    inline_policies: tuple[str, ...]


def parse_user_detail(raw: Mapping[str, Any]) -> UserDetail:
    return UserDetail(
        name=raw["UserName"],
        user_id=raw["UserId"],
        arn=raw["Arn"],
        path=raw.get("Path") or "/",
        created_at=opt_time(raw.get("CreateDate")),
        tags=tuple((t["Key"], t["Value"]) for t in raw.get("Tags") or ()),
        groups=tuple(raw.get("GroupList") or ()),
        attached_policies=tuple(p["PolicyName"] for p in raw.get("AttachedManagedPolicies") or ()),
        inline_policies=tuple(p["PolicyName"] for p in raw.get("UserPolicyList") or ()),
    )


def parse_user_details(pages: Iterable[Mapping[str, Any]]) -> dict[str, UserDetail]:
    users: dict[str, UserDetail] = {}
    for page in pages:
        for raw in page.get("UserDetailList") or ():
            detail = parse_user_detail(raw)
            users[detail.name] = detail
    return users
