"""The AD revoker refuses objects AD marks critical (``isCriticalSystemObject: TRUE``: domain
controllers' machine accounts, built-in groups and accounts), whatever their name, not only the
three built-in names it also knows (Administrator, krbtgt, Guest).

In process on a revoker that is never connected (given the entry as an action reads it), and
against the real Samba AD DC: its own machine account is refused and stays as it was.
"""

from __future__ import annotations

import pytest

from connectors.ldap.revoker import LOCK, ADRevoker
from connectors.ldap.translate import Entry
from offboard_audit.core.actions import ActionTarget
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.records import CredentialKind
from offboard_audit.engine.steps import apply_step
from tests.connectors.ldap.helpers import revoker, source, target_for
from tests.support.samba import ADMIN_PASSWORD, BASE_DN, SambaDC

NOWHERE = "ldap://127.0.0.1:9"  # never connected to: the refusal comes before any bind
USERS = "CN=Users,DC=example,DC=com"


def ad_revoker() -> ADRevoker:
    rev = revoker("pw", url=NOWHERE, bind_dn="svc-offboard@example.com", base_dn=USERS, dialect="ad")
    assert isinstance(rev, ADRevoker)
    return rev


def target(dn: str) -> ActionTarget:
    return ActionTarget("corp-ad", "ldap", dn, "", dn, CredentialKind.ACCOUNT, account_uid="guid-1")


@pytest.mark.parametrize("flag", [b"TRUE", b"true"])
def test_an_object_ad_marks_critical_is_refused_whatever_its_name(flag: bytes) -> None:
    dn = f"CN=Backup Operator Svc,{USERS}"
    entry = Entry(dn, {"sAMAccountName": [b"backup-svc"], "isCriticalSystemObject": [flag]})
    with pytest.raises(RevokeError) as caught:
        ad_revoker()._refuse_protected(entry, target(dn))
    assert str(caught.value) == f"refusing built-in/critical AD account {dn} (backup-svc)"


@pytest.mark.parametrize("attributes", [{"isCriticalSystemObject": [b"FALSE"]}, {}], ids=["false", "absent"])
def test_an_object_not_marked_critical_is_not_refused(attributes: dict[str, list[bytes]]) -> None:
    dn = f"CN=Jane Doe,{USERS}"
    ad_revoker()._refuse_protected(Entry(dn, {"sAMAccountName": [b"jane"], **attributes}), target(dn))


@pytest.mark.samba
def test_the_domain_controllers_own_machine_account_is_refused_and_left_enabled(samba: SambaDC) -> None:
    # The DC's computer account: isCriticalSystemObject TRUE, a name none of the built-in ones.
    dcs = f"OU=Domain Controllers,{BASE_DN}"
    options = dict(url=samba.url, bind_dn=samba.admin_upn, base_dn=dcs, dialect="ad")
    data = source(ADMIN_PASSWORD, user_filter="(objectClass=computer)", **options).collect()
    (machine,) = [c for c in data.credentials if c.kind is CredentialKind.ACCOUNT]
    conn = samba.connect()
    conn.search(
        machine.account_id, "(objectClass=*)", "BASE", attributes=["userAccountControl", "sAMAccountName"]
    )
    (before,) = conn.entries
    assert str(before.sAMAccountName).endswith("$")
    assert str(before.sAMAccountName).lower() not in {"administrator", "krbtgt", "guest"}

    step = apply_step(revoker(ADMIN_PASSWORD, **options), LOCK, target_for(data, machine))

    assert step.status == "failed"
    assert f"refusing built-in/critical AD account {machine.account_id}" in (step.error or "")
    conn.search(machine.account_id, "(objectClass=*)", "BASE", attributes=["userAccountControl"])
    (after,) = conn.entries
    assert after.userAccountControl.value == before.userAccountControl.value
    conn.unbind()
