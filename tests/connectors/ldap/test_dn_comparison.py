"""DN comparison per RFC 4514: escapes resolved one way, spaces inside a value significant."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest

from connectors.ldap.dn import dn_under, normalize_dn
from connectors.ldap.settings import parse_settings
from connectors.ldap.source import LdapSource
from connectors.ldap.translate import Entry
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import CredentialKind
from tests.connectors.ldap.helpers import table

PEOPLE = "ou=people,dc=example,dc=org"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        # The same comma, escaped as a character or as its hex pair (either case).
        (rf"CN=Doe\,John,{PEOPLE}", rf"CN=Doe\2CJohn,{PEOPLE}"),
        (rf"CN=Doe\,John,{PEOPLE}", rf"cn=doe\2cjohn,{PEOPLE}"),
        # Types and values in any case; unescaped spaces around "=", "," and "+" do not count.
        (rf"CN=Doe\, John,{PEOPLE}", r"cn = doe\, john , OU=People,DC=Example,DC=Org"),
        # Other escapes: "+", an escaped leading space, UTF-8 hex pairs.
        (rf"cn=a\+b,{PEOPLE}", rf"cn=a\2Bb,{PEOPLE}"),
        (rf"cn=\ lead,{PEOPLE}", rf"cn=\20lead,{PEOPLE}"),
        (rf"cn=caf\C3\A9,{PEOPLE}", f"cn=café,{PEOPLE}"),
        # A multi-valued RDN in either order.
        (f"cn=a+uid=b,{PEOPLE}", f"uid=B + cn=A,{PEOPLE}"),
        # RFC 2253's quoted form.
        (f'cn="Doe, John",{PEOPLE}', rf"cn=Doe\, John,{PEOPLE}"),
    ],
)
def test_spellings_of_one_dn_compare_equal(one: str, other: str) -> None:
    assert normalize_dn(one) == normalize_dn(other)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        # Two entries: the space after the escaped comma is part of the value.
        (rf"CN=Doe\, John,{PEOPLE}", rf"CN=Doe\,John,{PEOPLE}"),
        (rf"CN=Doe\2C John,{PEOPLE}", rf"CN=Doe\2CJohn,{PEOPLE}"),
        (f"cn=doe  john,{PEOPLE}", f"cn=doe john,{PEOPLE}"),
        # An escaped leading or trailing space is part of the value too.
        (rf"cn=\ admin,{PEOPLE}", f"cn=admin,{PEOPLE}"),
        (rf"cn=admin\ ,{PEOPLE}", f"cn=admin,{PEOPLE}"),
        # One RDN holding a comma is not two RDNs.
        (rf"cn=a\,ou=x,{PEOPLE}", f"cn=a,ou=x,{PEOPLE}"),
        (rf"cn=a\+uid=b,{PEOPLE}", f"cn=a+uid=b,{PEOPLE}"),
    ],
)
def test_different_dns_compare_different(one: str, other: str) -> None:
    assert normalize_dn(one) != normalize_dn(other)


def test_an_escaped_comma_is_not_a_level_of_the_tree() -> None:
    assert dn_under(f"uid=a,{PEOPLE}", "DC=Example, DC=Org")
    assert dn_under(PEOPLE, PEOPLE)
    assert not dn_under("dc=org", "dc=example,dc=org")
    # One RDN under dc=org whose value ends in ",dc=example": not under dc=example,dc=org.
    assert not dn_under(r"cn=x\,dc=example,dc=org", "dc=example,dc=org")


def test_a_group_lists_only_the_entry_its_member_value_names() -> None:
    opts = SourceOptions(table("ldap://127.0.0.1:1", "cn=x,dc=example,dc=org", PEOPLE, dialect="openldap"))
    src = LdapSource(
        parse_settings(opts, SourceContext(Path("."), env={"LDAP_TEST_PASSWORD": "pw"}), True), lambda: None
    )
    group = "cn=eng,ou=groups,dc=example,dc=org"
    # As the source indexes a group's member values (source.py _group_index).
    groups = {normalize_dn(rf"cn=Doe\2CJohn,{PEOPLE}"): [group]}
    close = Entry(rf"CN=Doe\,John,{PEOPLE}", {"uid": [b"djohn"]})
    other = Entry(rf"CN=Doe\, John,{PEOPLE}", {"uid": [b"jdoe"]})

    def memberships(entry: Entry) -> list[str]:
        _, creds = src.translate(entry, PEOPLE, groups)
        return [c.credential_id for c in creds if c.kind is CredentialKind.GROUP_MEMBERSHIP]

    assert memberships(close) == [f"group:{group}"]
    assert memberships(other) == []


def test_a_pattern_with_a_wildcard_rdn_compares_its_other_rdns_like_dns() -> None:
    # As the revoker matches protected_dns (revoker.py _refuse_protected): the "*" piece is no
    # RDN, the piece before it is still read per RFC 4514.
    pattern = normalize_dn(r"cn=Doe\, John,*")
    assert fnmatch.fnmatchcase(normalize_dn(rf"CN=Doe\2C John,{PEOPLE}"), pattern)
    assert fnmatch.fnmatchcase(normalize_dn(rf"CN=doe\, JOHN,{PEOPLE}"), pattern)
    assert not fnmatch.fnmatchcase(normalize_dn(rf"CN=Doe\,John,{PEOPLE}"), pattern)
    assert normalize_dn("*,OU=Admins, DC=Example") == "*,ou=admins,dc=example"
