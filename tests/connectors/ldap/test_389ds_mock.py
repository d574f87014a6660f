"""The 389-DS dialect on ldap3's in-memory MOCK_SYNC directory (no 389-DS server in CI).

What is proved here is the dialect's own logic (nsAccountLock, lastLoginTime), read and
written through real ldap3 operations; server behaviour is covered by the slapd and Samba tests.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ldap3
import pytest

from connectors.ldap import PLUGIN, LdapSource
from connectors.ldap.revoker import LOCK, DS389Revoker
from offboard_audit.core.actions import ActionTarget
from offboard_audit.core.errors import TargetChanged
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import CredentialKind
from offboard_audit.engine.steps import apply_step, read_state, undo_step

BASE = "dc=example,dc=com"
PEOPLE = f"ou=people,{BASE}"
BIND = f"cn=audit,{BASE}"
USER = f"uid=jane,{PEOPLE}"
# nsUniqueId as 389-DS writes it: four groups of eight hex digits.
JANE_ID = "8c7e3a01-1dd211b2-80b1d8a2-9c6ba8e5"
NEW_JANE_ID = "0b52e702-1dd311b2-a4f0c3d1-5e6f7a8b"


def jane(unique_id: str) -> dict[str, list[str]]:
    return {
        "objectClass": ["inetOrgPerson"],
        "uid": ["jane"],
        "mail": ["jane@example.com"],
        "lastLoginTime": ["20261001120000Z"],
        "nsUniqueId": [unique_id],
    }


def directory() -> Any:
    server = ldap3.Server("ds.mock.invalid", get_info=ldap3.NONE)
    seed = ldap3.Connection(server, user=BIND, password="pw", client_strategy=ldap3.MOCK_SYNC)
    seed.strategy.add_entry(BASE, {"objectClass": ["domain"]})
    seed.strategy.add_entry(PEOPLE, {"objectClass": ["organizationalUnit"]})
    seed.strategy.add_entry(BIND, {"objectClass": ["person"], "userPassword": ["pw"]})
    seed.strategy.add_entry(USER, jane(JANE_ID))

    def connect() -> Any:
        conn = ldap3.Connection(server, user=BIND, password="pw", client_strategy=ldap3.MOCK_SYNC)
        conn.bind()
        return conn

    return connect


def replace_jane(connect: Any) -> None:
    """Delete jane and add a new entry under the same DN (a new hire reusing the name)."""
    conn = connect()
    assert conn.delete(USER)
    conn.strategy.add_entry(USER, jane(NEW_JANE_ID))


def build(connect: Any) -> tuple[LdapSource, Any]:
    table = {
        "name": "ds",
        "type": "ldap",
        "url": "ldap://ds.mock.invalid",
        "bind_dn": BIND,
        "base_dn": PEOPLE,
        "dialect": "389ds",
    }
    ctx = SourceContext(Path("."), clients={"ds": connect})
    src = PLUGIN.make_source(SourceOptions(table), ctx)
    assert isinstance(src, LdapSource) and PLUGIN.make_revoker is not None
    return src, PLUGIN.make_revoker(SourceOptions(table), ctx)


def test_389ds_lock_sets_nsaccountlock_is_idempotent_and_undo_removes_it() -> None:
    src, rev = build(directory())
    assert isinstance(rev, DS389Revoker)
    (account,) = src.collect().accounts
    assert account.enabled and account.last_login_at == datetime(2026, 10, 1, 12, tzinfo=UTC)
    target = ActionTarget("ds", "ldap", USER, "jane", USER, CredentialKind.ACCOUNT, account_uid=account.uid)

    result = apply_step(rev, LOCK, target)
    assert result.status == "applied" and result.before and result.before.value("nsAccountLock") == ""
    assert not src.collect().accounts[0].enabled
    assert apply_step(rev, LOCK, target).status == "noop"

    undone = undo_step(rev, LOCK, target, result.before)
    assert undone.status == "restored"
    assert src.collect().accounts[0].enabled


def test_389ds_account_uid_is_the_nsuniqueid_and_read_state_reports_it() -> None:
    src, rev = build(directory())
    (account,) = src.collect().accounts
    assert account.uid == JANE_ID
    target = ActionTarget("ds", "ldap", USER, "jane", USER, CredentialKind.ACCOUNT, account_uid=account.uid)
    assert read_state(rev, LOCK, target).identity == JANE_ID


def test_389ds_entry_re_added_under_the_same_dn_is_not_locked_nor_unlocked() -> None:
    connect = directory()
    src, rev = build(connect)
    (account,) = src.collect().accounts
    target = ActionTarget("ds", "ldap", USER, "jane", USER, CredentialKind.ACCOUNT, account_uid=account.uid)
    locked = apply_step(rev, LOCK, target)
    assert locked.status == "applied" and locked.before

    replace_jane(connect)
    assert read_state(rev, LOCK, target).identity == NEW_JANE_ID
    again = apply_step(rev, LOCK, target)
    assert again.status == "target-changed" and NEW_JANE_ID in (again.error or "")
    with pytest.raises(TargetChanged, match=NEW_JANE_ID):
        rev.specs[LOCK].change(target, locked.before)
    assert src.collect().accounts[0].enabled  # the new jane was not locked

    relock = connect()
    relock.modify(USER, {"nsAccountLock": [(ldap3.MODIFY_REPLACE, ["true"])]})
    undone = undo_step(rev, LOCK, target, locked.before)
    assert undone.status == "target-changed" and NEW_JANE_ID in (undone.error or "")
    assert not src.collect().accounts[0].enabled  # undo of the old lock did not unlock the new jane
