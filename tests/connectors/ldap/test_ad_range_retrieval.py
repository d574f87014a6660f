"""AD range retrieval (``member;range=``) on ldap3's in-memory MOCK_SYNC directory.

Active Directory returns at most MaxValRange values (1500 by default) of a multi-valued
attribute per read: for a bigger group, a read of ``member`` answers ``member;range=0-1499``
and the client must ask for ``member;range=1500-*`` and so on (MS-ADTS 3.1.1.3.1.3.3). Samba
does not cap plain reads, so the cap is modelled here: a mock whose searches answer as AD
does, with a MaxValRange of ``MAX_VAL_RANGE``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import ldap3

from connectors.ldap import PLUGIN, LdapSource
from connectors.ldap.revoker import LEAVE_GROUP, LdapRevoker
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import CredentialKind
from offboard_audit.engine.steps import apply_step, undo_step
from tests.connectors.ldap.helpers import creds_of, target_for

BASE = "DC=corp,DC=example"
USERS = f"OU=Staff,{BASE}"
GROUPS = f"OU=Groups,{BASE}"
BIND = f"CN=svc-audit,{BASE}"
BIG = f"CN=vpn-users,{GROUPS}"
MAX_VAL_RANGE = 5
MEMBERS = 12
LEAVER_INDEX = 9  # beyond the first range of 5 values
_RANGED = re.compile(r"^(?P<attr>[^;]+);range=(?P<lo>\d+)-(?P<hi>\d+|\*)$", re.IGNORECASE)


def user_dn(i: int) -> str:
    return f"CN=user{i},{USERS}"


def _ranged(attribute: dict[str, Any], wanted: tuple[int, int | None] | None) -> dict[str, Any]:
    """One attribute of a response as AD sends it: the values of the asked-for range, capped."""
    values = list(attribute["vals"])
    name = attribute["type"]
    if wanted is None and len(values) <= MAX_VAL_RANGE:
        return attribute
    lo, hi = wanted or (0, None)
    last = lo + MAX_VAL_RANGE - 1 if hi is None else min(hi, lo + MAX_VAL_RANGE - 1)
    if last >= len(values) - 1:
        return {"type": f"{name};range={lo}-*", "vals": values[lo:]}
    return {"type": f"{name};range={lo}-{last}", "vals": values[lo : last + 1]}


def ad_with_max_val_range(refuse_more: bool = False) -> Any:
    """A mock AD with one group of ``MEMBERS`` users; reads of ``member`` obey MaxValRange.

    ``refuse_more``: a read asking for a later range fails (busy), as a DC going away would.
    """
    server = ldap3.Server("ad.mock.invalid", get_info=ldap3.NONE)
    seed = ldap3.Connection(server, user=BIND, password="pw", client_strategy=ldap3.MOCK_SYNC)
    for dn in (BASE, USERS, GROUPS):
        seed.strategy.add_entry(dn, {"objectClass": ["top", "container"]})
    seed.strategy.add_entry(BIND, {"objectClass": ["user"], "userPassword": ["pw"]})
    for i in range(MEMBERS):
        seed.strategy.add_entry(
            user_dn(i),
            {
                "objectClass": ["top", "person", "user"],
                "objectCategory": ["person"],
                "sAMAccountName": [f"user{i}"],
                "userAccountControl": ["512"],
                "objectGUID": [f"6f1c2a3b-0000-4000-8000-{i:012d}"],
                # AD keeps memberOf on the user (the mock does not): the leaver's is written here.
                **({"memberOf": [BIG]} if i == LEAVER_INDEX else {}),
            },
        )
    seed.strategy.add_entry(
        BIG,
        {
            "objectClass": ["top", "group"],
            "objectGUID": ["6f1c2a3b-0000-4000-8000-999999999999"],
            "member": [user_dn(i) for i in range(MEMBERS)],
        },
    )

    def connect() -> Any:
        conn = ldap3.Connection(server, user=BIND, password="pw", client_strategy=ldap3.MOCK_SYNC)
        conn.bind()
        original = conn.strategy._execute_search

        def capped(request: dict[str, Any]) -> Any:
            wanted: dict[str, tuple[int, int | None] | None] = {}
            plain: list[str] = []
            for attr in request["attributes"]:
                m = _RANGED.match(str(attr))
                if m:
                    hi = None if m["hi"] == "*" else int(m["hi"])
                    wanted[m["attr"].lower()] = (int(m["lo"]), hi)
                    plain.append(m["attr"])
                else:
                    wanted.setdefault(str(attr).lower(), None)
                    plain.append(str(attr))
            if refuse_more and any(r and r[0] > 0 for r in wanted.values()):
                return [], {"resultCode": 51, "matchedDN": "", "diagnosticMessage": "busy", "referral": None}
            response, result = original({**request, "attributes": plain})
            for item in response:
                item["attributes"] = [
                    _ranged(a, wanted.get(a["type"].lower())) if a["type"].lower() == "member" else a
                    for a in item["attributes"]
                ]
            return response, result

        conn.strategy._execute_search = capped
        return conn

    return connect


def members_now(connect: Any) -> list[str]:
    """The group's members as stored (the mock's own data, no range cap): the independent answer."""
    conn = connect()
    values = conn.server.dit[BIG]["member"]
    return [(v.decode() if isinstance(v, bytes) else str(v)).lower() for v in values]


def build(connect: Any, **extra: Any) -> tuple[LdapSource, LdapRevoker]:
    table = {
        "name": "ad",
        "type": "ldap",
        "url": "ldap://ad.mock.invalid",
        "bind_dn": BIND,
        "base_dn": USERS,
        "dialect": "ad",
        "group_base_dn": GROUPS,
        **extra,
    }
    ctx = SourceContext(Path("."), clients={"ad": connect})
    src = PLUGIN.make_source(SourceOptions(table), ctx)
    assert isinstance(src, LdapSource) and PLUGIN.make_revoker is not None
    rev = PLUGIN.make_revoker(SourceOptions(table), ctx)
    assert isinstance(rev, LdapRevoker)
    return src, rev


def test_the_mock_caps_member_reads_as_ad_does() -> None:
    conn = ad_with_max_val_range()()
    conn.search(BIG, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["member"])
    assert {k: len(v) for k, v in conn.response[0]["raw_attributes"].items() if v} == {"member;range=0-4": 5}
    conn.search(BIG, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["member;range=10-*"])
    assert {k: len(v) for k, v in conn.response[0]["raw_attributes"].items() if v} == {"member;range=10-*": 2}


def test_bulk_group_index_reads_every_range_of_a_big_group() -> None:
    src, _ = build(ad_with_max_val_range())
    data = src.collect()
    assert data.failed_scopes == ()
    for i in range(MEMBERS):
        groups = [c.detail.lower() for c in creds_of(data, user_dn(i), CredentialKind.GROUP_MEMBERSHIP)]
        assert groups == [BIG.lower()], f"user{i}'s membership of the big group was not read"


def test_leaving_a_group_bigger_than_max_val_range_removes_the_member_and_undo_readds_it() -> None:
    connect = ad_with_max_val_range()
    src, rev = build(connect)
    leaver = user_dn(LEAVER_INDEX)
    # The membership as the core plans it, read from the leaver's memberOf.
    data = src.collect()
    (membership,) = creds_of(data, leaver, CredentialKind.GROUP_MEMBERSHIP)
    target = target_for(data, membership)

    result = apply_step(rev, LEAVE_GROUP, target)
    assert result.status == "applied", f"leave group was {result.status}: the leaver is still a member"
    assert leaver.lower() not in members_now(connect)
    assert len(members_now(connect)) == MEMBERS - 1

    undone = undo_step(rev, LEAVE_GROUP, target, result.before)
    assert undone.status == "restored"
    assert leaver.lower() in members_now(connect) and len(members_now(connect)) == MEMBERS


def test_a_range_that_cannot_be_read_to_its_end_fails_the_read_instead_of_shortening_the_group() -> None:
    connect = ad_with_max_val_range(refuse_more=True)
    src, rev = build(connect)
    data = src.collect()
    assert [f.scope for f in data.failed_scopes] == [GROUPS]
    assert "only 5 values were read" in data.failed_scopes[0].error
    (membership,) = creds_of(data, user_dn(LEAVER_INDEX), CredentialKind.GROUP_MEMBERSHIP)
    result = apply_step(rev, LEAVE_GROUP, target_for(data, membership))
    assert result.status == "failed" and "only 5 values were read" in (result.error or "")
    assert user_dn(LEAVER_INDEX).lower() in members_now(connect)
