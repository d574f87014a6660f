"""The Active Directory dialect against a real Samba 4 AD domain controller."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import ldap3
import pytest

from connectors.ldap.dialects import AD_LAST_LOGON_PRECISION
from connectors.ldap.revoker import LEAVE_GROUP, LOCK
from offboard_audit.core.records import CredentialKind, Person, PersonStatus
from offboard_audit.engine.steps import apply_step, undo_step
from tests.connectors.ldap.helpers import creds_of, revoker, source, target_for
from tests.support.samba import ADMIN_PASSWORD, USERS_DN, SambaDC

pytestmark = pytest.mark.samba

PASSWORD = "Us3r-Passw0rd!"


def ad_source(dc: SambaDC, **extra: object) -> object:
    return source(ADMIN_PASSWORD, url=dc.url, bind_dn=dc.admin_upn, base_dn=USERS_DN, dialect="ad", **extra)


def ad_revoker(dc: SambaDC, **extra: object) -> object:
    return revoker(ADMIN_PASSWORD, url=dc.url, bind_dn=dc.admin_upn, base_dn=USERS_DN, dialect="ad", **extra)


def bind_error(dc: SambaDC, user: str, password: str) -> str | None:
    """None if the bind works, else the server's message (AD's 'data 533' = disabled)."""
    try:
        conn = dc.connect(user, password)
    except ldap3.core.exceptions.LDAPInvalidCredentialsResult as exc:
        return str(exc.message)
    conn.unbind()
    return None


def test_ad_user_is_read_with_uac_filetime_last_logon_and_owner_hints(samba: SambaDC) -> None:
    dn = samba.add_user(
        "jdoe", PASSWORD, {"mail": ["jdoe@example.com"], "employeeID": ["E42"], "displayName": ["J Doe"]}
    )
    off = samba.add_user("offuser", PASSWORD)
    samba.connect().modify(off, {"userAccountControl": [(ldap3.MODIFY_REPLACE, ["514"])]})
    group = samba.add_group("eng-ad", [dn])
    before = datetime.now(UTC) - timedelta(seconds=5)
    assert bind_error(samba, f"jdoe@{samba.realm}", PASSWORD) is None  # sets lastLogonTimestamp

    data = ad_source(samba).collect()  # type: ignore[attr-defined]
    by_dn = {a.account_id.lower(): a for a in data.accounts}
    jdoe = by_dn[dn.lower()]
    assert jdoe.enabled and not by_dn[off.lower()].enabled
    assert jdoe.username == "jdoe"
    assert ("sAMAccountName", "jdoe") in jdoe.attributes
    assert ("userPrincipalName", f"jdoe@{samba.realm.lower()}") in jdoe.attributes
    assert ("employeeID", "E42") in jdoe.attributes
    assert jdoe.emails == ("jdoe@example.com",) and jdoe.display_name == "J Doe"
    assert jdoe.last_login_at is not None and jdoe.last_login_at >= before
    assert jdoe.last_login_at <= datetime.now(UTC) + timedelta(seconds=5)
    assert jdoe.last_login_precision == AD_LAST_LOGON_PRECISION
    (account,) = creds_of(data, dn, CredentialKind.ACCOUNT)
    assert account.last_used_precision == AD_LAST_LOGON_PRECISION
    groups = [c.detail.lower() for c in creds_of(data, dn, CredentialKind.GROUP_MEMBERSHIP)]
    assert groups == [group.lower()]  # from memberOf
    # Computer accounts and the like are not people: the default filter leaves them out.
    assert all("objectcategory" not in a.account_id.lower() for a in data.accounts)


def test_ad_collect_for_matches_by_sam_account_name_upn_and_employee_id(samba: SambaDC) -> None:
    dn = samba.add_user("kfree", None, {"employeeID": ["E77"]})
    src = ad_source(samba)
    by_sam = Person("X1", None, "K", PersonStatus.ACTIVE, aliases=("kfree",))
    by_upn = Person("X2", f"kfree@{samba.realm.lower()}", "K", PersonStatus.ACTIVE)
    by_id = Person("E77", None, "K", PersonStatus.ACTIVE)
    evil = Person("*", "*)(sAMAccountName=*", "x", PersonStatus.ACTIVE, aliases=("*)(|(cn=*",))
    for person in (by_sam, by_upn, by_id):
        found = src.collect_for(person)  # type: ignore[attr-defined]
        assert [a.account_id.lower() for a in found.accounts] == [dn.lower()]
    assert src.collect_for(evil).accounts == ()  # type: ignore[attr-defined]


def test_ad_disable_makes_the_bind_fail_and_undo_restores_it(samba: SambaDC) -> None:
    dn = samba.add_user("leaver", PASSWORD)
    data = ad_source(samba).collect()  # type: ignore[attr-defined]
    (account,) = creds_of(data, dn, CredentialKind.ACCOUNT)
    rev = ad_revoker(samba)
    target = target_for(data, account, "leaver")
    assert bind_error(samba, f"leaver@{samba.realm}", PASSWORD) is None

    result = apply_step(rev, LOCK, target)
    assert result.status == "applied" and result.before and result.after
    assert result.before.value("userAccountControl") == "512"
    assert result.after.value("userAccountControl") == "514"
    message = bind_error(samba, f"leaver@{samba.realm}", PASSWORD)
    assert message is not None and "data 533" in message  # AD's "account disabled"
    assert apply_step(rev, LOCK, target).status == "noop"

    undone = undo_step(rev, LOCK, target, result.before)
    assert undone.status == "restored"
    assert bind_error(samba, f"leaver@{samba.realm}", PASSWORD) is None


def test_ad_group_removal_updates_memberof_and_undo_readds(samba: SambaDC) -> None:
    dn = samba.add_user("grouped", None)
    other = samba.add_user("stays", None)
    samba.add_group("ops-ad", [dn, other])
    src = ad_source(samba)
    data = src.collect()  # type: ignore[attr-defined]
    (membership,) = creds_of(data, dn, CredentialKind.GROUP_MEMBERSHIP)
    rev = ad_revoker(samba)
    result = apply_step(rev, LEAVE_GROUP, target_for(data, membership))
    assert result.status == "applied" and result.before
    after = src.collect()  # type: ignore[attr-defined]
    assert creds_of(after, dn, CredentialKind.GROUP_MEMBERSHIP) == []
    assert len(creds_of(after, other, CredentialKind.GROUP_MEMBERSHIP)) == 1
    undone = undo_step(rev, LEAVE_GROUP, target_for(data, membership), result.before)
    assert undone.status == "restored"
    assert len(creds_of(src.collect(), dn, CredentialKind.GROUP_MEMBERSHIP)) == 1  # type: ignore[attr-defined]


def test_ad_revoker_refuses_the_built_in_administrator(samba: SambaDC) -> None:
    data = ad_source(samba, user_filter="(sAMAccountName=Administrator)").collect()  # type: ignore[attr-defined]
    (admin,) = [c for c in data.credentials if c.kind is CredentialKind.ACCOUNT]
    # The bind identity is the UPN (not this DN): the built-in check itself must refuse.
    rev = ad_revoker(samba)
    refused = apply_step(rev, LOCK, target_for(data, admin))
    assert refused.status == "failed" and "built-in" in (refused.error or "")
    assert bind_error(samba, samba.admin_upn, ADMIN_PASSWORD) is None


def test_core_matcher_links_ad_accounts_by_employee_id_upn_and_sam_account_name(samba: SambaDC) -> None:
    from connectors.ldap import PLUGIN
    from offboard_audit.core.matching import match_all

    by_id = samba.add_user("mid", None, {"employeeID": ["E900"]})
    by_upn = samba.add_user("mupn", None)
    by_sam = samba.add_user("msam", None)
    people = [
        Person("E900", "someone@elsewhere.example", "By Id", PersonStatus.ACTIVE),
        Person("E901", f"mupn@{samba.realm.lower()}", "By UPN", PersonStatus.ACTIVE),
        Person("E902", "x@elsewhere.example", "By Sam", PersonStatus.ACTIVE, aliases=("msam",)),
    ]
    data = ad_source(samba).collect()  # type: ignore[attr-defined]
    links = match_all(data.accounts, {"corp-ldap": PLUGIN.match}, people, ("alias",))
    owner = {link.account.account_id.lower(): link.person.employee_id for link in links if link.person}
    assert owner[by_id.lower()] == "E900"
    assert owner[by_upn.lower()] == "E901"
    assert owner[by_sam.lower()] == "E902"
