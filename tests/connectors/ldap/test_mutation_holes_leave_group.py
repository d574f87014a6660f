"""LeaveGroup (remove_group_membership) against the session slapd: the exact states its read
records (they go into the audit chain as Step.before/after), the exact group DN each modify
is sent to, and the operator error for a target that names no group.

The group DN a revoke or an undo writes to is the one the read found and recorded
(``group_dn`` in the state), falling back to the target's only when a recorded state has none.
"""

from __future__ import annotations

from typing import Any

import ldap3
import pytest

from connectors.ldap.actions import Changes
from connectors.ldap.revoker import LEAVE_GROUP, LdapRevoker
from offboard_audit.core.actions import ActionTarget, ResourceState
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.records import CredentialKind
from offboard_audit.core.stored import ActionStatus
from offboard_audit.engine.steps import apply_step, read_state, undo_step
from tests.connectors.ldap.helpers import revoker
from tests.support.slapd import GROUPS_DN, PEOPLE_DN, REVOKER_DN, REVOKER_PASSWORD, SlapdServer

pytestmark = pytest.mark.slapd

JANE = f"uid=jane,{PEOPLE_DN}"
KARL = f"uid=karl,{PEOPLE_DN}"
DEVS = f"cn=devs,{GROUPS_DN}"  # groupOfNames: member
UNIX = f"cn=unix,{GROUPS_DN}"  # posixGroup: memberUid
AUDITORS = f"cn=auditors,{GROUPS_DN}"  # groupOfUniqueNames: uniqueMember (no memberof refint)
GONE = f"cn=gone,{GROUPS_DN}"  # never created
# DEVS as a plan may spell it: the directory matches DNs case-insensitively, and answers with
# the DN as stored.
DEVS_SHOUTED = "CN=Devs,OU=Groups,DC=example,DC=org"


def person(uid: str) -> tuple[str, dict[str, list[str]]]:
    return (
        f"uid={uid},{PEOPLE_DN}",
        {"objectClass": ["inetOrgPerson"], "uid": [uid], "cn": [uid.title()], "sn": [uid]},
    )


def seed(slapd: SlapdServer) -> str:
    """Jane and Karl, one group of each kind; returns jane's entryUUID."""
    slapd.add_entries(
        [
            person("jane"),
            person("karl"),
            (DEVS, {"objectClass": ["groupOfNames"], "cn": ["devs"], "member": [JANE, KARL]}),
            (
                UNIX,
                {
                    "objectClass": ["posixGroup"],
                    "cn": ["unix"],
                    "gidNumber": ["6000"],
                    "memberUid": ["jane", "karl"],
                },
            ),
            (
                AUDITORS,
                {"objectClass": ["groupOfUniqueNames"], "cn": ["auditors"], "uniqueMember": [JANE, KARL]},
            ),
        ]
    )
    return str(attribute(slapd, JANE, "entryUUID")[0])


def group_uuid(slapd: SlapdServer, dn: str) -> str:
    return str(attribute(slapd, dn, "entryUUID")[0])


def attribute(slapd: SlapdServer, dn: str, name: str) -> list[Any]:
    conn: Any = slapd.connect()
    try:
        conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=[name])
        (entry,) = conn.response
        return list(entry["attributes"].get(name) or [])
    finally:
        conn.unbind()


def leave(
    group_dn: str, uuid: str, credential_id: str | None = None, detail: str | None = None
) -> ActionTarget:
    return ActionTarget(
        source="corp-ldap",
        system="ldap",
        account_id=JANE,
        username="jane",
        credential_id=f"group:{group_dn}" if credential_id is None else credential_id,
        credential_kind=CredentialKind.GROUP_MEMBERSHIP,
        detail=group_dn if detail is None else detail,
        account_uid=uuid,
    )


def make_revoker(slapd: SlapdServer) -> LdapRevoker:
    return revoker(REVOKER_PASSWORD, url=slapd.url, bind_dn=REVOKER_DN, base_dn=PEOPLE_DN)


def record_modifies(rev: LdapRevoker, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Changes]]:
    """Every modify the revoker sends (DN and changes), still sent to the server."""
    sent: list[tuple[str, Changes]] = []
    real = rev.modify

    def modify(conn: Any, dn: str, changes: Changes) -> None:
        sent.append((dn, changes))
        real(conn, dn, changes)

    monkeypatch.setattr(rev, "modify", modify)
    return sent


# --- read: the exact recorded states ---------------------------------------------------------


def test_read_of_a_member_records_the_group_dn_and_only_the_accounts_own_values(slapd: SlapdServer) -> None:
    uuid = seed(slapd)
    rev = make_revoker(slapd)
    for group, value in (
        (DEVS, ("member", JANE)),
        (UNIX, ("memberUid", "jane")),
        (AUDITORS, ("uniqueMember", JANE)),
    ):
        assert read_state(rev, LEAVE_GROUP, leave(group, uuid)) == ResourceState(
            exists=True,
            active=True,
            data=(("group_dn", group), ("group_identity", group_uuid(slapd, group)), value),
            identity=uuid,
        )


def test_apply_records_exact_before_and_after_states_and_deletes_only_janes_value(
    slapd: SlapdServer,
) -> None:
    uuid = seed(slapd)
    rev = make_revoker(slapd)
    step = apply_step(rev, LEAVE_GROUP, leave(UNIX, uuid))
    unix = ("group_identity", group_uuid(slapd, UNIX))
    assert step.status == ActionStatus.APPLIED
    assert step.before == ResourceState(
        exists=True, active=True, data=(("group_dn", UNIX), unix, ("memberUid", "jane")), identity=uuid
    )
    assert step.after == ResourceState(
        exists=True, active=False, data=(("group_dn", UNIX), unix), identity=uuid
    )
    assert attribute(slapd, UNIX, "memberUid") == ["karl"]


def test_read_of_a_deleted_group_records_its_dn_as_not_found_and_apply_is_a_noop(slapd: SlapdServer) -> None:
    uuid = seed(slapd)
    rev = make_revoker(slapd)
    gone = ResourceState(exists=False, active=False, data=(("group_dn", GONE),), identity=uuid)
    assert read_state(rev, LEAVE_GROUP, leave(GONE, uuid)) == gone
    step = apply_step(rev, LEAVE_GROUP, leave(GONE, uuid))
    assert step.status == ActionStatus.NOOP and step.message == "not found: nothing to revoke"
    assert step.before == gone and step.after == gone


def test_read_after_the_account_is_deleted_has_no_identity_and_still_lists_the_dangling_value(
    slapd: SlapdServer,
) -> None:
    uuid = seed(slapd)
    rev = make_revoker(slapd)
    slapd.delete_entry(JANE)
    # uniqueMember is not kept in step by the memberof overlay: the old DN is still there.
    auditors = ("group_identity", group_uuid(slapd, AUDITORS))
    state = ResourceState(
        exists=True,
        active=True,
        data=(("group_dn", AUDITORS), auditors, ("uniqueMember", JANE)),
        identity=None,
    )
    assert read_state(rev, LEAVE_GROUP, leave(AUDITORS, uuid)) == state
    # No uid to compare memberUid values with: none is claimed.
    assert read_state(rev, LEAVE_GROUP, leave(UNIX, uuid)) == ResourceState(
        exists=True,
        active=False,
        data=(("group_dn", UNIX), ("group_identity", group_uuid(slapd, UNIX))),
        identity=None,
    )
    step = apply_step(rev, LEAVE_GROUP, leave(AUDITORS, uuid))
    assert step.status == ActionStatus.TARGET_CHANGED and step.before == state
    assert step.error == f"ldap account 'jane' (identity {uuid}) no longer exists"
    assert attribute(slapd, AUDITORS, "uniqueMember") == [JANE, KARL]


def test_read_of_a_missing_group_after_the_account_is_deleted_has_no_identity(slapd: SlapdServer) -> None:
    uuid = seed(slapd)
    rev = make_revoker(slapd)
    slapd.delete_entry(JANE)
    assert read_state(rev, LEAVE_GROUP, leave(GONE, uuid)) == ResourceState(
        exists=False, active=False, data=(("group_dn", GONE),), identity=None
    )


# --- which group DN is written ---------------------------------------------------------------


def test_revoke_and_undo_write_to_the_group_dn_the_read_recorded(
    slapd: SlapdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    uuid = seed(slapd)
    rev = make_revoker(slapd)
    sent = record_modifies(rev, monkeypatch)
    target = leave(DEVS_SHOUTED, uuid)

    step = apply_step(rev, LEAVE_GROUP, target)
    assert step.status == ActionStatus.APPLIED
    assert step.before == ResourceState(
        exists=True,
        active=True,
        data=(("group_dn", DEVS), ("group_identity", group_uuid(slapd, DEVS)), ("member", JANE)),
        identity=uuid,
    )
    assert sent == [(DEVS, {"member": [(ldap3.MODIFY_DELETE, [JANE])]})]
    assert attribute(slapd, DEVS, "member") == [KARL]

    sent.clear()
    assert step.before is not None
    undone = undo_step(rev, LEAVE_GROUP, target, step.before)
    assert undone.status == ActionStatus.RESTORED
    assert sent == [(DEVS, {"member": [(ldap3.MODIFY_ADD, [JANE])]})]
    assert sorted(attribute(slapd, DEVS, "member")) == sorted([JANE, KARL])


def test_a_recorded_state_without_group_dn_falls_back_to_the_targets_group(
    slapd: SlapdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    uuid = seed(slapd)
    rev = make_revoker(slapd)
    sent = record_modifies(rev, monkeypatch)
    target = leave(DEVS, uuid)
    devs = ("group_identity", group_uuid(slapd, DEVS))
    recorded = ResourceState(exists=True, active=True, data=(devs, ("member", JANE)), identity=uuid)

    rev.specs[LEAVE_GROUP].change(target, recorded)
    assert sent == [(DEVS, {"member": [(ldap3.MODIFY_DELETE, [JANE])]})]
    assert attribute(slapd, DEVS, "member") == [KARL]

    sent.clear()
    undone = undo_step(rev, LEAVE_GROUP, target, recorded)
    assert undone.status == ActionStatus.RESTORED
    assert sent == [(DEVS, {"member": [(ldap3.MODIFY_ADD, [JANE])]})]
    assert sorted(attribute(slapd, DEVS, "member")) == sorted([JANE, KARL])


# --- a target naming no group ----------------------------------------------------------------


def test_a_target_without_a_group_dn_fails_naming_its_credential_id(slapd: SlapdServer) -> None:
    uuid = seed(slapd)
    rev = make_revoker(slapd)
    target = leave(DEVS, uuid, credential_id="devs-membership", detail="")
    with pytest.raises(RevokeError) as raised:
        read_state(rev, LEAVE_GROUP, target)
    assert str(raised.value) == "no group DN in target 'devs-membership'"
    step = apply_step(rev, LEAVE_GROUP, target)
    assert step.status == ActionStatus.FAILED and step.before is None
    assert step.error == "could not read the state before acting: no group DN in target 'devs-membership'"
    assert sorted(attribute(slapd, DEVS, "member")) == sorted([JANE, KARL])
