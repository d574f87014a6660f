"""The revoker's DN and bind-identity helpers, with exact values written out from RFC 4514.

``_unescape_dn_value`` resolves an RDN value's escapes (``\\,``, ``\\2C``, multi-byte UTF-8 hex
pairs); ``dn_key`` / ``canonical_dn`` are the forms DNs are compared and pattern-matched in;
``_is_bind_identity`` recognises the audit's own bind identity (a DN, ``user@realm`` or
``DOMAIN\\user``); ``_check_dn`` and ``_refuse_protected`` are the refusals every action goes
through. All in-process: the revokers here are never connected (their connector is unreachable),
the protected checks are given the live entry as the action would have read it.
"""

from __future__ import annotations

import pytest

from connectors.ldap.revoker import (
    LOCK,
    ADRevoker,
    LdapRevoker,
    _is_bind_identity,
    _unescape_dn_value,
    canonical_dn,
    dn_key,
)
from connectors.ldap.translate import Entry
from offboard_audit.core.actions import ActionTarget
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.records import CredentialKind
from offboard_audit.engine.steps import apply_step
from tests.connectors.ldap.helpers import revoker

NOWHERE = "ldap://127.0.0.1:9"  # never connected to: the checks below fail before any bind
PEOPLE = "ou=people,dc=example,dc=org"
AD_USERS = "CN=Users,DC=example,DC=com"
SVC_DN = f"CN=Svc Offboard,{AD_USERS}"


def target(dn: str) -> ActionTarget:
    return ActionTarget("corp-ldap", "ldap", dn, "", dn, CredentialKind.ACCOUNT, account_uid="uid-1")


def openldap_revoker(**extra: object) -> LdapRevoker:
    return revoker("pw", url=NOWHERE, bind_dn=f"cn=revoker,ou=services,{PEOPLE}", base_dn=PEOPLE, **extra)


def ad_revoker(bind: str) -> LdapRevoker:
    rev = revoker("pw", url=NOWHERE, bind_dn=bind, base_dn=AD_USERS, dialect="ad")
    assert isinstance(rev, ADRevoker)
    return rev


# --- _unescape_dn_value -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("escaped", "value"),
    [
        ("abc", "abc"),
        ("Audit\\, Revoke", "Audit, Revoke"),
        ("Audit\\2C Revoke", "Audit, Revoke"),
        ("Audit\\2c Revoke", "Audit, Revoke"),
        ("a\\+b", "a+b"),
        ("a\\2Bb", "a+b"),
        ("Ren\\C3\\A9e", "Ren\u00e9e"),
        ("\\E2\\82\\AC100", "\u20ac100"),
        ("\\ lead and trail\\ ", " lead and trail "),
        ("\\20lead", " lead"),
        ("\\#1", "#1"),
        ("\\23tag", "#tag"),
        ("back\\5Cslash", "back\\slash"),
        ("back\\\\slash", "back\\slash"),
        ("quote\\22", 'quote"'),
        ("\\zz", "zz"),
    ],
)
def test_unescape_dn_value_resolves_rfc4514_escapes_exactly(escaped: str, value: str) -> None:
    assert _unescape_dn_value(escaped) == value


def test_unescape_dn_value_escape_of_the_last_character_is_resolved() -> None:
    # The backslash is the second-to-last character: its pair is one character long.
    assert _unescape_dn_value("a\\,") == "a,"
    assert _unescape_dn_value("\\,") == ","


def test_unescape_dn_value_keeps_a_dangling_final_backslash_instead_of_failing() -> None:
    assert _unescape_dn_value("abc\\") == "abc\\"
    assert _unescape_dn_value("\\") == "\\"


def test_unescape_dn_value_replaces_invalid_utf8_hex_escapes_instead_of_raising() -> None:
    assert _unescape_dn_value("\\FF") == "\ufffd"
    assert _unescape_dn_value("bad\\C3") == "bad\ufffd"  # a truncated two-byte sequence


# --- dn_key / canonical_dn ----------------------------------------------------------------------


def test_dn_key_lower_cases_attribute_types_and_unescaped_values() -> None:
    assert dn_key("CN=Audit\\2C Revoke,OU=People,DC=Example,DC=Org") == (
        ("cn", "audit, revoke"),
        ("ou", "people"),
        ("dc", "example"),
        ("dc", "org"),
    )
    assert dn_key("cn=a, dc=x") is None  # ldap3 does not parse a space after the comma


def test_canonical_dn_joins_the_unescaped_lower_cased_rdns_with_plain_commas() -> None:
    assert canonical_dn("CN=Audit\\2C Revoke,OU=People,DC=Example") == "cn=audit, revoke,ou=people,dc=example"
    assert canonical_dn("UID=Ren\\C3\\A9e,OU=People") == "uid=ren\u00e9e,ou=people"
    assert canonical_dn("cn=one") == "cn=one"


def test_canonical_dn_of_a_dn_ldap3_cannot_parse_is_its_normalized_text() -> None:
    assert canonical_dn("CN=Svc, OU=People ,DC=Example") == "cn=svc,ou=people,dc=example"


# --- _is_bind_identity --------------------------------------------------------------------------


def test_bind_dn_is_compared_rdn_by_rdn_with_escapes_resolved_in_any_case() -> None:
    bind = "CN=AUDIT\\, REVOKE,OU=PEOPLE,DC=EXAMPLE,DC=ORG"
    assert _is_bind_identity(bind, "cn=Audit\\2C Revoke,ou=people,dc=example,dc=org", set())
    assert not _is_bind_identity(bind, "cn=Audit\\2C Revoked,ou=people,dc=example,dc=org", set())


def test_bind_dn_written_with_spaces_after_commas_still_recognises_its_own_entry() -> None:
    # Spaces after the commas are common in configs; ldap3 cannot parse that DN, slapd binds
    # with it all the same: compared as normalized text, it is still the revoker's own entry.
    bind = "cn=Revoker, ou=Services, dc=example, dc=org"
    assert dn_key(bind) is None
    assert _is_bind_identity(bind, "cn=revoker,ou=services,dc=example,dc=org", set())
    assert not _is_bind_identity(bind, "cn=jane,ou=services,dc=example,dc=org", set())
    assert not _is_bind_identity(bind, "cn=Jane, ou=Services, dc=example, dc=org", set())


def test_bind_as_down_level_domain_user_matches_the_login_name_after_the_backslash() -> None:
    names = {"svc-offboard", "svc-offboard@example.com"}
    assert _is_bind_identity("EXAMPLE\\Svc-Offboard", SVC_DN, names)
    assert _is_bind_identity("example\\svc-offboard", SVC_DN, names)
    assert not _is_bind_identity("EXAMPLE\\jane", SVC_DN, names)
    assert not _is_bind_identity("EXAMPLE\\Svc-Offboard", SVC_DN, {"jane"})


def test_bind_as_sam_account_name_at_domain_matches_the_login_name_before_the_at() -> None:
    # AD also accepts sAMAccountName@domain: here the entry has no such userPrincipalName.
    assert _is_bind_identity("Svc-Offboard@EXAMPLE.COM", SVC_DN, {"svc-offboard"})
    assert not _is_bind_identity("jane@EXAMPLE.COM", SVC_DN, {"svc-offboard"})
    assert not _is_bind_identity("Svc-Offboard@EXAMPLE.COM", SVC_DN, {"example.com"})


def test_bind_as_upn_matches_the_entrys_user_principal_name_whatever_its_sam_name() -> None:
    names = {"svc-offboard", "svc.offboard@example.com"}
    assert _is_bind_identity("Svc.Offboard@Example.COM", SVC_DN, names)
    assert not _is_bind_identity("jane@example.com", SVC_DN, names)
    assert not _is_bind_identity("jane@example.com", SVC_DN, set())


def test_bind_as_a_bare_login_name_matches_only_that_name() -> None:
    assert _is_bind_identity("Svc-Offboard", SVC_DN, {"svc-offboard"})
    assert not _is_bind_identity("jane", SVC_DN, {"svc-offboard"})


# --- _check_dn (every action's first check, before any connection) ------------------------------


def test_lock_of_an_unparseable_dn_fails_naming_the_value() -> None:
    step = apply_step(openldap_revoker(), LOCK, target("not a dn"))
    assert step.status == "failed", step
    assert step.error == "could not read the state before acting: not a DN: 'not a dn'"
    with pytest.raises(RevokeError, match=r"^not a DN: 'not a dn'$"):
        openldap_revoker()._check_dn(target("not a dn"))


def test_lock_of_a_dn_outside_the_base_dns_fails_naming_the_dn() -> None:
    dn = "uid=jane,ou=staff,dc=example,dc=org"
    expected = f"refusing {dn}: outside the configured base DNs"
    step = apply_step(openldap_revoker(), LOCK, target(dn))
    assert step.status == "failed", step
    assert step.error == f"could not read the state before acting: {expected}"
    with pytest.raises(RevokeError) as caught:
        openldap_revoker()._check_dn(target(dn))
    assert str(caught.value) == expected


# --- _refuse_protected --------------------------------------------------------------------------


def test_dn_pattern_protects_an_entry_by_its_dn_whatever_its_login_name() -> None:
    dn = f"cn=Break Glass,{PEOPLE}"
    rev = openldap_revoker(protected_dns=["CN=Break Glass,*"])
    entry = Entry(dn, {"uid": [b"bglass"]})
    with pytest.raises(RevokeError) as caught:
        rev._refuse_protected(entry, target(dn))
    assert str(caught.value) == f"refusing protected account {dn} (matches 'CN=Break Glass,*')"
    rev._refuse_protected(Entry(f"uid=jane,{PEOPLE}", {"uid": [b"jane"]}), target(f"uid=jane,{PEOPLE}"))


def test_dn_pattern_matches_the_unescaped_form_of_a_hex_escaped_dn() -> None:
    dn = f"uid=Ren\\C3\\A9e,{PEOPLE}"
    rev = openldap_revoker(protected_dns=["UID=Ren\u00e9e,*"])
    with pytest.raises(RevokeError, match="refusing protected account"):
        rev._refuse_protected(Entry(dn, {"uid": [b"rene"]}), target(dn))


def test_login_name_pattern_ignores_blank_login_values() -> None:
    # "*" protects every entry that has a login name; a blank uid is no login name.
    rev = openldap_revoker(protected_dns=["*"])
    blank = f"cn=No Login,{PEOPLE}"
    rev._refuse_protected(Entry(blank, {"uid": [b"  "]}), target(blank))
    named = f"uid=jane,{PEOPLE}"
    with pytest.raises(RevokeError, match=r"refusing protected account .* \(matches '\*'\)"):
        rev._refuse_protected(Entry(named, {"uid": [b"jane"]}), target(named))


def test_ad_built_in_account_is_refused_naming_its_dn_and_login_name() -> None:
    rev = ad_revoker("svc-offboard@example.com")
    dn = f"CN=krbtgt,{AD_USERS}"
    with pytest.raises(RevokeError) as caught:
        rev._refuse_protected(Entry(dn, {"sAMAccountName": [b"krbtgt"]}), target(dn))
    assert str(caught.value) == f"refusing built-in/critical AD account {dn} (krbtgt)"


def test_ad_revoker_bound_by_upn_refuses_its_own_entry_found_by_sam_account_name() -> None:
    rev = ad_revoker("Svc-Offboard@EXAMPLE.COM")
    entry = Entry(SVC_DN, {"sAMAccountName": [b"Svc-Offboard"], "userPrincipalName": [b"so@example.com"]})
    with pytest.raises(RevokeError) as caught:
        rev._refuse_protected(entry, target(SVC_DN))
    assert str(caught.value) == f"refusing to revoke the audit's own bind identity {SVC_DN}"
    other = f"CN=Jane,{AD_USERS}"
    rev._refuse_protected(Entry(other, {"sAMAccountName": [b"jane"]}), target(other))
