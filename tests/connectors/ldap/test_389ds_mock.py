"""The 389-DS dialect on ldap3's in-memory MOCK_SYNC directory (no 389-DS server in CI).

What is proved here is the dialect's own logic (nsAccountLock, lastLoginTime), read and
written through real ldap3 operations; server behaviour is covered by the slapd and Samba tests.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ldap3

from connectors.ldap import PLUGIN, LdapSource
from connectors.ldap.revoker import LOCK, DS389Revoker
from offboard_audit.options import SourceOptions
from offboard_audit.protocols import SourceContext
from offboard_audit.records import ActionTarget, CredentialKind

BASE = "dc=example,dc=com"
PEOPLE = f"ou=people,{BASE}"
BIND = f"cn=audit,{BASE}"
USER = f"uid=jane,{PEOPLE}"


def directory() -> Any:
    server = ldap3.Server("ds.mock.invalid", get_info=ldap3.NONE)
    seed = ldap3.Connection(server, user=BIND, password="pw", client_strategy=ldap3.MOCK_SYNC)
    seed.strategy.add_entry(BASE, {"objectClass": ["domain"]})
    seed.strategy.add_entry(PEOPLE, {"objectClass": ["organizationalUnit"]})
    seed.strategy.add_entry(BIND, {"objectClass": ["person"], "userPassword": ["pw"]})
    seed.strategy.add_entry(
        USER,
        {
            "objectClass": ["inetOrgPerson"],
            "uid": ["jane"],
            "mail": ["jane@example.com"],
            "lastLoginTime": ["20261001120000Z"],
        },
    )

    def connect() -> Any:
        conn = ldap3.Connection(server, user=BIND, password="pw", client_strategy=ldap3.MOCK_SYNC)
        conn.bind()
        return conn

    return connect


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
    target = ActionTarget("ds", "ldap", USER, "jane", USER, CredentialKind.ACCOUNT)

    result = rev.apply(LOCK, target)
    assert result.changed and result.verified and result.before.value("nsAccountLock") == ""
    assert not src.collect().accounts[0].enabled
    assert not rev.apply(LOCK, target).changed

    undone = rev.undo(LOCK, target, result.before)
    assert undone.changed and undone.verified
    assert src.collect().accounts[0].enabled
