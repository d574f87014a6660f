"""A ppolicy lockout that expires is not a disabled account (real slapd, ppolicy overlay).

After ``pwdMaxFailure`` failed binds, ppolicy writes the current time into
``pwdAccountLockedTime``; with a ``pwdLockoutDuration`` in the account's policy that lock ends
by itself once the duration has passed, and the attribute stays until the next successful bind.
Only ppolicy's ``000001010000Z`` locks an account until an administrator unlocks it. A leaver
who mistyped a password (or someone guessing it) must therefore not look locked: the source
would report the account credential inactive (no finding, an open one resolved) and the revoker
would call ``lock_account`` a no-op, while binds work again.
"""

from __future__ import annotations

import ldap3
import pytest

from connectors.ldap.dialects import OPENLDAP, PPOLICY_PERMANENT_LOCK
from connectors.ldap.revoker import LOCK
from offboard_audit.core.records import CredentialKind
from offboard_audit.engine.steps import apply_step, undo_step
from tests.connectors.ldap.helpers import creds_of, revoker, source, target_for
from tests.support.slapd import (
    AUDITOR_DN,
    AUDITOR_PASSWORD,
    BASE_DN,
    PEOPLE_DN,
    REVOKER_DN,
    REVOKER_PASSWORD,
    SlapdServer,
)

pytestmark = pytest.mark.slapd

POLICY = f"cn=lockout-300s,ou=policies,{BASE_DN}"
LEAVER = f"uid=lockedout,{PEOPLE_DN}"
TWIN = f"uid=lockedout-twin,{PEOPLE_DN}"
# A lockout an hour ago (or years ago): with pwdLockoutDuration 300 s it is long over.
EXPIRED_LOCK = "20200101000000Z"


def add_expired_lockouts(server: SlapdServer) -> None:
    def person(dn: str, uid: str) -> tuple[str, dict[str, list[str]]]:
        return dn, {
            "objectClass": ["inetOrgPerson"],
            "uid": [uid],
            "cn": [uid],
            "sn": [uid],
            "userPassword": [f"{uid}-pw"],
            "pwdPolicySubentry": [POLICY],
            "pwdAccountLockedTime": [EXPIRED_LOCK],
        }

    server.add_entries(
        [
            (
                POLICY,
                {
                    "objectClass": ["pwdPolicy", "person"],
                    "cn": ["lockout-300s"],
                    "sn": ["lockout-300s"],
                    "pwdAttribute": ["userPassword"],
                    "pwdLockout": ["TRUE"],
                    "pwdMaxFailure": ["3"],
                    "pwdLockoutDuration": ["300"],
                },
            ),
            person(LEAVER, "lockedout"),
            person(TWIN, "lockedout-twin"),
        ]
    )


def bind_works(server: SlapdServer, dn: str, password: str) -> bool:
    try:
        conn = server.connect(dn, password)
    except ldap3.core.exceptions.LDAPInvalidCredentialsResult:
        return False
    conn.unbind()  # type: ignore[attr-defined]
    return True


def lock_value(server: SlapdServer, dn: str) -> list[bytes]:
    conn = server.connect()
    conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["pwdAccountLockedTime"])  # type: ignore[attr-defined]
    values = list(conn.response[0]["raw_attributes"].get("pwdAccountLockedTime", []))  # type: ignore[attr-defined]
    conn.unbind()  # type: ignore[attr-defined]
    return values


def test_only_the_permanent_ppolicy_lock_counts_as_disabled() -> None:
    assert not OPENLDAP.enabled({"pwdAccountLockedTime": [PPOLICY_PERMANENT_LOCK.encode()]})
    assert OPENLDAP.enabled({"pwdAccountLockedTime": [EXPIRED_LOCK.encode()]})


def test_an_expired_lockout_is_read_as_enabled_and_lock_account_locks_it_for_good(slapd: SlapdServer) -> None:
    add_expired_lockouts(slapd)
    data = source(AUDITOR_PASSWORD, url=slapd.url, bind_dn=AUDITOR_DN, base_dn=PEOPLE_DN).collect()
    (account,) = creds_of(data, LEAVER, CredentialKind.ACCOUNT)
    # The independent answer: the twin, in the same state, can bind right now.
    assert bind_works(slapd, TWIN, "lockedout-twin-pw")
    assert account.active, "an expired lockout was reported as a disabled account"
    assert [a.enabled for a in data.accounts if a.account_id == LEAVER] == [True]

    rev = revoker(REVOKER_PASSWORD, url=slapd.url, bind_dn=REVOKER_DN, base_dn=PEOPLE_DN)
    target = target_for(data, account, "lockedout")
    result = apply_step(rev, LOCK, target)
    assert result.status == "applied", f"lock_account was {result.status} on an account that can bind"
    assert result.before is not None and result.before.value("pwdAccountLockedTime") == EXPIRED_LOCK
    assert lock_value(slapd, LEAVER) == [PPOLICY_PERMANENT_LOCK.encode()]
    assert not bind_works(slapd, LEAVER, "lockedout-pw")

    # Undo puts back exactly the prior value (the old lockout time), nothing more.
    undone = undo_step(rev, LOCK, target, result.before)
    assert undone.status == "restored"
    assert lock_value(slapd, LEAVER) == [EXPIRED_LOCK.encode()]
    assert bind_works(slapd, LEAVER, "lockedout-pw")
