"""Pure translation and configuration: raw attribute payloads in, records out (no server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from connectors.ldap import PLUGIN
from connectors.ldap.dialects import (
    AD,
    AD_LAST_LOGON_PRECISION,
    DS389,
    OPENLDAP,
    parse_filetime,
    parse_generalized_time,
    to_filetime,
)
from connectors.ldap.revoker import ADRevoker, DS389Revoker, OpenLDAPRevoker
from connectors.ldap.search import person_filter
from connectors.ldap.settings import parse_settings
from connectors.ldap.source import LdapSource
from connectors.ldap.translate import Entry, ssh_fingerprint
from offboard_audit.core.errors import ConfigError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import AccountKind, CredentialKind, Person, PersonStatus
from tests.connectors.ldap.helpers import ED25519_FP, ED25519_KEY, RSA_FP, RSA_KEY, table


def settings_for(dialect: str, **extra: object):  # type: ignore[no-untyped-def]
    opts = SourceOptions(
        table("ldap://127.0.0.1:1", "cn=x,dc=example,dc=org", "dc=example,dc=org", dialect=dialect, **extra)
    )
    return parse_settings(opts, SourceContext(Path("."), env={"LDAP_TEST_PASSWORD": "pw"}), True)


def raw(**attrs: list[str]) -> dict[str, list[bytes]]:
    return {k: [v.encode() for v in vals] for k, vals in attrs.items()}


# --- time formats -------------------------------------------------------------------------


def test_generalized_time_variants_parse_to_aware_utc() -> None:
    assert parse_generalized_time("20260930170000Z") == datetime(2026, 9, 30, 17, 0, tzinfo=UTC)
    assert parse_generalized_time("20260930170000.5Z") == datetime(2026, 9, 30, 17, 0, 0, 500000, tzinfo=UTC)
    assert parse_generalized_time("20260930190000+0200") == datetime(2026, 9, 30, 17, 0, tzinfo=UTC)
    # ppolicy's permanent-lock marker is not an instant.
    assert parse_generalized_time("000001010000Z") is None


# RFC 4517 allows second 60 (a leap second); datetime cannot hold it, and refusing it failed the
# whole LDAP read at the first entry stamped during one.
@pytest.mark.parametrize(
    ("raw_value", "expected"),
    [
        ("20161231235960Z", datetime(2017, 1, 1, 0, 0, tzinfo=UTC)),
        ("20161231235960.5Z", datetime(2017, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),
        ("20170101025960+0300", datetime(2017, 1, 1, 0, 0, tzinfo=UTC)),
    ],
)
def test_a_leap_second_reads_as_the_first_instant_of_the_next_minute(
    raw_value: str, expected: datetime
) -> None:
    assert parse_generalized_time(raw_value) == expected


@pytest.mark.parametrize("raw_value", ["20161231235961Z", "20161231236000Z"])
def test_a_second_past_60_or_a_minute_of_60_is_still_not_a_generalized_time(raw_value: str) -> None:
    with pytest.raises(ValueError, match=r"must be in 0\.\.59"):
        parse_generalized_time(raw_value)


@pytest.mark.parametrize(
    ("raw_value", "expected"),
    [
        # RFC 4517 g-differential: a sign and an hour, the minutes optional.
        ("20260101120000+02", datetime(2026, 1, 1, 10, 0, tzinfo=UTC)),
        ("20260101120000-05", datetime(2026, 1, 1, 17, 0, tzinfo=UTC)),
        ("20260101120000.25+02", datetime(2026, 1, 1, 10, 0, 0, 250000, tzinfo=UTC)),
        ("202601011200+02", datetime(2026, 1, 1, 10, 0, tzinfo=UTC)),
        ("2026010112+02", datetime(2026, 1, 1, 10, 0, tzinfo=UTC)),
    ],
)
def test_generalized_time_with_an_hour_only_offset_parses_like_its_hhmm_form(
    raw_value: str, expected: datetime
) -> None:
    assert parse_generalized_time(raw_value) == expected


@pytest.mark.parametrize(
    ("raw_value", "expected"),
    [
        # RFC 4517: the fraction is of the last unit given (hour, minute or second).
        ("2026010112.5Z", datetime(2026, 1, 1, 12, 0, tzinfo=UTC) + timedelta(hours=0.5)),
        ("2026010112,25Z", datetime(2026, 1, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=15)),
        ("202601011230.5Z", datetime(2026, 1, 1, 12, 30, tzinfo=UTC) + timedelta(seconds=30)),
        ("202601011230.1Z", datetime(2026, 1, 1, 12, 30, tzinfo=UTC) + timedelta(seconds=6)),
        ("20260101123000.5Z", datetime(2026, 1, 1, 12, 30, tzinfo=UTC) + timedelta(milliseconds=500)),
        ("2026010114.75+0200", datetime(2026, 1, 1, 12, 0, tzinfo=UTC) + timedelta(minutes=45)),
        # 0.1 h is 360 s exactly; no float drift into the microseconds.
        ("2026010112.1Z", datetime(2026, 1, 1, 12, 6, tzinfo=UTC)),
    ],
)
def test_generalized_time_fraction_is_of_the_last_unit_given(raw_value: str, expected: datetime) -> None:
    assert parse_generalized_time(raw_value) == expected


def test_generalized_time_with_a_non_digit_fraction_is_refused() -> None:
    with pytest.raises(ValueError, match="not a GeneralizedTime"):
        parse_generalized_time("20260101123000.5xZ")


def test_filetime_round_trips_and_zero_means_never() -> None:
    # 2026-10-12T17:00:00Z computed independently: (unix seconds + 11644473600) * 10^7.
    unix = int(datetime(2026, 10, 12, 17, tzinfo=UTC).timestamp())
    ticks = str((unix + 11644473600) * 10_000_000)
    assert parse_filetime(ticks) == datetime(2026, 10, 12, 17, tzinfo=UTC)
    when = datetime(2025, 1, 2, 3, 4, 5, 678900, tzinfo=timezone(timedelta(hours=-5)))
    assert parse_filetime(to_filetime(when)) == when
    assert parse_filetime("0") is None and parse_filetime("9223372036854775807") is None


def test_ssh_fingerprints_equal_what_ssh_keygen_prints() -> None:
    assert ssh_fingerprint(ED25519_KEY) == ED25519_FP
    assert ssh_fingerprint(RSA_KEY) == RSA_FP
    # An options prefix (authorized_keys style) does not change the key's identity.
    assert ssh_fingerprint('from="10.0.0.0/8" ' + ED25519_KEY) == ED25519_FP


def test_ssh_fingerprint_ignores_quoted_options_with_spaces_as_ssh_keygen_does() -> None:
    # authorized_keys options may hold spaces inside quotes (forced commands of backup keys):
    # the key is still the blob after its type, and sshd logs and ssh-keygen -l print its hash.
    forced = 'command="rsync --server -e.LsfxC . /backup",no-pty ' + ED25519_KEY
    borg = 'from="10.0.0.0/8",command="/usr/bin/borg serve --append-only --restrict-to-path /b" ' + RSA_KEY
    assert ssh_fingerprint(forced) == ED25519_FP
    assert ssh_fingerprint(borg) == RSA_FP
    # A word of a quoted option that is another key's blob is not taken for the key.
    decoy = (
        'command="check AAAAC3NzaC1lZDI1NTE5AAAAIEv9DFvl9mwrjX46Ey7ZrHv695WXxoBAIvXlhbE55NhQ now" ' + RSA_KEY
    )
    assert ssh_fingerprint(decoy) == RSA_FP


# --- dialect state ------------------------------------------------------------------------


def test_enabled_state_per_dialect() -> None:
    assert OPENLDAP.enabled(raw())
    assert not OPENLDAP.enabled(raw(pwdAccountLockedTime=["000001010000Z"]))
    assert AD.enabled(raw(userAccountControl=["512"]))
    assert not AD.enabled(raw(userAccountControl=["514"]))
    assert not AD.enabled(raw(userAccountControl=[str(0x10202)]))  # DONT_EXPIRE + disabled
    assert DS389.enabled(raw(nsAccountLock=["false"])) and DS389.enabled(raw())
    assert not DS389.enabled(raw(nsAccountLock=["TRUE"]))


def test_last_login_takes_the_latest_of_the_dialects_attributes() -> None:
    got = OPENLDAP.last_login(raw(pwdLastSuccess=["20260101000000Z"], authTimestamp=["20260301000000Z"]))
    assert got == datetime(2026, 3, 1, tzinfo=UTC)
    assert DS389.last_login(raw(lastLoginTime=["20260505050505Z"])) == datetime(
        2026, 5, 5, 5, 5, 5, tzinfo=UTC
    )
    assert AD.last_login(raw(lastLogonTimestamp=[to_filetime(datetime(2026, 2, 2, tzinfo=UTC))])) == datetime(
        2026, 2, 2, tzinfo=UTC
    )


# --- entry translation --------------------------------------------------------------------


def test_ad_entry_translates_to_account_and_credentials() -> None:
    s = settings_for("ad", service_base_dns=["OU=Services,DC=example,DC=org"])
    src = LdapSource(s, lambda: None)
    dn = "CN=Bob Leaver,OU=Staff,DC=example,DC=org"
    entry = Entry(
        dn,
        raw(
            objectClass=["top", "person", "organizationalPerson", "user"],
            sAMAccountName=["bleaver"],
            userPrincipalName=["bleaver@corp.example.org"],
            mail=["bob@example.com"],
            employeeID=["E1002"],
            userAccountControl=["66048"],
            lastLogonTimestamp=[to_filetime(datetime(2026, 10, 12, 17, tzinfo=UTC))],
            whenCreated=["20200101000000.0Z"],
            memberOf=["CN=VPN,OU=Groups,DC=example,DC=org", "CN=Admins,OU=Groups,DC=example,DC=org"],
        ),
    )
    account, creds = src.translate(entry, "OU=Staff,DC=example,DC=org", {})
    assert account.account_id == dn and account.username == "bleaver" and account.enabled
    assert account.kind is AccountKind.HUMAN and account.emails == ("bob@example.com",)
    assert account.last_login_precision == AD_LAST_LOGON_PRECISION
    assert ("employeeID", "E1002") in account.attributes
    assert ("userPrincipalName", "bleaver@corp.example.org") in account.attributes
    kinds = sorted(c.kind.value for c in creds)
    assert kinds == ["account", "group_membership", "group_membership"]
    acc = next(c for c in creds if c.kind is CredentialKind.ACCOUNT)
    assert acc.created_at == datetime(2020, 1, 1, tzinfo=UTC)
    assert acc.last_used_at == datetime(2026, 10, 12, 17, tzinfo=UTC)
    svc, _ = src.translate(
        Entry("CN=bot,OU=Services,DC=example,DC=org", raw(sAMAccountName=["bot"])), "x", {}
    )
    assert svc.kind is AccountKind.SERVICE


def test_duplicate_memberships_from_memberof_and_group_entries_are_one_credential() -> None:
    s = settings_for("openldap")
    src = LdapSource(s, lambda: None)
    dn = "uid=a,ou=people,dc=example,dc=org"
    entry = Entry(dn, raw(uid=["a"], memberOf=["cn=eng,ou=groups,dc=example,dc=org"]))
    groups = {
        dn: ["CN=eng,ou=groups,dc=example,dc=org"],
        "uid:a": ["cn=ops,ou=groups,dc=example,dc=org"],
    }
    _, creds = src.translate(entry, "ou=people,dc=example,dc=org", groups)
    memberships = sorted(c.detail.lower() for c in creds if c.kind is CredentialKind.GROUP_MEMBERSHIP)
    assert memberships == ["cn=eng,ou=groups,dc=example,dc=org", "cn=ops,ou=groups,dc=example,dc=org"]


def test_person_filter_escapes_every_value() -> None:
    s = settings_for("openldap")
    person = Person("E1)(uid=*", "a*b@example.com", "n", PersonStatus.ACTIVE, aliases=("x)(|(uid=*",))
    flt = person_filter(s, person)
    assert flt is not None
    assert "(employeeNumber=E1\\29\\28uid=\\2a)" in flt
    assert "(mail=a\\2ab@example.com)" in flt
    assert "(uid=x\\29\\28|\\28uid=\\2a)" in flt
    assert "*" not in flt


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"base_dn": None}, "base_dn"),
        ({"dialect": "novell"}, "dialect"),
        ({"url": "http://x"}, "url"),
        ({"base_dn": "not a dn"}, "base_dn"),
        ({"page_size": 0}, "page_size"),
        ({"ca_file": "/nonexistent/ca.pem"}, "ca_file"),
        ({"user_filter": "uid=*"}, "user_filter"),
    ],
)
def test_bad_config_raises_config_error_naming_the_key(change: dict[str, object], key: str) -> None:
    t = table("ldap://127.0.0.1:1", "cn=x,dc=example,dc=org", "dc=example,dc=org")
    for k, v in change.items():
        if v is None:
            t.pop(k)
        else:
            t[k] = v
    with pytest.raises(ConfigError) as err:
        PLUGIN.make_source(SourceOptions(t), SourceContext(Path("."), env={"LDAP_TEST_PASSWORD": "pw"}))
    assert err.value.key == key


def test_password_comes_only_from_the_named_environment_variable() -> None:
    t = table("ldap://127.0.0.1:1", "cn=x,dc=example,dc=org", "dc=example,dc=org")
    with pytest.raises(ConfigError, match="LDAP_TEST_PASSWORD is not set"):
        PLUGIN.make_source(SourceOptions(t), SourceContext(Path("."), env={}))
    opts = SourceOptions(t)
    s = parse_settings(opts, SourceContext(Path("."), env={"LDAP_TEST_PASSWORD": "s3cret-Value"}), True)
    assert s.password == "s3cret-Value" and "s3cret-Value" not in repr(s)


def test_every_option_read_is_documented_and_revokers_declare_dialect_permissions() -> None:
    import connectors.ldap.settings as mod

    source_text = Path(mod.__file__).read_text()
    import re

    used = set(re.findall(r'options\.\w+\(\s*"(\w+)"', source_text))
    used |= set(re.findall(r'_check_dn\(options, "(\w+)"', source_text))
    assert used <= set(PLUGIN.options), used - set(PLUGIN.options)
    assert "pwdAccountLockedTime" in OpenLDAPRevoker.actions["lock_account"].permissions[0]
    assert "userAccountControl" in ADRevoker.actions["lock_account"].permissions[0]
    assert "nsAccountLock" in DS389Revoker.actions["lock_account"].permissions[0]
    assert set(PLUGIN.revoker_actions) == {"lock_account", "remove_group_membership", "remove_ssh_key"}
    assert all(a.reversible for a in PLUGIN.revoker_actions.values())
