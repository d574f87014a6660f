"""What differs between OpenLDAP, Active Directory and 389 Directory Server.

Each :class:`Dialect` names the attributes that carry an entry's enabled state, its last
login and its owner hints, and knows how to read them from raw attribute values (bytes, as
the wire carries them: ldap3's formatters choke on ppolicy's permanent-lock year 0000, and
raw bytes are the same for a real server and ldap3's mock). Pure functions, no I/O.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone

RawAttrs = Mapping[str, Sequence[bytes]]

# ppolicy's "locked until an administrator unlocks it" value (RFC draft behera, OpenLDAP 2.5).
PPOLICY_PERMANENT_LOCK = "000001010000Z"
# Active Directory's userAccountControl flag ACCOUNTDISABLE.
UAC_ACCOUNTDISABLE = 0x2
# lastLogonTimestamp is replicated only when it is older than msDS-LogonTimeSyncInterval
# (default 14 days, minus up to 5 random days), so it may lag real use by up to ~14 days.
AD_LAST_LOGON_PRECISION = timedelta(days=14)
# 1601-01-01 to 1970-01-01 in 100 ns intervals: Windows FILETIME epoch offset.
_FILETIME_EPOCH_OFFSET = 116444736000000000
# FILETIME "never" markers.
_FILETIME_NEVER = {0, 0x7FFFFFFFFFFFFFFF}


def ppolicy_locked_for_good(value: str | None) -> bool:
    """Whether a ``pwdAccountLockedTime`` value locks the account until an administrator unlocks it.

    Only ppolicy's ``000001010000Z`` does. A real time is what ppolicy writes after
    ``pwdMaxFailure`` failed binds: with a ``pwdLockoutDuration`` in the account's policy (which
    the audit identity cannot see: the default policy lives in cn=config) that lock lifts by
    itself, and the value stays until the next successful bind. Counting it as locked would
    close a leaver's finding (and make ``lock_account`` a no-op) while binds work again.
    """
    return value is not None and value.strip() == PPOLICY_PERMANENT_LOCK


def first(raw: RawAttrs, name: str) -> str | None:
    """The first value of ``name`` (case-insensitive) decoded as UTF-8, or None."""
    values = values_of(raw, name)
    return values[0] if values else None


class LowerAttrs(dict[str, Sequence[bytes]]):
    """Raw attributes keyed by lower-case name: lookups are one dict access (20,000 entries
    times ~20 attribute names add up), instead of a scan of the keys."""

    @classmethod
    def of(cls, raw: RawAttrs) -> LowerAttrs:
        return cls((k.lower(), v) for k, v in raw.items() if v)


def raw_values(raw: RawAttrs, name: str) -> Sequence[bytes]:
    """The undecoded values of ``name`` (case-insensitive), as the wire carried them."""
    lowered = name.lower()
    if isinstance(raw, LowerAttrs):
        return raw.get(lowered) or ()
    for key, values in raw.items():
        if key.lower() == lowered:
            return values
    return ()


def values_of(raw: RawAttrs, name: str) -> list[str]:
    found = raw_values(raw, name)
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in found]


def guid_string(value: bytes | str) -> str:
    """An AD ``objectGUID`` in the form Windows prints it (``[guid]``/``Get-ADUser``):
    lower-case ``xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx``.

    On the wire it is 16 bytes whose first three fields are little-endian (the Windows
    ``GUID`` struct). A value that is already text (a mock, an LDIF dump) is parsed as a GUID.
    """
    if isinstance(value, bytes) and len(value) == 16:
        return str(uuid.UUID(bytes_le=value))
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    try:
        return str(uuid.UUID(text.strip().strip("{}")))
    except ValueError:
        raise ValueError(f"objectGUID is neither 16 bytes nor a GUID string: {value!r}") from None


# Microseconds in the unit a GeneralizedTime fraction divides, by the length of the digits before it
# (yyyymmddhh, yyyymmddhhmm, yyyymmddhhmmss).
_FRACTION_UNIT_US = {10: 3_600_000_000, 12: 60_000_000, 14: 1_000_000}


def parse_generalized_time(text: str) -> datetime | None:
    """Parse LDAP GeneralizedTime (``20260930170000Z``, ``20260930170000.123Z``, ``...+0200``).

    Minutes and seconds are optional (RFC 4517); a fraction is of the last unit given.

    Returns None for values that are not real instants (ppolicy's year 0000 lock marker).
    """
    value = text.strip()
    if not value or value.startswith("0000"):
        return None
    tz: timezone = UTC
    if value.endswith("Z"):
        value = value[:-1]
    elif len(value) > 5 and value[-5] in "+-":
        tz = _offset(value[-5:], text)
        value = value[:-5]
    elif len(value) > 3 and value[-3] in "+-":
        # RFC 4517's g-differential makes the minutes optional: "+02" is "+0200". Refused, it
        # failed the whole LDAP read at the first entry written that way.
        tz = _offset(value[-3:], text)
        value = value[:-3]
    frac = ""
    if "." in value or "," in value:
        value, _, frac = value.replace(",", ".").partition(".")
        if frac and not frac.isdigit():
            raise ValueError(f"not a GeneralizedTime: {text!r}")
    if len(value) not in (10, 12, 14) or not value.isdigit():
        raise ValueError(f"not a GeneralizedTime: {text!r}")
    # RFC 4517: the fraction is of the last unit given, so "2026010112.5Z" is 12:30:00 and
    # "202601011230.5Z" 12:30:30; read as seconds both were off by up to an hour.
    unit_us = _FRACTION_UNIT_US[len(value)]
    fraction_us = (int(frac) * unit_us * 2 + 10 ** len(frac)) // (2 * 10 ** len(frac)) if frac else 0
    # RFC 4517 allows a leap second (second 60), which datetime cannot hold: it is read as the
    # first instant of the next minute. Refused, it failed the whole LDAP read at that entry.
    second = int(value[12:14] or 0)
    leap = second == 60
    # Slicing instead of strptime: this runs for every entry of a large directory.
    parsed = datetime(
        int(value[0:4]),
        int(value[4:6]),
        int(value[6:8]),
        int(value[8:10]),
        int(value[10:12] or 0),
        59 if leap else second,
        tzinfo=tz,
    )
    return (parsed + timedelta(seconds=leap, microseconds=fraction_us)).astimezone(UTC)


def _offset(differential: str, text: str) -> timezone:
    """A GeneralizedTime ``+hh`` or ``+hhmm`` suffix as a fixed offset."""
    digits = differential[1:]
    if not digits.isdigit() or int(digits[:2]) > 23 or int(digits[2:] or 0) > 59:
        raise ValueError(f"not a GeneralizedTime: {text!r}")
    offset = timedelta(hours=int(digits[:2]), minutes=int(digits[2:] or 0))
    return timezone(offset if differential[0] == "+" else -offset)


def parse_filetime(text: str) -> datetime | None:
    """Windows FILETIME (100 ns since 1601-01-01 UTC) as used by lastLogonTimestamp."""
    ticks = int(text.strip())
    if ticks in _FILETIME_NEVER or ticks < _FILETIME_EPOCH_OFFSET:
        return None
    micros = (ticks - _FILETIME_EPOCH_OFFSET) // 10
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)


def to_filetime(when: datetime) -> str:
    """The inverse of :func:`parse_filetime` (for fixtures and the demo)."""
    delta = when.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    return str(micros * 10 + _FILETIME_EPOCH_OFFSET)


def to_generalized_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")


@dataclass(frozen=True)
class Dialect:
    """Attribute names and state rules of one directory flavour."""

    name: str
    # The entry's immutable identity (operational: only returned when asked for by name).
    identity_attribute: str
    # Attributes that hold the state this dialect reads (asked for explicitly: some are operational).
    state_attributes: tuple[str, ...]
    last_login_attributes: tuple[str, ...]
    last_login_precision: timedelta | None
    username_attributes: tuple[str, ...]
    employee_id_attributes: tuple[str, ...]
    email_attributes: tuple[str, ...]
    default_user_filter: str
    service_object_classes: tuple[str, ...]
    group_filter: str

    def identity(self, raw: RawAttrs) -> str | None:
        """The entry's immutable identity as ``Account.uid`` carries it, or None if not readable.

        OpenLDAP ``entryUUID`` and 389-DS ``nsUniqueId`` are text (compared lower-case);
        AD ``objectGUID`` is 16 bytes, turned into the GUID string Windows prints.
        Source and revoker both use this, so what a finding records is what apply compares.
        """
        values = raw_values(raw, self.identity_attribute)
        if not values:
            return None
        value = values[0]
        if self.name == "ad":
            try:
                return guid_string(value)
            except ValueError:
                return None  # not a GUID: treated as unreadable, so nothing is ever revoked by it
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        return text.strip().lower() or None

    def enabled(self, raw: RawAttrs) -> bool:
        """Whether the account can log in, from this dialect's lock attribute."""
        if self.name == "ad":
            uac = first(raw, "userAccountControl")
            return uac is None or not (int(uac) & UAC_ACCOUNTDISABLE)
        if self.name == "389ds":
            lock = first(raw, "nsAccountLock")
            return lock is None or lock.strip().lower() != "true"
        return not ppolicy_locked_for_good(first(raw, "pwdAccountLockedTime"))

    def last_login(self, raw: RawAttrs) -> datetime | None:
        """The latest of this dialect's last-login attributes."""
        latest: datetime | None = None
        for attr in self.last_login_attributes:
            for text in values_of(raw, attr):
                when = parse_filetime(text) if self.name == "ad" else parse_generalized_time(text)
                if when is not None and (latest is None or when > latest):
                    latest = when
        return latest

    def username(self, raw: RawAttrs, dn: str) -> str:
        for attr in self.username_attributes:
            value = first(raw, attr)
            if value:
                return value
        # Fall back to the first RDN value: every entry has one.
        rdn = dn.split(",", 1)[0]
        return rdn.partition("=")[2]


OPENLDAP = Dialect(
    name="openldap",
    identity_attribute="entryUUID",
    state_attributes=("pwdAccountLockedTime",),
    # ppolicy maintains pwdLastSuccess; olcLastBind (or the lastbind overlay) maintains authTimestamp.
    last_login_attributes=("pwdLastSuccess", "authTimestamp"),
    last_login_precision=None,
    username_attributes=("uid", "cn"),
    employee_id_attributes=("employeeNumber",),
    email_attributes=("mail",),
    default_user_filter="(|(objectClass=inetOrgPerson)(objectClass=posixAccount))",
    service_object_classes=("applicationProcess", "simpleSecurityObject"),
    group_filter="(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))",
)

AD = Dialect(
    name="ad",
    identity_attribute="objectGUID",
    state_attributes=("userAccountControl",),
    last_login_attributes=("lastLogonTimestamp",),
    last_login_precision=AD_LAST_LOGON_PRECISION,
    username_attributes=("sAMAccountName", "cn"),
    employee_id_attributes=("employeeID", "employeeNumber"),
    # userPrincipalName looks like an email but is a login name: it goes into the owner hints
    # (PLUGIN.match lists it), not into Account.emails.
    email_attributes=("mail",),
    # objectCategory=person excludes computer accounts (which are also objectClass=user).
    default_user_filter="(&(objectCategory=person)(objectClass=user))",
    service_object_classes=("msDS-ManagedServiceAccount", "msDS-GroupManagedServiceAccount"),
    group_filter="(objectClass=group)",
)

# 389-DS uses OpenLDAP's schema (inetOrgPerson, posixAccount, the same groups): only its
# identity, lock and last-login attributes differ.
DS389 = replace(
    OPENLDAP,
    name="389ds",
    identity_attribute="nsUniqueId",
    state_attributes=("nsAccountLock",),
    last_login_attributes=("lastLoginTime",),
)

DIALECTS: dict[str, Dialect] = {d.name: d for d in (OPENLDAP, AD, DS389)}

# Owner hints read for every dialect: which of them identify a person is the core's matcher's call.
HINT_ATTRIBUTES: tuple[str, ...] = (
    "uid",
    "cn",
    "mail",
    "employeeNumber",
    "employeeID",
    "sAMAccountName",
    "userPrincipalName",
    "displayName",
)
