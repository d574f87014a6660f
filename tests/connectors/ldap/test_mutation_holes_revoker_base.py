"""What every LDAP action goes through in ``LdapRevoker``: the action definitions (the LDAP
rights an operator must grant), connecting, the identity read, the re-check right before a
modify (and before a restore) and the modify itself, with the exact errors an operator sees.

``LdapAction.define`` and ``_definitions`` run when ``connectors.ldap.revoker`` is imported, so
a test that only reads the real classes' ``actions`` never calls them again: the tests here
call both at test time and compare what they build with definitions written out in the test.

The directory is ldap3's in-memory MOCK_SYNC one (OpenLDAP dialect: ``entryUUID`` identity,
``pwdAccountLockedTime`` lock) except where a real slapd's answer is the point.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import ldap3
import pytest
from ldap3.core import exceptions as ldap_exc

from connectors.ldap import PLUGIN
from connectors.ldap.actions import LeaveGroup, LockAccount, OpenLDAPLock, RemoveSshKey
from connectors.ldap.dialects import PPOLICY_PERMANENT_LOCK
from connectors.ldap.revoker import (
    LEAVE_GROUP,
    LOCK,
    REMOVE_SSH_KEY,
    ADRevoker,
    DS389Revoker,
    LdapRevoker,
    OpenLDAPRevoker,
    _definitions,
)
from offboard_audit.core.actions import ActionDef, ActionTarget, ResourceState, Stage
from offboard_audit.core.errors import RevokeError, SourceError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.records import CredentialKind
from offboard_audit.engine.steps import apply_step, undo_step
from tests.connectors.ldap.helpers import ctx, table
from tests.support.slapd import AUDITOR_DN, AUDITOR_PASSWORD, PEOPLE_DN, REVOKER_DN, SlapdServer

BASE = "dc=example,dc=com"
PEOPLE = f"ou=people,{BASE}"
BIND = f"cn=audit,{BASE}"
USER = f"uid=jane,{PEOPLE}"
JANE_UUID = "3f1c1d0e-8a4b-4c5d-9e6f-0a1b2c3d4e5f"
URL = "ldap://ldap.mock.invalid"

LOCK_DESCRIPTION = "Lock/disable the directory account so that binds fail; undo unlocks it."
LEAVE_DESCRIPTION = (
    "Remove the account from one group; undo adds it back (to the same group, by its identity)."
)
SSH_DESCRIPTION = "Remove one sshPublicKey value (by fingerprint); undo re-adds the same key."
SSH_PERMISSION = "write sshPublicKey on the account entry"
MEMBER_PERMISSION = "write member, uniqueMember, memberUid on the group entry"


# --- definitions ----------------------------------------------------------------------------


def reversible(name: str, kind: CredentialKind, permission: str, description: str) -> ActionDef:
    """The definition every LDAP action has: the disable stage, reversible, one permission."""
    return ActionDef(
        name=name,
        credential_kind=kind,
        stage=Stage.DISABLE,
        reversible=True,
        permissions=(permission,),
        description=description,
    )


FROB = "write frobAttr on the account entry"


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (LockAccount, reversible("lock_account", CredentialKind.ACCOUNT, FROB, LOCK_DESCRIPTION)),
        (OpenLDAPLock, reversible("lock_account", CredentialKind.ACCOUNT, FROB, LOCK_DESCRIPTION)),
        (
            LeaveGroup,
            reversible("remove_group_membership", CredentialKind.GROUP_MEMBERSHIP, FROB, LEAVE_DESCRIPTION),
        ),
        (RemoveSshKey, reversible("remove_ssh_key", CredentialKind.SSH_KEY, FROB, SSH_DESCRIPTION)),
    ],
)
def test_define_builds_a_reversible_definition_from_the_class_and_the_one_permission_given(
    action: Any, expected: ActionDef
) -> None:
    assert action.define(FROB) == expected


def test_definitions_pairs_the_lock_with_leave_group_and_ssh_key_each_with_its_permission() -> None:
    lock = reversible("lock_account", CredentialKind.ACCOUNT, "write someLock on the account entry", "a lock")
    built = _definitions(lock, "write someMember on the group entry")
    assert list(built) == [LOCK, LEAVE_GROUP, REMOVE_SSH_KEY]
    assert dict(built) == {
        LOCK: lock,
        LEAVE_GROUP: reversible(
            "remove_group_membership",
            CredentialKind.GROUP_MEMBERSHIP,
            "write someMember on the group entry",
            LEAVE_DESCRIPTION,
        ),
        REMOVE_SSH_KEY: reversible("remove_ssh_key", CredentialKind.SSH_KEY, SSH_PERMISSION, SSH_DESCRIPTION),
    }
    with pytest.raises(TypeError):
        built[LOCK] = lock  # type: ignore[index]  # read-only, as the plugin declares it


@pytest.mark.parametrize(
    ("revoker_class", "lock_permission", "member_permission"),
    [
        (
            LdapRevoker,
            "write pwdAccountLockedTime (openldap) / userAccountControl (ad) / nsAccountLock (389ds) "
            "on the account entry",
            MEMBER_PERMISSION,
        ),
        (OpenLDAPRevoker, "write pwdAccountLockedTime on the account entry", MEMBER_PERMISSION),
        (DS389Revoker, "write nsAccountLock on the account entry", MEMBER_PERMISSION),
        (
            ADRevoker,
            "Write Property userAccountControl on the user object",
            "Write Property member on the group object",
        ),
    ],
)
def test_each_dialect_declares_the_rights_the_operator_must_grant(
    revoker_class: type[LdapRevoker], lock_permission: str, member_permission: str
) -> None:
    actions = revoker_class.actions
    assert {name: d.permissions for name, d in actions.items()} == {
        LOCK: (lock_permission,),
        LEAVE_GROUP: (member_permission,),
        REMOVE_SSH_KEY: (SSH_PERMISSION,),
    }
    assert [d.credential_kind for d in actions.values()] == [
        CredentialKind.ACCOUNT,
        CredentialKind.GROUP_MEMBERSHIP,
        CredentialKind.SSH_KEY,
    ]
    assert all(d.reversible and d.stage is Stage.DISABLE for d in actions.values())


# --- a revoker on ldap3's in-memory directory --------------------------------------------------


def jane(**extra: list[str]) -> dict[str, list[str]]:
    return {"objectClass": ["inetOrgPerson"], "uid": ["jane"], "mail": ["jane@example.com"], **extra}


def directory(entry: dict[str, list[str]]) -> tuple[Callable[[], Any], list[list[str]]]:
    """A connector to a mock directory holding jane as ``entry``, and the attribute lists of
    every base search made of jane's entry through it (in order)."""
    server = ldap3.Server("ldap.mock.invalid", get_info=ldap3.NONE)
    seed = ldap3.Connection(server, user=BIND, password="pw", client_strategy=ldap3.MOCK_SYNC)
    seed.strategy.add_entry(BASE, {"objectClass": ["domain"]})
    seed.strategy.add_entry(PEOPLE, {"objectClass": ["organizationalUnit"]})
    seed.strategy.add_entry(BIND, {"objectClass": ["person"], "userPassword": ["pw"]})
    seed.strategy.add_entry(USER, entry)
    asked: list[list[str]] = []

    def connect() -> Any:
        conn = ldap3.Connection(server, user=BIND, password="pw", client_strategy=ldap3.MOCK_SYNC)
        conn.bind()
        search = conn.search

        def recording(base: str, search_filter: str, **kwargs: Any) -> Any:
            if base == USER:
                asked.append(list(kwargs.get("attributes") or []))
            return search(base, search_filter, **kwargs)

        conn.search = recording
        return conn

    return connect, asked


def make_revoker(connect: Callable[[], Any], bind_dn: str = BIND, **extra: Any) -> LdapRevoker:
    options = SourceOptions(table(URL, bind_dn, PEOPLE, **extra))
    assert PLUGIN.make_revoker is not None
    rev = PLUGIN.make_revoker(options, ctx("pw", {"corp-ldap": connect}))
    assert isinstance(rev, OpenLDAPRevoker)
    return rev


def lock_target(account_uid: str = JANE_UUID) -> ActionTarget:
    return ActionTarget(
        "corp-ldap", "ldap", USER, "jane", USER, CredentialKind.ACCOUNT, account_uid=account_uid
    )


def locked_time(connect: Callable[[], Any]) -> list[str]:
    conn = connect()
    conn.search(USER, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["pwdAccountLockedTime"])
    values = conn.response[0]["raw_attributes"].get("pwdAccountLockedTime", [])
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


# --- modify -----------------------------------------------------------------------------------


def test_a_successful_lock_returns_from_change_and_the_step_carries_no_error_note() -> None:
    connect, _ = directory(jane(entryUUID=[JANE_UUID]))
    rev = make_revoker(connect)
    before = rev.specs[LOCK].read(lock_target())
    assert before.active

    rev.specs[LOCK].change(lock_target(), before)  # returns: the modify succeeded
    assert locked_time(connect) == [PPOLICY_PERMANENT_LOCK]

    connect, _ = directory(jane(entryUUID=[JANE_UUID]))
    step = apply_step(make_revoker(connect), LOCK, lock_target())
    assert step.status == "applied"
    assert step.error is None and step.message == ""  # not "the call reported an error ..."


class RefusingConnection:
    """A connection whose modify is answered with an LDAP error result (raise_exceptions=False)."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.result = result
        self.modified: list[tuple[str, dict[str, Any]]] = []

    def modify(self, dn: str, changes: dict[str, Any]) -> bool:
        self.modified.append((dn, changes))
        return False


CHANGES = {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, ["000001010000Z"])]}


def test_a_refused_modify_names_the_source_the_dn_and_the_servers_description_and_message() -> None:
    rev = make_revoker(directory(jane(entryUUID=[JANE_UUID]))[0])
    conn = RefusingConnection(
        {"result": 50, "description": "insufficientAccessRights", "message": "no write access to entry"}
    )
    with pytest.raises(RevokeError) as caught:
        rev.modify(conn, USER, CHANGES)
    assert str(caught.value) == (
        f"corp-ldap: modify of {USER} failed: insufficientAccessRights no write access to entry"
    )
    assert conn.modified == [(USER, CHANGES)]


def test_a_refused_modify_without_a_server_message_ends_with_the_description() -> None:
    rev = make_revoker(directory(jane(entryUUID=[JANE_UUID]))[0])
    for message in ("", None):
        conn = RefusingConnection({"result": 32, "description": "noSuchObject", "message": message})
        with pytest.raises(RevokeError) as caught:
            rev.modify(conn, USER, CHANGES)
        assert str(caught.value) == f"corp-ldap: modify of {USER} failed: noSuchObject"


def test_a_modify_that_raises_an_ldap_error_becomes_a_revoke_error_naming_source_and_dn() -> None:
    connect, _ = directory(jane(entryUUID=[JANE_UUID]))

    def resetting() -> Any:
        conn = connect()

        def modify(dn: str, changes: Any) -> bool:
            raise ldap_exc.LDAPSocketSendError("socket sending error[Errno 104] Connection reset by peer")

        conn.modify = modify
        return conn

    rev = make_revoker(resetting)
    before = rev.specs[LOCK].read(lock_target())
    with pytest.raises(RevokeError) as caught:
        rev.specs[LOCK].change(lock_target(), before)
    assert str(caught.value) == (
        f"corp-ldap: modify of {USER} failed: socket sending error[Errno 104] Connection reset by peer"
    )
    assert isinstance(caught.value.__cause__, ldap_exc.LDAPSocketSendError)


def test_slapd_refusing_a_read_only_binds_lock_fails_with_insufficient_access(slapd: SlapdServer) -> None:
    user = f"uid=ro-target,{PEOPLE_DN}"
    slapd.add_entries(
        [(user, {"objectClass": ["inetOrgPerson"], "uid": ["ro-target"], "cn": ["x"], "sn": ["x"]})]
    )
    assert PLUGIN.make_revoker is not None
    rev = PLUGIN.make_revoker(
        SourceOptions(table(slapd.url, AUDITOR_DN, PEOPLE_DN)),
        ctx(AUDITOR_PASSWORD),
    )
    assert isinstance(rev, LdapRevoker)
    target = ActionTarget("corp-ldap", "ldap", user, "ro-target", user, CredentialKind.ACCOUNT)
    with rev.session(target) as conn, pytest.raises(RevokeError) as caught:
        rev.modify(conn, user, CHANGES)
    assert str(caught.value).startswith(f"corp-ldap: modify of {user} failed: insufficientAccessRights")


# --- connecting -------------------------------------------------------------------------------


def test_a_connector_raising_an_ldap_error_is_a_revoke_error_naming_the_url() -> None:
    def refused() -> Any:
        raise ldap_exc.LDAPSocketOpenError(
            "socket connection error while opening: [Errno 111] Connection refused"
        )

    rev = make_revoker(refused)
    with pytest.raises(RevokeError) as caught:
        rev.specs[LOCK].read(lock_target())
    assert str(caught.value) == (
        f"{URL}: cannot connect: socket connection error while opening: [Errno 111] Connection refused"
    )


def test_a_connector_failing_otherwise_passes_its_own_message_on() -> None:
    def bad_bind() -> Any:
        raise SourceError(f"{URL}: bind as {BIND} failed: invalidCredentials")

    rev = make_revoker(bad_bind)
    with pytest.raises(RevokeError) as caught:
        rev.specs[LOCK].read(lock_target())
    assert str(caught.value) == f"{URL}: bind as {BIND} failed: invalidCredentials"


def test_slapd_bind_with_a_wrong_password_is_a_revoke_error_saying_the_bind_failed(
    slapd: SlapdServer,
) -> None:
    assert PLUGIN.make_revoker is not None
    rev = PLUGIN.make_revoker(
        SourceOptions(table(slapd.url, REVOKER_DN, PEOPLE_DN)),
        ctx("not-the-password"),
    )
    target = ActionTarget(
        "corp-ldap", "ldap", f"uid=x,{PEOPLE_DN}", "x", f"uid=x,{PEOPLE_DN}", CredentialKind.ACCOUNT
    )
    with pytest.raises(RevokeError) as caught:
        rev.specs[LOCK].read(target)
    assert str(caught.value) == f"{slapd.url}: bind as {REVOKER_DN} failed: invalidCredentials"


# --- identity ---------------------------------------------------------------------------------


def test_an_entry_without_a_readable_entryuuid_is_refused_naming_the_attribute_to_grant() -> None:
    rev = make_revoker(directory(jane())[0])  # no entryUUID visible to the bind identity
    with pytest.raises(RevokeError) as caught:
        rev.specs[LOCK].read(lock_target())
    assert str(caught.value) == (
        f"corp-ldap: {USER} has no readable entryUUID: grant the bind identity read access to "
        "entryUUID; refusing to act on a DN alone (it may have been reused)"
    )


# --- the re-check before a modify and before a restore ------------------------------------------


def test_the_recheck_before_a_revocation_reads_the_login_name_and_before_a_restore_only_the_identity() -> (
    None
):
    connect, asked = directory(jane(entryUUID=[JANE_UUID]))
    rev = make_revoker(connect)
    spec = rev.specs[LOCK]
    before = spec.read(lock_target())
    asked.clear()
    spec.change(lock_target(), before)
    assert asked == [["uid", "entryUUID"]]

    current = spec.read(lock_target())
    asked.clear()
    assert spec.restore is not None
    spec.restore(lock_target(), current, before)
    assert asked == [["entryUUID"]]
    assert locked_time(connect) == []


def test_undo_restores_a_lock_on_an_account_that_became_protected_after_the_revocation() -> None:
    connect, _ = directory(jane(entryUUID=[JANE_UUID]))
    locked = apply_step(make_revoker(connect), LOCK, lock_target())
    assert locked.status == "applied" and locked.before is not None
    assert locked_time(connect) == [PPOLICY_PERMANENT_LOCK]

    # The account is protected now (by DN): a new revocation is refused, its undo is not.
    protected = make_revoker(connect, protected_dns=[USER])
    with pytest.raises(RevokeError, match="refusing protected account"):
        protected.specs[LOCK].change(lock_target(), locked.before)
    undone = undo_step(protected, LOCK, lock_target(), locked.before)
    assert undone.status == "restored" and undone.error is None
    assert locked_time(connect) == []


def test_undo_restores_a_lock_on_the_entry_that_is_now_the_bind_identity() -> None:
    connect, _ = directory(jane(entryUUID=[JANE_UUID]))
    locked = apply_step(make_revoker(connect), LOCK, lock_target())
    assert locked.status == "applied" and locked.before is not None

    as_jane = make_revoker(connect, bind_dn=USER)
    undone = undo_step(as_jane, LOCK, lock_target(), locked.before)
    assert undone.status == "restored" and undone.error is None
    assert locked_time(connect) == []


# --- restored ---------------------------------------------------------------------------------


def test_a_group_undo_is_restored_only_once_every_removed_value_is_back() -> None:
    rev = make_revoker(directory(jane(entryUUID=[JANE_UUID]))[0])
    spec = rev.specs[LEAVE_GROUP]
    group = f"cn=ops,{BASE}"
    prior = ResourceState(
        exists=True,
        active=True,
        data=(("group_dn", group), ("member", USER), ("memberUid", "jane")),
        identity=JANE_UUID,
    )
    partly = ResourceState(exists=True, active=True, data=(("group_dn", group), ("member", USER)))
    fully = ResourceState(exists=True, active=True, data=prior.data)
    assert spec.restored(partly, prior) is False
    assert spec.restored(fully, prior) is True
    # Nothing was removed from an inactive prior: any state counts as restored.
    was_out = ResourceState(exists=True, active=False, data=(("group_dn", group), ("member", USER)))
    assert spec.restored(ResourceState(exists=True, active=False), was_out) is True
