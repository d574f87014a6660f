"""The LDAP part of ``offboard-audit demo``: an in-memory OpenLDAP-like directory.

Built with ldap3's ``MOCK_SYNC`` strategy (no network, no server). Entries are seeded from
the demo's HR people so that the audit has something to say about each case: a credential
used after termination (bob), live credentials of a leaver (carol), a properly locked
leaver (grace), the ambiguous "heidi", an orphan and a protected break-glass account.

Every entry carries an ``entryUUID`` (as slapd gives each entry), derived from its DN so that
the demo is the same on every run: the revoker checks it before each change like on a real
directory.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import ldap3

from connectors.ldap.dialects import PPOLICY_PERMANENT_LOCK, to_generalized_time
from offboard_audit.core.protocols import DemoPart
from offboard_audit.core.records import Person

BASE = "dc=example,dc=org"
PEOPLE = f"ou=people,{BASE}"
SERVICES = f"ou=services,{BASE}"
GROUPS = f"ou=groups,{BASE}"
BIND_DN = f"cn=auditor,{SERVICES}"
# A fixed in-memory password: the mock directory exists only inside this process.
BIND_PASSWORD = "demo-only"
SOURCE_NAME = "corp-ldap"
# Namespace of the demo's entryUUIDs (uuid5 of the DN): stable across runs, unique per entry.
_UUID_NAMESPACE = uuid.UUID("6f1b3c1e-2f43-4c55-9d0e-0ffb0a4d1e70")

# Demo keys: public halves only (made up for the demo, not anyone's real key).
_KEYS = {
    "bob": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBobLeaverDemoKeyBobLeaverDemoKeyBob0 bob@laptop",
    "cgone": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAICarolGoneDemoKeyCarolGoneDemoKeyCar0 carol@desk",
    "alice": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAliceActiveDemoKeyAliceActiveDemoKe0 alice@mac",
}


def _person_entry(p: Person, uid: str, now: datetime) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        "objectClass": ["inetOrgPerson", "ldapPublicKey"],
        "uid": [uid],
        "cn": [p.name],
        "sn": [p.name.split()[-1]],
        "displayName": [p.name],
        "employeeNumber": [p.employee_id],
        "createTimestamp": ["20240101090000Z"],
    }
    if p.email:
        attrs["mail"] = [p.email]
    last = now - timedelta(days=1)
    if p.is_departed(now) and p.terminated_at is not None:
        if uid == "bob":
            # Used twelve days after termination: the critical case.
            last = min(p.terminated_at + timedelta(days=12), now)
        else:
            last = p.terminated_at - timedelta(days=3)
        if uid == "grace":
            # A leaver who was offboarded properly: locked, no keys, no groups.
            attrs["pwdAccountLockedTime"] = [PPOLICY_PERMANENT_LOCK]
    attrs["pwdLastSuccess"] = [to_generalized_time(last)]
    if uid in _KEYS:
        attrs["sshPublicKey"] = [_KEYS[uid]]
    return attrs


def build_directory(people: Sequence[Person], now: datetime) -> Any:
    """An ldap3 mock Server holding the demo tree (entries live in ``server.dit``)."""
    server = ldap3.Server("ldap.demo.invalid", get_info=ldap3.NONE)
    conn = ldap3.Connection(server, user=BIND_DN, password=BIND_PASSWORD, client_strategy=ldap3.MOCK_SYNC)

    def add(dn: str, attrs: Mapping[str, Any]) -> None:
        entry_uuid = str(uuid.uuid5(_UUID_NAMESPACE, dn.lower()))
        conn.strategy.add_entry(dn, {**attrs, "entryUUID": [entry_uuid]})

    add(BASE, {"objectClass": ["dcObject", "organization"], "dc": ["example"], "o": ["Example"]})
    for ou in ("people", "services", "groups"):
        add(f"ou={ou},{BASE}", {"objectClass": ["organizationalUnit"], "ou": [ou]})
    add(
        BIND_DN,
        {
            "objectClass": ["applicationProcess", "simpleSecurityObject"],
            "cn": ["auditor"],
            "userPassword": [BIND_PASSWORD],
        },
    )
    members: dict[str, list[str]] = {"engineering": [], "prod-admins": []}
    uids: set[str] = set()
    for p in people:
        if "heidi" in p.aliases:
            continue  # the two Heidis share one ambiguous account below
        names = [a for a in p.aliases if "@" not in a]
        uid = names[0] if names else (p.email or p.employee_id).split("@")[0]
        if uid in uids:
            continue
        uids.add(uid)
        dn = f"uid={uid},{PEOPLE}"
        add(dn, _person_entry(p, uid, now))
        if uid in ("alice", "bob", "cgone"):
            members["engineering"].append(dn)
        if uid == "bob":
            members["prod-admins"].append(dn)
    # "heidi": no email, no employee number: matches both Heidis by alias, so it is ambiguous.
    add(
        f"uid=heidi,{PEOPLE}",
        {
            "objectClass": ["inetOrgPerson"],
            "uid": ["heidi"],
            "cn": ["heidi"],
            "sn": ["heidi"],
            "pwdLastSuccess": [to_generalized_time(now - timedelta(days=2))],
        },
    )
    # An orphan: nobody in HR.
    add(
        f"uid=mallory,{PEOPLE}",
        {
            "objectClass": ["inetOrgPerson"],
            "uid": ["mallory"],
            "cn": ["Mallory"],
            "sn": ["Unknown"],
            "mail": ["mallory@contractor.example.net"],
            "pwdLastSuccess": [to_generalized_time(now - timedelta(days=5))],
        },
    )
    # Break-glass (protected by the demo policy) and a service account.
    add(
        f"uid=breakglass,{PEOPLE}",
        {"objectClass": ["inetOrgPerson"], "uid": ["breakglass"], "cn": ["Break Glass"], "sn": ["Glass"]},
    )
    add(
        f"cn=backup-bot,{SERVICES}",
        {
            "objectClass": ["applicationProcess", "simpleSecurityObject"],
            "cn": ["backup-bot"],
            "userPassword": ["demo-only"],
        },
    )
    for group, dns in members.items():
        add(f"cn={group},{GROUPS}", {"objectClass": ["groupOfNames"], "cn": [group], "member": dns})
    conn.unbind()
    return server


def demo(people: Sequence[Person], now: datetime) -> DemoPart:
    server = build_directory(people, now)

    def connect() -> Any:
        conn = ldap3.Connection(
            server,
            user=BIND_DN,
            password=BIND_PASSWORD,
            client_strategy=ldap3.MOCK_SYNC,
            raise_exceptions=False,
        )
        if not conn.bind():
            raise RuntimeError(f"demo directory bind failed: {conn.result}")
        return conn

    source = {
        "name": SOURCE_NAME,
        "type": "ldap",
        "url": "ldap://ldap.demo.invalid",
        "bind_dn": BIND_DN,
        "base_dn": PEOPLE,
        "extra_base_dns": [SERVICES],
        "service_base_dns": [SERVICES],
        "group_base_dn": GROUPS,
        "dialect": "openldap",
        "user_filter": "(|(objectClass=inetOrgPerson)(objectClass=applicationProcess))",
    }
    return DemoPart(source=source, client=connect)
