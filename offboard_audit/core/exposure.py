"""The exposure ledger's records: what a person did to secrets and keys, and what those are now.

Accounts are not the whole story (design.md, "Exposure"): a leaver whose logins were all revoked
may still hold a signing key they read or exported. Exposure sources (the ``aws_iam`` source's
``[sources.exposure]`` table, a Vault/OpenBao source, Cloud Audit Logs) read two things:

- **events** (:class:`ExposureEvent`): one access of an identity (:class:`Actor`) to a secret or
  key, or one object it created for another identity (:class:`ObjectRef`), read incrementally
  from a log (CloudTrail files, the Vault audit log, Cloud Audit Logs) in :class:`EventBatch`-es,
  each ending at a :class:`Checkpoint` that the engine stores with the batch's events;
- an **inventory**: the secrets and keys as they are now (:class:`SecretState`) and, for the
  objects the leavers' events name, whether they still exist (:class:`PersistenceState`).

Connectors build these (plain frozen records, tz-aware times) and decide nothing about people:
matching actors and the two rules are ``exposure_rules.py``, rotate tasks ``rotation.py``.
Nothing here ever holds a secret value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from offboard_audit.core.records import (
    CredentialKind,
    ExposureHow,
    ScopeFailure,
    require_aware_fields,
)

# Kinds whose findings name a secret or key (rule secret-exposed-to-leaver).
SECRET_KINDS = frozenset(
    {
        CredentialKind.SECRET,
        CredentialKind.PARAMETER,
        CredentialKind.KMS_KEY,
        CredentialKind.TRANSIT_KEY,
        CredentialKind.KV_SECRET,
    }
)
# Kinds of objects a leaver can leave behind for another identity (persistence-left-by-leaver).
PERSISTENCE_KINDS = frozenset(
    {
        CredentialKind.ACCOUNT,
        CredentialKind.ACCESS_KEY,
        CredentialKind.PASSWORD,
        CredentialKind.TRUST_POLICY,
        CredentialKind.IAM_BINDING,
        CredentialKind.SERVICE_ACCOUNT_KEY,
        # A repository deploy key (GitHub): whoever holds its private key keeps read (or write)
        # access to the repository, whatever becomes of the account that added it.
        CredentialKind.DEPLOY_KEY,
        # A certificate issued (with its private key) or signed for the caller: valid until it
        # expires or is revoked (a Vault/OpenBao PKI issue).
        CredentialKind.SIGNING_CERTIFICATE,
    }
)

_EXPOSURE_SCOPE = "exposure:"

# A grantee that is an account the key's own policy lets use it (``policy:210987654321``;
# ``policy:*`` for any account), not the principal of a grant: both end only when revoked, but
# each in its own place (the policy, the grant).
POLICY_GRANTEE_PREFIX = "policy:"


def exposure_scope(scope: str) -> str:
    """The scope exposure findings of ``scope`` (an AWS account, a GCP project) are stored under.

    Kept apart from the account scope: a CloudTrail object that cannot be read makes the
    exposure of that account stale without holding back the revocation of its IAM keys.
    """
    return scope if scope.startswith(_EXPOSURE_SCOPE) else f"{_EXPOSURE_SCOPE}{scope}"


def base_scope(scope: str) -> str:
    """The system's own scope of an exposure scope (``exposure:123456789012`` -> the account)."""
    return scope[len(_EXPOSURE_SCOPE) :] if scope.startswith(_EXPOSURE_SCOPE) else scope


@dataclass(frozen=True, slots=True)
class Actor:
    """The identity that acted in an event, as the system reported it.

    ``identity`` is stable across events of the same identity and differs between identities
    that share a name (an IAM user's UserId, an assumed-role session ARN with the session's
    source identity, a Vault entity id): the events of one identity are never another's.
    ``account_id`` is the ``Account.account_id`` of the account source when the actor is one of
    its accounts (an IAM user): the actor is then matched as that account is (tags, owners map).
    ``uid`` is that account's immutable id (``Account.uid``) when the system logs it (an IAM
    user's UserId): the actor is then linked by it, never to an account that holds its
    ``account_id`` under another uid (a user re-created under the same name). ``names`` are the
    other identifiers to match on, strongest first (a session's ``sourceIdentity``,
    ``onBehalfOf`` user, the session name, a user name, a Vault alias name): each goes through
    the same email/username matching as account names.
    """

    identity: str
    kind: str = ""
    account_id: str = ""
    names: tuple[str, ...] = ()
    uid: str = ""


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """A secret or key (``SECRET_KINDS``) or an object created for an identity
    (``PERSISTENCE_KINDS``), in one scope.

    ``owner`` is the identity the object belongs to (the IAM user of an access key or login
    profile, the role of a trust policy; "" for secrets, except the principal of another account
    a ``changed-access`` event gave the use of a key to: a grant's grantee, or
    ``POLICY_GRANTEE_PREFIX`` + the account a key policy the event set lets use the key; while
    the key's ``SecretState.grantees`` holds it, the key is exposed). ``fingerprint`` says which version of
    it the event made (the ``UserId`` a CreateUser returned, a digest of the trust policy set),
    so that the inventory can tell the leaver's object from one re-created since.
    """

    scope: str
    kind: CredentialKind
    object_id: str
    owner: str = ""
    fingerprint: str = ""

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.scope, self.kind.value, self.object_id)


@dataclass(frozen=True, slots=True)
class ExposureEvent:
    """One access of ``actor`` to ``target`` (``how``), at ``at``, as event ``event_id`` of the
    system's log (CloudTrail ``eventID``, a Vault request id). ``action`` is the system's name
    for the call (``GetSecretValue``); ``stream`` the log stream it came from (a trail prefix)."""

    source: str
    scope: str
    event_id: str
    at: datetime
    action: str
    how: ExposureHow
    actor: Actor
    target: ObjectRef
    stream: str = ""

    def __post_init__(self) -> None:
        require_aware_fields(self, "at")


@dataclass(frozen=True, slots=True)
class SecretState:
    """A secret or key as it is now (the inventory).

    ``current_version_created_at``: when the value in use was made (Secrets Manager's
    ``AWSCURRENT`` version, an SSM parameter's last version, a transit key's latest version).
    ``oldest_enabled_version_created_at``: for systems where older versions stay usable until
    disabled (Vault's ``min_decryption_version``, Secret Manager's enabled versions), the oldest
    one still usable; None where the current version alone counts. ``exportable``: the key
    material can leave the system (a secret value, an imported or exportable key), so a read or
    creation hands it over; an AWS-generated KMS key only leaves through an export.
    ``signing``: a signing key (a KMS SIGN_VERIFY key, a secret tagged as one): exported, it is
    critical. ``grantees``: identities holding a live grant to use it (KMS grants), and
    ``POLICY_GRANTEE_PREFIX`` + each other account its resource policy lets use it now.
    ``aliases``: the other ids events may name it by (a Secrets Manager name or partial ARN, a
    KMS key id, an SSM path pattern such as ``us-east-1:/app/*`` that a read by path covers);
    an event's ``ObjectRef.object_id`` equal to ``secret_id`` or to an alias names this secret.
    """

    source: str
    scope: str
    kind: CredentialKind
    secret_id: str
    name: str = ""
    owner: str | None = None
    created_at: datetime | None = None
    current_version_created_at: datetime | None = None
    oldest_enabled_version_created_at: datetime | None = None
    enabled: bool = True
    rotation_configured: bool = False
    exportable: bool = True
    signing: bool = False
    grantees: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        require_aware_fields(
            self, "created_at", "current_version_created_at", "oldest_enabled_version_created_at"
        )

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.scope, self.kind.value, self.secret_id)


@dataclass(frozen=True, slots=True)
class PersistenceState:
    """Whether an object a leaver's event made (``ref``) is still in place.

    ``present``: it exists and is the one the event made (same fingerprint) and usable (an
    active access key). ``detail`` says what was found (``"trust policy names account
    210987654321"``).
    """

    source: str
    ref: ObjectRef
    present: bool
    detail: str = ""
    # Who should remove it, when the system names someone (a repository's admins for a deploy
    # key): the remove task goes to them before the leaver's manager.
    remove_by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """How far one event stream has been read. ``position`` is the source's own (the last S3
    key read, a file offset, a timestamp); ``recent`` what it needs to not read twice what sits
    just before the position (objects read inside the late-delivery overlap)."""

    stream: str
    position: str
    recent: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class EventBatch:
    """What one step of reading a stream gave (one log object, or a page of entries).

    The engine stores ``events`` and ``checkpoint`` in one transaction, so a crash never skips
    or doubles a batch. A batch with ``failure`` carries no events and no new checkpoint: the
    stream stops there for this run and its scope is failed (stale data kept, nothing resolved).
    ``events_seen`` counts every event of the log read (relevant or not), ``bytes_read`` the
    bytes fetched, ``objects_read`` the objects (files) fetched.
    """

    stream: str
    scope: str
    events: tuple[ExposureEvent, ...] = ()
    checkpoint: Checkpoint | None = None
    failure: ScopeFailure | None = None
    events_seen: int = 0
    bytes_read: int = 0
    objects_read: int = 0


def arn_region(secret_id: str) -> str:
    """The region of an AWS ARN (``arn:partition:service:region:account:resource``); "" for an id
    that is no ARN or names no region."""
    parts = secret_id.split(":", 5)
    return parts[3] if len(parts) == 6 and parts[0] == "arn" else ""


@dataclass(frozen=True, slots=True)
class SecretListing:
    """One listing an inventory made in full in every scope it read: every secret or key of
    ``kind`` there, or only those of ``region`` when set (an AWS region: the one in the secret's
    ARN). What no listing covers was not read: a service or region switched off is no proof that
    its secrets were rotated or deleted."""

    kind: CredentialKind
    region: str = ""

    def covers(self, kind: CredentialKind, secret_id: str) -> bool:
        return kind is self.kind and (not self.region or arn_region(secret_id) == self.region)


@dataclass(frozen=True, slots=True)
class InventoryRead:
    """The inventory of every scope: ``scopes`` were read (successfully or not; failed ones are in
    ``failed_scopes`` and keep their last stored inventory, marked stale).

    ``listed`` says which secrets and keys the read scopes' listings covered; None: all of them
    (a reader that always lists everything it knows). A stored secret no listing covers is kept
    as last read, and findings judged on it are stale.
    """

    secrets: tuple[SecretState, ...] = ()
    objects: tuple[PersistenceState, ...] = ()
    scopes: tuple[str, ...] = ()
    failed_scopes: tuple[ScopeFailure, ...] = ()
    warnings: tuple[str, ...] = ()
    listed: tuple[SecretListing, ...] | None = None

    def lists(self, kind: CredentialKind, secret_id: str) -> bool:
        """Whether this read's listings cover a secret of ``kind`` with id ``secret_id``."""
        return self.listed is None or any(x.covers(kind, secret_id) for x in self.listed)


# --- which versions an access exposed -----------------------------------------------------------

# A log dates a call from when it began (CloudTrail to the second: "...:05Z"), and a call that
# writes a value makes its version during the call (AWS stamps it "...:05.350"): a version
# created this soon after a write is the one the write made, never a rotation after it.
MADE_BY_THE_CALL = timedelta(minutes=1)


def exposed_through(at: datetime, how: ExposureHow) -> datetime:
    """The latest creation time of a version an access at ``at`` (``how``) handed over: ``at``
    for a read, an export or a use, the end of the call for a write (the version it made)."""
    return at + MADE_BY_THE_CALL if how is ExposureHow.CREATED else at


# --- the secret detail shared by the finding and the rotate action ------------------------------

_EXPOSED_UNTIL = "exposed until "
# Access the leaver gave another account (a grant, a key policy) that is still in force; a
# version made later does not end it. "only": the leaver had nothing a rotation would take back.
_ACCESS_GIVEN_TO = "access given to "
_ONLY_ACCESS_GIVEN_TO = "exposed only through access given to "


def secret_detail(
    name: str,
    exposed_until: datetime,
    rotation_configured: bool,
    access_given_to: Sequence[str] = (),
    material: bool = True,
) -> str:
    """The ``Credential.detail`` of a secret in an exposure finding. A rotate action reads the
    time back with :func:`exposed_until`: a version made after it ends the exposure.

    ``access_given_to`` names the holders of access the leaver gave away that is still in force
    (a grant's grantee, ``POLICY_GRANTEE_PREFIX`` + an account a key policy lets in);
    ``material`` says whether the leaver also had what a rotation takes back (a value read or
    written, exported material, a signature made). Without it the finding is exposed only
    through that access (:func:`exposed_only_through_access`): revoking it is the task, not a
    rotation."""
    rotation = "rotation configured" if rotation_configured else "no rotation configured"
    # The name comes first and is whatever the object's maker wrote (a KMS key's description):
    # kept to one field, so that it cannot pass for the fields the readers below parse.
    name = name.replace("; ", ", ")
    out = f"{name}; {rotation}; {_EXPOSED_UNTIL}{exposed_until.isoformat()}"
    if access_given_to:
        holders = ", ".join(
            f"account {h.removeprefix(POLICY_GRANTEE_PREFIX)} (key policy)"
            if h.startswith(POLICY_GRANTEE_PREFIX)
            else f"{h} (grant)"
            for h in access_given_to
        )
        out += f"; {_ACCESS_GIVEN_TO if material else _ONLY_ACCESS_GIVEN_TO}{holders}"
    return out


def _fields(detail: str) -> list[str]:
    """The fields of a :func:`secret_detail` after the name (which is never read as one)."""
    return detail.split("; ")[1:]


def exposed_only_through_access(detail: str) -> bool:
    """Whether a secret detail of :func:`secret_detail` says the secret is exposed only through
    access given to another account (rotating it would leave that access in place)."""
    return any(part.startswith(_ONLY_ACCESS_GIVEN_TO) for part in _fields(detail))


def exposed_until(detail: str) -> datetime | None:
    """The last exposure written by :func:`secret_detail`, or None."""
    for part in _fields(detail):
        if part.startswith(_EXPOSED_UNTIL):
            try:
                value = datetime.fromisoformat(part[len(_EXPOSED_UNTIL) :])
            except ValueError:
                return None
            return value if value.tzinfo is not None else None
    return None


def rotation_configured(detail: str) -> bool:
    """Whether a secret detail of :func:`secret_detail` says its rotation is configured."""
    return "rotation configured" in _fields(detail)
