"""The group-membership filter of the detail and targeted passes escapes the member's DN and uid.

A DN may legally hold ``(``, ``)``, ``*`` and ``\\``; put into a filter unescaped they change it
(``*`` makes an equality test a substring test, parentheses end it early). On the real slapd,
an account whose DN and uid hold all of them must still be found in its groupOfUniqueNames
(``uniqueMember``: not covered by memberOf) and posixGroup (``memberUid``).
"""

from __future__ import annotations

import pytest

from connectors.ldap.search import group_member_filter
from offboard_audit.core.records import CredentialKind, Person, PersonStatus, SourceData
from tests.connectors.ldap.helpers import creds_of, source
from tests.support.slapd import AUDITOR_DN, AUDITOR_PASSWORD, GROUPS_DN, PEOPLE_DN, SlapdServer

HOSTILE_UID = "kim(ops)*\\x"
# The same value as an RDN: a backslash is written \5C in a DN (RFC 4514); ( ) * need no escape.
HOSTILE_DN = f"uid=kim(ops)*\\5Cx,{PEOPLE_DN}"
UNIQUE = f"cn=uniq-ops,{GROUPS_DN}"
POSIX = f"cn=posix-ops,{GROUPS_DN}"
# Another member whose DN the unescaped filter would match as a substring ("uid=kim(ops)" + "*" + ...).
DECOY = f"uid=kim(ops)zzz\\5Cx,{PEOPLE_DN}"
DECOY_ONLY = f"cn=decoy-only,{GROUPS_DN}"


@pytest.fixture
def hostile(slapd: SlapdServer) -> SlapdServer:
    def person(dn: str, uid: str) -> tuple[str, dict[str, list[str]]]:
        return dn, {
            "objectClass": ["inetOrgPerson"],
            "uid": [uid],
            "cn": ["Kim"],
            "sn": ["Kim"],
            "employeeNumber": ["E9001" if dn == HOSTILE_DN else "E9002"],
        }

    slapd.add_entries(
        [
            person(HOSTILE_DN, HOSTILE_UID),
            person(DECOY, "kim(ops)zzz\\x"),
            (
                UNIQUE,
                {"objectClass": ["groupOfUniqueNames"], "cn": ["uniq-ops"], "uniqueMember": [HOSTILE_DN]},
            ),
            (
                POSIX,
                {
                    "objectClass": ["posixGroup"],
                    "cn": ["posix-ops"],
                    "gidNumber": ["9001"],
                    "memberUid": [HOSTILE_UID],
                },
            ),
            (
                DECOY_ONLY,
                {"objectClass": ["groupOfUniqueNames"], "cn": ["decoy-only"], "uniqueMember": [DECOY]},
            ),
        ]
    )
    return slapd


def groups_of(data: SourceData, dn: str) -> set[str]:
    return {c.detail.lower() for c in creds_of(data, dn, CredentialKind.GROUP_MEMBERSHIP)}


@pytest.mark.slapd
def test_detail_pass_finds_the_groups_of_a_dn_holding_parentheses_star_and_backslash(
    hostile: SlapdServer,
) -> None:
    bulk = source(AUDITOR_PASSWORD, url=hostile.url, bind_dn=AUDITOR_DN, base_dn=PEOPLE_DN).collect()
    (kim,) = [a for a in bulk.accounts if a.username == HOSTILE_UID]
    # A fresh source (another run, the webhook path) has not bulk-read kim: it asks the group filter.
    src = source(
        AUDITOR_PASSWORD, url=hostile.url, bind_dn=AUDITOR_DN, base_dn=PEOPLE_DN, group_base_dn=GROUPS_DN
    )
    detail = src.detail([kim])
    assert detail.failed_scopes == ()
    assert groups_of(detail, kim.account_id) == {UNIQUE.lower(), POSIX.lower()}


@pytest.mark.slapd
def test_collect_for_finds_the_groups_of_a_dn_holding_parentheses_star_and_backslash(
    hostile: SlapdServer,
) -> None:
    src = source(
        AUDITOR_PASSWORD, url=hostile.url, bind_dn=AUDITOR_DN, base_dn=PEOPLE_DN, group_base_dn=GROUPS_DN
    )
    found = src.collect_for(Person("E9001", None, "Kim", PersonStatus.ACTIVE))
    (kim,) = found.accounts
    assert found.failed_scopes == ()
    assert groups_of(found, kim.account_id) == {UNIQUE.lower(), POSIX.lower()}


def test_group_member_filter_escapes_every_special_character_including_nul() -> None:
    flt = group_member_filter("(objectClass=groupOfNames)", "cn=a(b)*\\5Cc\x00,dc=x", "u(*)\\\x00")
    assert flt == (
        "(&(objectClass=groupOfNames)(|"
        "(member=cn=a\\28b\\29\\2a\\5c5Cc\\00,dc=x)"
        "(uniqueMember=cn=a\\28b\\29\\2a\\5c5Cc\\00,dc=x)"
        "(memberUid=u\\28\\2a\\29\\5c\\00)))"
    )
