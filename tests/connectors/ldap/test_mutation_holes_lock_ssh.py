"""Lock and SSH-key actions: the exact states they record and the exact values they write.

The lock of each dialect is proved on ldap3's in-memory MOCK_SYNC directory (389-DS and AD
values: ``nsAccountLock: false`` put back on undo, only the ACCOUNTDISABLE bit flipped in
``userAccountControl``); SSH key removal and its partial restore run against the real slapd.
``Step.before``/``Step.after`` are what the audit chain records, so they are compared whole.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import ldap3
import pytest

from connectors.ldap import PLUGIN
from connectors.ldap.revoker import LOCK, REMOVE_SSH_KEY, LdapRevoker
from offboard_audit.core.actions import ActionTarget, ResourceState
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import CredentialKind
from offboard_audit.engine.steps import apply_step, read_state, undo_step
from tests.connectors.ldap.helpers import ED25519_FP, ED25519_KEY, RSA_KEY, revoker
from tests.support.slapd import PEOPLE_DN, REVOKER_DN, REVOKER_PASSWORD, SlapdServer

# --- in-memory directories (389-DS, AD) -------------------------------------------------------

DS_BASE = "dc=example,dc=com"
DS_PEOPLE = f"ou=people,{DS_BASE}"
DS_BIND = f"cn=audit,{DS_BASE}"
JANE = f"uid=jane,{DS_PEOPLE}"
JANE_ID = "8c7e3a01-1dd211b2-80b1d8a2-9c6ba8e5"

AD_BASE = "DC=corp,DC=example"
AD_USERS = f"OU=Staff,{AD_BASE}"
AD_BIND = f"CN=svc-revoke,{AD_BASE}"
JOHN = f"CN=John Doe,{AD_USERS}"
JOHN_GUID = "00112233-4455-6677-8899-aabbccddeeff"

# userAccountControl flags (MS-ADTS 2.2.16).
NORMAL_ACCOUNT = 0x200
DONT_EXPIRE_PASSWORD = 0x10000
PASSWD_NOTREQD = 0x20
ACCOUNTDISABLE = 0x2


def mock_directory(base: str, people: str, bind: str, entries: dict[str, dict[str, list[str]]]) -> Any:
    server = ldap3.Server("mock.invalid", get_info=ldap3.NONE)
    seed = ldap3.Connection(server, user=bind, password="pw", client_strategy=ldap3.MOCK_SYNC)
    seed.strategy.add_entry(base, {"objectClass": ["domain"]})
    seed.strategy.add_entry(people, {"objectClass": ["organizationalUnit"]})
    seed.strategy.add_entry(bind, {"objectClass": ["person"], "userPassword": ["pw"]})
    for dn, attrs in entries.items():
        seed.strategy.add_entry(dn, attrs)

    def connect() -> Any:
        conn = ldap3.Connection(server, user=bind, password="pw", client_strategy=ldap3.MOCK_SYNC)
        conn.bind()
        return conn

    return connect


def ds_directory(**extra: list[str]) -> Any:
    jane = {"objectClass": ["inetOrgPerson"], "uid": ["jane"], "nsUniqueId": [JANE_ID], **extra}
    return mock_directory(DS_BASE, DS_PEOPLE, DS_BIND, {JANE: jane})


def ad_directory(**extra: list[str]) -> Any:
    john = {
        "objectClass": ["top", "person", "user"],
        "sAMAccountName": ["jdoe"],
        "userPrincipalName": ["jdoe@corp.example"],
        "objectGUID": [JOHN_GUID],
        **extra,
    }
    return mock_directory(AD_BASE, AD_USERS, AD_BIND, {JOHN: john})


def mock_revoker(connect: Any, dialect: str, bind: str, base: str) -> LdapRevoker:
    table = {
        "name": "dir",
        "type": "ldap",
        "url": "ldap://mock.invalid",
        "bind_dn": bind,
        "base_dn": base,
        "dialect": dialect,
    }
    assert PLUGIN.make_revoker is not None
    rev = PLUGIN.make_revoker(SourceOptions(table), SourceContext(Path("."), clients={"dir": connect}))
    assert isinstance(rev, LdapRevoker)
    return rev


def stored(connect: Any, dn: str, attribute: str) -> list[str]:
    """The values of ``attribute`` the directory holds now (read as the bind, not through the revoker)."""
    conn = connect()
    assert conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=[attribute])
    raw = conn.response[0]["raw_attributes"]
    return [
        v.decode() if isinstance(v, bytes) else str(v)
        for k, vs in raw.items()
        if k.lower() == attribute.lower()
        for v in vs
    ]


def overwrite(connect: Any, dn: str, attribute: str, value: str) -> None:
    conn = connect()
    assert conn.modify(dn, {attribute: [(ldap3.MODIFY_REPLACE, [value])]})


def jane_target() -> ActionTarget:
    return ActionTarget("dir", "ldap", JANE, "jane", JANE, CredentialKind.ACCOUNT, account_uid=JANE_ID)


def john_target() -> ActionTarget:
    return ActionTarget("dir", "ldap", JOHN, "jdoe", JOHN, CredentialKind.ACCOUNT, account_uid=JOHN_GUID)


# --- 389-DS lock ----------------------------------------------------------------------------


def test_389ds_lock_records_the_unlocked_entry_and_writes_lowercase_true() -> None:
    connect = ds_directory()
    rev = mock_revoker(connect, "389ds", DS_BIND, DS_PEOPLE)

    step = apply_step(rev, LOCK, jane_target())

    assert step.status == "applied"
    assert step.before == ResourceState(
        exists=True, active=True, data=(("nsAccountLock", ""),), identity=JANE_ID
    )
    assert step.after == ResourceState(
        exists=True, active=False, data=(("nsAccountLock", "true"),), identity=JANE_ID
    )
    # Exactly what `dsidm account lock` writes.
    assert stored(connect, JANE, "nsAccountLock") == ["true"]


def test_389ds_undo_puts_back_an_explicit_nsaccountlock_false() -> None:
    connect = ds_directory(nsAccountLock=["false"])
    rev = mock_revoker(connect, "389ds", DS_BIND, DS_PEOPLE)

    locked = apply_step(rev, LOCK, jane_target())
    assert locked.status == "applied"
    assert locked.before == ResourceState(
        exists=True, active=True, data=(("nsAccountLock", "false"),), identity=JANE_ID
    )
    assert stored(connect, JANE, "nsAccountLock") == ["true"]

    undone = undo_step(rev, LOCK, jane_target(), locked.before)

    assert undone.status == "restored"
    assert undone.before == ResourceState(
        exists=True, active=False, data=(("nsAccountLock", "true"),), identity=JANE_ID
    )
    assert undone.after == locked.before
    assert stored(connect, JANE, "nsAccountLock") == ["false"]


def test_389ds_undo_of_a_lock_on_an_entry_without_the_attribute_removes_it() -> None:
    connect = ds_directory()
    rev = mock_revoker(connect, "389ds", DS_BIND, DS_PEOPLE)
    locked = apply_step(rev, LOCK, jane_target())
    assert locked.before is not None

    undone = undo_step(rev, LOCK, jane_target(), locked.before)

    assert undone.status == "restored"
    assert undone.after == ResourceState(
        exists=True, active=True, data=(("nsAccountLock", ""),), identity=JANE_ID
    )
    assert stored(connect, JANE, "nsAccountLock") == []


def test_lock_and_ssh_key_reads_of_a_deleted_entry_record_no_entry_not_active() -> None:
    connect = ds_directory()
    rev = mock_revoker(connect, "389ds", DS_BIND, DS_PEOPLE)
    assert connect().delete(JANE)
    gone = ResourceState(exists=False, active=False)
    key = replace(jane_target(), credential_id=f"ssh:{ED25519_FP}", credential_kind=CredentialKind.SSH_KEY)

    assert read_state(rev, LOCK, jane_target()) == gone
    assert read_state(rev, REMOVE_SSH_KEY, key) == gone

    for action, target in ((LOCK, jane_target()), (REMOVE_SSH_KEY, key)):
        step = apply_step(rev, action, target)
        assert step.status == "target-changed"
        assert step.before == gone
        assert step.error == f"ldap account 'jane' (identity {JANE_ID}) no longer exists"


# --- AD lock --------------------------------------------------------------------------------


def test_ad_lock_sets_only_the_disable_bit_and_undo_clears_only_it_keeping_flags_set_since() -> None:
    was = NORMAL_ACCOUNT | DONT_EXPIRE_PASSWORD  # 66048
    connect = ad_directory(userAccountControl=[str(was)])
    rev = mock_revoker(connect, "ad", AD_BIND, AD_USERS)

    locked = apply_step(rev, LOCK, john_target())

    assert locked.status == "applied"
    assert locked.before == ResourceState(
        exists=True, active=True, data=(("userAccountControl", "66048"),), identity=JOHN_GUID
    )
    assert locked.after == ResourceState(
        exists=True, active=False, data=(("userAccountControl", "66050"),), identity=JOHN_GUID
    )
    assert stored(connect, JOHN, "userAccountControl") == [str(was | ACCOUNTDISABLE)]

    # While locked, an admin sets another flag: undo keeps it and clears only the disable bit.
    overwrite(connect, JOHN, "userAccountControl", str(was | ACCOUNTDISABLE | PASSWD_NOTREQD))
    undone = undo_step(rev, LOCK, john_target(), locked.before)

    assert undone.status == "restored"
    assert undone.before == ResourceState(
        exists=True, active=False, data=(("userAccountControl", "66082"),), identity=JOHN_GUID
    )
    assert undone.after == ResourceState(
        exists=True, active=True, data=(("userAccountControl", "66080"),), identity=JOHN_GUID
    )
    assert stored(connect, JOHN, "userAccountControl") == [str(was | PASSWD_NOTREQD)]


def test_ad_entry_without_useraccountcontrol_is_refused_naming_its_dn() -> None:
    connect = ad_directory()
    rev = mock_revoker(connect, "ad", AD_BIND, AD_USERS)

    step = apply_step(rev, LOCK, john_target())

    assert step.status == "failed"
    assert step.error == (
        f"could not read the state before acting: {JOHN} has no userAccountControl: not an AD user, refusing"
    )
    assert stored(connect, JOHN, "userAccountControl") == []


# --- SSH keys on slapd ----------------------------------------------------------------------

DAVE = f"uid=dave,{PEOPLE_DN}"
DAVE_UUID_ATTR = "entryUUID"
# The same ed25519 key under a second comment: another value, the same fingerprint.
ED25519_KEY_LAPTOP = ED25519_KEY.rsplit(" ", 1)[0] + " dave@laptop"


def add_dave(server: SlapdServer, keys: list[str]) -> str:
    server.add_entries(
        [
            (
                DAVE,
                {
                    "objectClass": ["inetOrgPerson", "ldapPublicKey"],
                    "uid": ["dave"],
                    "cn": ["Dave"],
                    "sn": ["dave"],
                    "sshPublicKey": keys,
                },
            )
        ]
    )
    conn: Any = server.connect()
    try:
        conn.search(DAVE, "(objectClass=*)", search_scope=ldap3.BASE, attributes=[DAVE_UUID_ATTR])
        (value,) = conn.response[0]["raw_attributes"][DAVE_UUID_ATTR]
        return str(value.decode())
    finally:
        conn.unbind()


def dave_keys(server: SlapdServer) -> list[str]:
    conn: Any = server.connect()
    try:
        conn.search(DAVE, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["sshPublicKey"])
        return sorted(v.decode() for v in conn.response[0]["raw_attributes"].get("sshPublicKey", []))
    finally:
        conn.unbind()


def ssh_target(uid: str) -> ActionTarget:
    return ActionTarget(
        "corp-ldap",
        "ldap",
        DAVE,
        "dave",
        f"ssh:{ED25519_FP}",
        CredentialKind.SSH_KEY,
        account_uid=uid,
    )


@pytest.mark.slapd
def test_ssh_key_removal_records_both_values_with_that_fingerprint_and_exists_until_removed(
    slapd: SlapdServer,
) -> None:
    uid = add_dave(slapd, [ED25519_KEY, ED25519_KEY_LAPTOP, RSA_KEY])
    rev = revoker(REVOKER_PASSWORD, url=slapd.url, bind_dn=REVOKER_DN, base_dn=PEOPLE_DN)

    step = apply_step(rev, REMOVE_SSH_KEY, ssh_target(uid))

    assert step.status == "applied"
    assert step.before == ResourceState(
        exists=True,
        active=True,
        data=(("sshPublicKey", ED25519_KEY), ("sshPublicKey", ED25519_KEY_LAPTOP)),
        identity=uid,
    )
    assert step.after == ResourceState(exists=False, active=False, data=(), identity=uid)
    assert dave_keys(slapd) == [RSA_KEY]


@pytest.mark.slapd
def test_ssh_key_undo_after_one_value_came_back_adds_only_the_missing_one(slapd: SlapdServer) -> None:
    uid = add_dave(slapd, [ED25519_KEY, ED25519_KEY_LAPTOP])
    rev = revoker(REVOKER_PASSWORD, url=slapd.url, bind_dn=REVOKER_DN, base_dn=PEOPLE_DN)
    removed = apply_step(rev, REMOVE_SSH_KEY, ssh_target(uid))
    assert removed.status == "applied" and removed.before is not None
    assert dave_keys(slapd) == []

    # Someone already put one of the two values back by hand.
    conn: Any = slapd.connect()
    try:
        conn.modify(DAVE, {"sshPublicKey": [(ldap3.MODIFY_ADD, [ED25519_KEY])]})
    finally:
        conn.unbind()

    undone = undo_step(rev, REMOVE_SSH_KEY, ssh_target(uid), removed.before)

    assert undone.status == "restored", undone.error
    assert undone.before == ResourceState(
        exists=True, active=True, data=(("sshPublicKey", ED25519_KEY),), identity=uid
    )
    assert undone.after == removed.before
    assert dave_keys(slapd) == sorted([ED25519_KEY, ED25519_KEY_LAPTOP])
