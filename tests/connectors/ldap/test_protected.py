"""The revoker's own protected check (in each action's ``change``, right before the modify) compares
names the way the directory does: case-insensitively.

On AD the audit often binds as ``user@realm`` or ``DOMAIN\\user`` (not a DN), and a break-glass
account's DN is built from its display name (``CN=Break Glass``) while its login name is
``BreakGlass``: the revoker must recognise both, whatever the case, on the live entry.
"""

from __future__ import annotations

from typing import Any

import ldap3
import pytest

from connectors.ldap.revoker import LOCK
from offboard_audit.core.actions import ActionTarget
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.records import CredentialKind
from offboard_audit.engine.steps import apply_step
from tests.connectors.ldap.helpers import creds_of, revoker, source, target_for
from tests.support.samba import ADMIN_PASSWORD, USERS_DN, SambaDC
from tests.support.slapd import PEOPLE_DN, REVOKER_DN, REVOKER_PASSWORD, SlapdServer

PASSWORD = "Svc-Passw0rd!"


def ad_locked(dc: SambaDC, dn: str) -> bool:
    conn = dc.connect()
    conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["userAccountControl"])
    uac = int(conn.response[0]["raw_attributes"]["userAccountControl"][0])
    conn.unbind()
    return bool(uac & 0x2)


def refused(rev: Any, target: ActionTarget, reason: str) -> None:
    """The lock is refused for ``reason``: by the action itself and through the engine's steps."""
    spec = rev.specs[LOCK]
    with pytest.raises(RevokeError, match=reason):
        spec.change(target, spec.read(target))
    step = apply_step(rev, LOCK, target)
    assert step.status == "failed" and reason in (step.error or ""), step


def ad_target(dc: SambaDC, dn: str) -> Any:
    data = source(ADMIN_PASSWORD, url=dc.url, bind_dn=dc.admin_upn, base_dn=USERS_DN, dialect="ad").collect()
    (account,) = creds_of(data, dn, CredentialKind.ACCOUNT)
    return target_for(data, account)


@pytest.mark.samba
@pytest.mark.parametrize(
    "bind_as", ["SVC-OFFBOARD@{realm}", "svc-offboard@{realm_lower}", "example\\SVC-Offboard"]
)
def test_ad_revoker_bound_by_upn_or_down_level_name_refuses_its_own_account(
    samba: SambaDC, bind_as: str
) -> None:
    dn = samba.add_user("Svc-Offboard", PASSWORD)
    conn = samba.connect()
    conn.modify(f"CN=Domain Admins,{USERS_DN}", {"member": [(ldap3.MODIFY_ADD, [dn])]})  # may write users
    conn.unbind()
    who = bind_as.format(realm=samba.realm, realm_lower=samba.realm.lower())
    rev = revoker(PASSWORD, url=samba.url, bind_dn=who, base_dn=USERS_DN, dialect="ad")
    refused(rev, ad_target(samba, dn), "own bind identity")
    assert not ad_locked(samba, dn)
    samba.connect(f"svc-offboard@{samba.realm}", PASSWORD).unbind()  # still logs in


@pytest.mark.samba
@pytest.mark.parametrize("protected", [None, ["BREAKGLASS"], ["breakglass@*"]])
def test_ad_break_glass_is_protected_by_its_login_name_in_any_case(
    samba: SambaDC, protected: list[str] | None
) -> None:
    # CN from the display name, login name in mixed case: the default "cn=breakglass,*" misses it.
    dn = samba.add_user("BreakGlass", PASSWORD, cn="Break Glass")
    extra = {} if protected is None else {"protected_dns": protected}
    rev = revoker(
        ADMIN_PASSWORD, url=samba.url, bind_dn=samba.admin_upn, base_dn=USERS_DN, dialect="ad", **extra
    )
    refused(rev, ad_target(samba, dn), "protected")
    assert not ad_locked(samba, dn)


@pytest.mark.slapd
def test_openldap_break_glass_under_another_rdn_is_protected_by_its_uid_in_any_case(
    slapd: SlapdServer,
) -> None:
    dn = f"cn=Break Glass,{PEOPLE_DN}"
    slapd.add_entries(
        [
            (
                dn,
                {
                    "objectClass": ["inetOrgPerson"],
                    "cn": ["Break Glass"],
                    "sn": ["Glass"],
                    "uid": ["BreakGlass"],
                    "userPassword": ["glass-pw"],
                },
            )
        ]
    )
    data = source(REVOKER_PASSWORD, url=slapd.url, bind_dn=REVOKER_DN, base_dn=PEOPLE_DN).collect()
    (account,) = creds_of(data, dn, CredentialKind.ACCOUNT)
    rev = revoker(REVOKER_PASSWORD, url=slapd.url, bind_dn=REVOKER_DN, base_dn=PEOPLE_DN)
    refused(rev, target_for(data, account), "protected")
    slapd.connect(dn, "glass-pw").unbind()  # type: ignore[attr-defined]  # not locked


@pytest.mark.slapd
def test_openldap_revoker_bound_by_a_dn_with_an_escaped_comma_refuses_its_own_entry(
    slapd: SlapdServer,
) -> None:
    """A DN bind holding a backslash escape is compared as a DN, never as DOMAIN\\user."""
    me = f"cn=Audit\\, Revoke,{PEOPLE_DN}"
    slapd.add_entries(
        [(me, {"objectClass": ["person"], "cn": ["Audit, Revoke"], "sn": ["x"], "userPassword": ["me-pw"]})]
    )
    data = source(
        REVOKER_PASSWORD,
        url=slapd.url,
        bind_dn=REVOKER_DN,
        base_dn=PEOPLE_DN,
        user_filter="(objectClass=person)",
    ).collect()
    # slapd hands the DN back in its own spelling (cn=Audit\2C Revoke,...): use what it read.
    (account,) = [
        c for c in data.credentials if c.kind is CredentialKind.ACCOUNT and "audit" in c.account_id.lower()
    ]
    rev = revoker(
        "me-pw", url=slapd.url, bind_dn=f"CN=AUDIT\\, REVOKE,{PEOPLE_DN.upper()}", base_dn=PEOPLE_DN
    )
    refused(rev, target_for(data, account), "own bind identity")
