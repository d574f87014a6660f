"""Plain typed records that cross module boundaries.

Everything here is a frozen dataclass with timezone-aware datetimes. Connectors
produce them, the pure core (matching, evaluation, planning) consumes them and
the storage module maps them to and from SQLModel tables.
"""

from __future__ import annotations

import hashlib
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum


def require_aware(value: datetime | None, what: str) -> None:
    """Refuse naive datetimes: every time in the system carries an offset."""
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(f"{what} must be timezone-aware, got naive {value!r}")


def require_aware_fields(record: object, *names: str) -> None:
    """:func:`require_aware` for the named datetime fields of a record (``__post_init__``); the
    error names ``Class.field``."""
    for name in names:
        require_aware(getattr(record, name), f"{type(record).__name__}.{name}")


# Times are stored in UTC and read back in the reader's time zone (PostgreSQL hands timestamptz
# back in the session's zone, whose offset can reach 15:59). A time closer than that to either
# end of Python's datetime range overflows on one of those steps, so it is not storable.
_ZONE_MARGIN = timedelta(hours=16)
EARLIEST_STORABLE = datetime.min.replace(tzinfo=UTC) + _ZONE_MARGIN
LATEST_STORABLE = datetime.max.replace(tzinfo=UTC) - _ZONE_MARGIN


def storable_time_problem(value: datetime) -> str | None:
    """Why ``value`` cannot be stored and read back in any time zone, or None when it can.

    Refuses naive values and values outside ``EARLIEST_STORABLE``..``LATEST_STORABLE`` once in
    UTC (``9999-12-31T20:00:00-05:00`` is in year 10000 in UTC; ``0001-01-01T00:00:00+05:00``
    in year 0). Inputs that carry times (HR rows, webhook ``effective_at``) check with this and
    reject the row or the request, instead of failing later on insert or on every read.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        return f"{value.isoformat()} has no UTC offset"
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST_STORABLE <= utc <= LATEST_STORABLE:
        return (
            f"{value.isoformat()} is out of range: times must lie between "
            f"{EARLIEST_STORABLE.isoformat()} and {LATEST_STORABLE.isoformat()} in UTC"
        )
    return None


def canonical_identifier(value: str) -> str:
    """An identifier (employee id, email, alias) in one Unicode form: invisible format characters
    (zero-width spaces and joiners, byte order marks, direction marks, soft hyphens) removed, then
    NFC, then trimmed. Pasted or exported text carries both; kept, an address is another string
    than the same address elsewhere, and two people sharing it are no longer seen to."""
    visible = "".join(ch for ch in value if unicodedata.category(ch) != "Cf")
    return unicodedata.normalize("NFC", visible).strip()


def identifier_key(value: str) -> str:
    """An identifier as every comparison of identifiers takes it (``core.matching.normalized``,
    the stored ``person_keys``): :func:`canonical_identifier`, any case. Lower case rather than
    ``casefold``, which would make different addresses one (``strauss@`` and ``strauß@``); NFC
    again after it, as lowering can leave a string that NFC writes otherwise. Look-alike letters
    of other scripts (Cyrillic U+0430 for a Latin "a") stay different: they are other characters."""
    return unicodedata.normalize("NFC", canonical_identifier(value).lower())


class PersonStatus(StrEnum):
    ACTIVE = "active"
    ON_LEAVE = "on_leave"
    TERMINATED = "terminated"


class AccountKind(StrEnum):
    HUMAN = "human"
    SERVICE = "service"


class CredentialKind(StrEnum):
    ACCOUNT = "account"
    PASSWORD = "password"
    ACCESS_KEY = "access_key"
    SSH_KEY = "ssh_key"
    MFA_DEVICE = "mfa_device"
    SIGNING_CERTIFICATE = "signing_certificate"
    SERVICE_CREDENTIAL = "service_credential"
    SERVICE_ACCOUNT_KEY = "service_account_key"
    IAM_BINDING = "iam_binding"
    GROUP_MEMBERSHIP = "group_membership"
    # Exposure kinds (core/exposure.py): secrets and keys a person could carry away, and the trust
    # policy of a role (persistence left for another identity).
    SECRET = "secret"
    PARAMETER = "parameter"
    KMS_KEY = "kms_key"
    TRANSIT_KEY = "transit_key"
    KV_SECRET = "kv_secret"
    TRUST_POLICY = "trust_policy"
    # Code hosts (the github connector): a fine-grained personal access token's access to an
    # organisation, a SAML SSO authorization of a token or SSH key, a pending invitation (a live
    # way in for whoever accepts it), and a repository deploy key (persistence a leaver can leave).
    PERSONAL_ACCESS_TOKEN = "personal_access_token"
    SSO_AUTHORIZATION = "sso_authorization"
    INVITATION = "invitation"
    DEPLOY_KEY = "deploy_key"


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


# Severities are declared least severe first: the rank is that order (INFO 0 .. CRITICAL 4).
_SEVERITY_RANK = {severity: rank for rank, severity in enumerate(Severity)}


class Rule(StrEnum):
    USED_AFTER_TERMINATION = "used-after-termination"
    CREDENTIAL_AFTER_TERMINATION = "credential-after-termination"
    AMBIGUOUS_OWNER = "ambiguous-owner"
    ORPHAN_ACCOUNT = "orphan-account"
    # Exposure rules (core/exposure_rules.py): high; critical for an exported signing key.
    SECRET_EXPOSED_TO_LEAVER = "secret-exposed-to-leaver"
    PERSISTENCE_LEFT_BY_LEAVER = "persistence-left-by-leaver"

    @property
    def severity(self) -> Severity:
        return _RULE_SEVERITY[self]


_RULE_SEVERITY = {
    Rule.USED_AFTER_TERMINATION: Severity.CRITICAL,
    Rule.CREDENTIAL_AFTER_TERMINATION: Severity.HIGH,
    Rule.AMBIGUOUS_OWNER: Severity.MEDIUM,
    Rule.ORPHAN_ACCOUNT: Severity.MEDIUM,
    Rule.SECRET_EXPOSED_TO_LEAVER: Severity.HIGH,
    Rule.PERSISTENCE_LEFT_BY_LEAVER: Severity.HIGH,
}


class FindingStatus(StrEnum):
    OPEN = "open"
    EXEMPTED = "exempted"
    REVOKED = "revoked"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Person:
    """One person from an HR source."""

    employee_id: str
    email: str | None
    name: str
    status: PersonStatus
    terminated_at: datetime | None = None
    aliases: tuple[str, ...] = ()
    source: str = ""
    # The optional HR column ``manager_email``: who rotates what this person could carry away
    # when the secret names no owner. Not stored with the person (taken from each HR read).
    manager_email: str | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        require_aware_fields(self, "terminated_at")

    def is_departed(self, now: datetime) -> bool:
        """Terminated with an effective date that has passed (future dates are not terminations yet)."""
        return (
            self.status is PersonStatus.TERMINATED
            and self.terminated_at is not None
            and self.terminated_at <= now
        )


@dataclass(frozen=True, slots=True)
class Account:
    """One login or principal in a system (an LDAP entry, an IAM user, a service account).

    ``attributes`` carries the raw owner hints the connector read (``("mail", "a@x")``,
    ``("tag:employee_id", "123")``); which of them identify a person is decided by the
    core's matching from the source's match spec, not by the connector.
    """

    source: str
    system: str
    account_id: str
    username: str
    enabled: bool
    kind: AccountKind = AccountKind.HUMAN
    emails: tuple[str, ...] = ()
    display_name: str = ""
    last_login_at: datetime | None = None
    # How coarse last_login_at is (Active Directory's lastLogonTimestamp lags by up to ~14 days).
    last_login_precision: timedelta | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    # Sub-scope of the source: AWS account id, GCP project, LDAP base. Scopes fail independently.
    scope: str = ""
    # The immutable identity the system gave this account, as read: AWS UserId, AD objectGUID,
    # OpenLDAP entryUUID, 389-DS nsUniqueId, GCP service account uniqueId, and for a GCP IAM
    # binding principal ``<type>:<email>`` (the live member string; its ``deleted:`` members share
    # it, the exact member is in the credential id; the project, folder or organization is the
    # scope). Names can be reused after a delete; this cannot, so every revocation re-reads it
    # and refuses on a mismatch.
    uid: str = ""
    # last_login_at is the last known value from an earlier read, kept because the optional
    # enrichment that reads it failed this time (see ``EnrichmentFailure``). Not stored, so left
    # out of repr(), which storage hashes to tell changed snapshot rows.
    last_login_stale: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        require_aware_fields(self, "last_login_at")

    def attribute_values(self, name: str) -> tuple[str, ...]:
        lowered = name.lower()
        return tuple(v for k, v in self.attributes if k.lower() == lowered)


@dataclass(frozen=True, slots=True)
class Credential:
    """Something that grants access and can be revoked on its own."""

    source: str
    account_id: str
    credential_id: str
    kind: CredentialKind
    active: bool
    created_at: datetime | None = None
    last_used_at: datetime | None = None
    # Free text that says what this is (a group name, a role, a key fingerprint).
    detail: str = ""
    # When the data was true: the AWS credential report can be up to 4 hours old.
    observed_at: datetime | None = None
    last_used_precision: timedelta | None = None
    scope: str = ""
    # The id is a placeholder from a bulk listing (a credential-report slot such as
    # ``report/access_key_1``), not the system's own id. The detail pass replaces it; a
    # placeholder is never evaluated, planned or shown as evidence.
    provisional: bool = False
    # last_used_at is the last known value from an earlier read, kept because the optional
    # enrichment that reads it failed this time (see ``EnrichmentFailure``). Not stored, so left
    # out of repr(), which storage hashes to tell changed snapshot rows.
    last_used_stale: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        require_aware_fields(self, "created_at", "last_used_at", "observed_at")

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.source, self.account_id, self.credential_id)


@dataclass(frozen=True, slots=True)
class ScopeFailure:
    """One part of a source (an AWS account, a GCP project) that could not be read."""

    scope: str
    error: str


@dataclass(frozen=True, slots=True)
class EnrichmentFailure:
    """An optional enrichment of one scope that could not be read, while the scope itself was.

    Enrichment is evidence a source adds on top of what it lists when asked to (last
    authentication from GCP's Policy Analyzer with ``key_last_auth``): the accounts and
    credentials of the scope are current, the evidence is missing. The engine then keeps the
    last known values (marked stale), reports the source ``degraded`` with a warning, and closes
    no finding whose credential is still there: a missing value never resolves or downgrades a
    finding.
    """

    scope: str
    error: str


@dataclass(frozen=True, slots=True)
class SourceData:
    """What an account source read. ``failed_scopes`` lists parts that failed while others worked;
    ``enrichment_failures`` parts that were read without their optional enrichment."""

    accounts: tuple[Account, ...] = ()
    credentials: tuple[Credential, ...] = ()
    failed_scopes: tuple[ScopeFailure, ...] = ()
    warnings: tuple[str, ...] = ()
    # Scopes that were read (successfully or not); lets storage keep stale data per scope.
    scopes: tuple[str, ...] = ()
    enrichment_failures: tuple[EnrichmentFailure, ...] = ()


@dataclass(frozen=True, slots=True)
class RowProblem:
    """A bad input row that was skipped, with where it came from and the employee id it names
    ("" when it has none): that person's last good record is kept instead."""

    line: int
    message: str
    employee_id: str = ""


@dataclass(frozen=True, slots=True)
class HRRead:
    people: tuple[Person, ...]
    problems: tuple[RowProblem, ...] = ()


@dataclass(frozen=True, slots=True)
class Link:
    """The result of matching one account against the HR people."""

    account: Account
    people: tuple[Person, ...]
    matched_by: str = ""

    @property
    def person(self) -> Person | None:
        return self.people[0] if len(self.people) == 1 else None

    @property
    def ambiguous(self) -> bool:
        return len(self.people) > 1


def finding_id(rule: Rule, source: str, account_id: str, credential_id: str | None) -> str:
    """Stable id: the same credential and rule give the same id in every run."""
    raw = "\x1f".join((rule.value, source, account_id, credential_id or ""))
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:20]


class ExposureHow(StrEnum):
    """How a person was exposed to a secret or key (design.md, "Exposure")."""

    READ = "read"
    CREATED = "created"
    EXPORTED = "exported"
    CHANGED_ACCESS = "changed-access"
    # Signed or decrypted with a key whose material never leaves its system (a Cloud KMS key):
    # what they made with it stays valid while the key version that made it is enabled.
    USED = "used"


@dataclass(frozen=True, slots=True)
class ExposureAccess:
    """One access of a person to a secret, as an exposure finding lists it (``exposure`` in the
    findings JSON: ``at``, ``how``, ``event_id``; ``action`` is the system's name for it)."""

    at: datetime
    how: ExposureHow
    event_id: str
    action: str = ""

    def __post_init__(self) -> None:
        require_aware_fields(self, "at")


class OwnerVia(StrEnum):
    """Where the owner of a rotate task comes from."""

    OWNER_TAG = "owner-tag"  # the secret's own owner tag / label / metadata
    MANAGER = "manager"  # the leaver's manager (HR column manager_email)
    OBJECT_ADMINS = "object-admins"  # the system's admins of the object (a repository's admins)
    UNASSIGNED = "unassigned"


@dataclass(frozen=True, slots=True)
class RotateOwner:
    """Who should rotate (or remove) what an exposure finding names."""

    via: OwnerVia
    email: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    finding_id: str
    rule: Rule
    severity: Severity
    status: FindingStatus
    account: Account
    person: Person | None
    credential: Credential | None
    first_seen: datetime
    due_at: datetime | None
    reason: str
    candidates: tuple[Person, ...] = ()
    exemption_id: str | None = None
    stale: bool = False
    # Exposure rules only: each access of the leaver (oldest first) and who should rotate it.
    exposure: tuple[ExposureAccess, ...] = ()
    owner: RotateOwner | None = None

    def __post_init__(self) -> None:
        require_aware_fields(self, "first_seen", "due_at")

    @property
    def source(self) -> str:
        return self.account.source

    @property
    def system(self) -> str:
        return self.account.system


@dataclass(frozen=True, slots=True)
class Exemption:
    exemption_id: str
    selector: str
    reason: str
    until: datetime
    created_by: str
    created_at: datetime
    # Set by `exempt remove`: a removed exemption is kept (the audit log and `exempt list --all`
    # show it) but no longer applies.
    removed_at: datetime | None = None

    def __post_init__(self) -> None:
        require_aware_fields(self, "until", "created_at", "removed_at")

    def active(self, now: datetime) -> bool:
        return self.until > now and (self.removed_at is None or self.removed_at > now)

    def state(self, now: datetime) -> str:
        """``removed``, ``expired`` or ``active`` at ``now``; a removal wins over an expiry,
        because it is what someone did."""
        if self.removed_at is not None and self.removed_at <= now:
            return "removed"
        return "active" if self.until > now else "expired"
