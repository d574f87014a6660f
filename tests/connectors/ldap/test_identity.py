"""Name reuse: an entry deleted and re-added under the same DN is never acted on by name.

Each account carries its immutable identity (``Account.uid``: OpenLDAP ``entryUUID``, AD
``objectGUID``). The real audit pipeline and the real revocation engine run against a real
slapd and a real Samba AD DC; between plan and apply (or apply and undo) the leaver's entry is
deleted and a new one is added under the same DN. Every action on it must come out
``target-changed`` with an audit event, the new entry untouched, while another leaver in the
same pass is revoked normally (so the identity check is not just refusing everything).
The actions' own re-check right before a modify (``change``/``restore`` raise ``TargetChanged``)
is tested directly too.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ldap3
import pytest

from connectors.ldap.dialects import AD, guid_string
from connectors.ldap.revoker import LEAVE_GROUP, LOCK, REMOVE_SSH_KEY
from offboard_audit.config import Config, load_config
from offboard_audit.core.actions import ResourceState
from offboard_audit.core.chain_verify import verify_chain
from offboard_audit.core.errors import TargetChanged
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import CredentialKind
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.engine.revocation import ApplyReport, RevocationEngine
from offboard_audit.engine.steps import apply_step, read_state, undo_step
from offboard_audit.storage.actions import iter_events
from offboard_audit.storage.store import Store
from tests.connectors.ldap.helpers import ED25519_KEY, RSA_KEY, creds_of, revoker, source, target_for
from tests.support.samba import ADMIN_PASSWORD as SAMBA_ADMIN_PASSWORD
from tests.support.samba import USERS_DN, SambaDC
from tests.support.slapd import (
    GROUPS_DN,
    PEOPLE_DN,
    REVOKER_DN,
    REVOKER_PASSWORD,
    SlapdServer,
)

TERMINATED = datetime.now(UTC) - timedelta(days=30)
PASSWORD_ENV = "LDAP_BIND_PASSWORD"


@dataclass
class Audit:
    """The audit pipeline and revocation engine of one config, on SQLite."""

    config: Config
    store: Store
    ctx: SourceContext

    def run(self) -> None:
        result = Pipeline(self.config, self.store, self.ctx).run(datetime.now(UTC))
        ldap = next(s for s in result.sources if s.name == "corp-ldap")
        assert ldap.error is None and not ldap.failed_scopes, ldap

    def engine(self) -> RevocationEngine:
        return RevocationEngine(self.config, self.store, self.ctx, "test")

    def revoke(self) -> ApplyReport:
        report = self.engine().revoke(datetime.now(UTC), apply=True)
        assert report.refused is None, report.refused
        return report

    def events(self, status: str) -> list[dict[str, Any]]:
        found = [json.loads(e.payload_json) for e in iter_events(self.store)]
        return [p for p in found if p.get("status") == status]


def make_audit(tmp_path: Path, hr_rows: str, ldap_table: str, password: str) -> Iterator[Audit]:
    (tmp_path / "hr.csv").write_text(
        "employee_id,email,name,status,termination_date,aliases\n" + hr_rows, encoding="utf-8"
    )
    path = tmp_path / "offboard-audit.toml"
    path.write_text(
        f"""
[database]
url = "sqlite:///{tmp_path / "audit.db"}"

[policy]
max_new_terminations = 1.0

[[sources]]
name = "hr"
type = "hr_csv"
path = "hr.csv"

[[sources]]
name = "corp-ldap"
type = "ldap"
password_env = "{PASSWORD_ENV}"
{ldap_table}
""",
        encoding="utf-8",
    )
    env = {PASSWORD_ENV: password}
    config = load_config(path, env=env)
    store = Store.open(config.database_url)
    try:
        yield Audit(config, store, SourceContext(base_dir=tmp_path, env=env))
    finally:
        store.engine.dispose()


def by_account(report: ApplyReport) -> dict[str, set[str]]:
    """Outcome statuses per account name."""
    out: dict[str, set[str]] = {}
    for o in report.outcomes:
        out.setdefault(o.account, set()).add(o.status)
    return out


# --- OpenLDAP (real slapd) ------------------------------------------------------------------

DAVE = f"uid=dave,{PEOPLE_DN}"
ERIN = f"uid=erin,{PEOPLE_DN}"
DAVE_ENG = f"cn=dave-eng,{GROUPS_DN}"
DAVE_OPS = f"cn=dave-ops,{GROUPS_DN}"


def person(uid: str, number: str, **extra: list[str]) -> tuple[str, dict[str, list[str]]]:
    attrs = {
        "objectClass": ["inetOrgPerson", "ldapPublicKey"],
        "uid": [uid],
        "cn": [uid.title()],
        "sn": [uid],
        "mail": [f"{uid}@example.com"],
        "employeeNumber": [number],
        "userPassword": [f"{uid}-pw"],
        **extra,
    }
    return f"uid={uid},{PEOPLE_DN}", attrs


@pytest.fixture
def slapd_audit(slapd: SlapdServer, tmp_path: Path) -> Iterator[Audit]:
    slapd.add_entries(
        [
            person("dave", "E7001", sshPublicKey=[ED25519_KEY]),
            person("erin", "E7002", sshPublicKey=[RSA_KEY]),
            # groupOfNames keeps a second member: memberof's refint empties it when dave goes.
            (DAVE_ENG, {"objectClass": ["groupOfNames"], "cn": ["dave-eng"], "member": [DAVE, REVOKER_DN]}),
            (
                DAVE_OPS,
                {
                    "objectClass": ["posixGroup"],
                    "cn": ["dave-ops"],
                    "gidNumber": ["7001"],
                    "memberUid": ["dave"],
                },
            ),
        ]
    )
    hr = (
        f"E7001,dave@example.com,Dave Leaver,terminated,{TERMINATED.isoformat()},dave\n"
        f"E7002,erin@example.com,Erin Leaver,terminated,{TERMINATED.isoformat()},erin\n"
    )
    table = (
        f'url = "{slapd.url}"\nbind_dn = "{REVOKER_DN}"\nbase_dn = "{PEOPLE_DN}"\n'
        f'group_base_dn = "{GROUPS_DN}"\ndialect = "openldap"\n'
    )
    yield from make_audit(tmp_path, hr, table, REVOKER_PASSWORD)


def entry_uuid(slapd: SlapdServer, dn: str) -> str:
    conn: Any = slapd.connect()
    conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["entryUUID"])
    value = str(conn.entries[0].entryUUID.value)
    conn.unbind()
    return value


def dave_as_it_is(slapd: SlapdServer) -> dict[str, Any]:
    """What a change to dave would show: lock, keys, group memberships (read as the admin)."""
    conn: Any = slapd.connect()
    conn.search(
        DAVE, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["pwdAccountLockedTime", "sshPublicKey"]
    )
    entry = conn.response[0]["raw_attributes"]
    conn.search(GROUPS_DN, f"(|(member={DAVE})(memberUid=dave))", attributes=["cn"])
    groups = sorted(str(e.cn.value) for e in conn.entries)
    conn.unbind()
    return {
        "locked": bool(entry.get("pwdAccountLockedTime")),
        "keys": sorted(v.decode() for v in entry.get("sshPublicKey", [])),
        "groups": groups,
    }


def replace_dave(slapd: SlapdServer, **extra: list[str]) -> str:
    """Delete dave and add a new entry under the same DN; returns the new entryUUID."""
    slapd.delete_entry(DAVE)
    slapd.add_entries([person("dave", "E7001", **extra)])
    conn: Any = slapd.connect()
    # memberof's refint dropped the old dave from dave-eng; memberUid=dave still names the new one.
    members = conn.search(DAVE_ENG, "(member=*)", search_scope=ldap3.BASE, attributes=["member"])
    assert members
    conn.unbind()
    return entry_uuid(slapd, DAVE)


def add_back_to_eng(slapd: SlapdServer) -> None:
    conn: Any = slapd.connect()
    conn.modify(DAVE_ENG, {"member": [(ldap3.MODIFY_ADD, [DAVE])]})
    conn.unbind()


@pytest.mark.slapd
def test_slapd_entry_re_added_under_the_same_dn_between_plan_and_apply_is_left_untouched(
    slapd: SlapdServer, slapd_audit: Audit
) -> None:
    old_uuid = entry_uuid(slapd, DAVE)
    slapd_audit.run()
    planned = slapd_audit.engine().plan(datetime.now(UTC))
    dave_actions = {a.action for a in planned.actions if a.username == "dave"}
    assert dave_actions == {LOCK, REMOVE_SSH_KEY, LEAVE_GROUP}
    assert {a.account_uid for a in planned.actions if a.username == "dave"} == {old_uuid}

    new_uuid = replace_dave(slapd, sshPublicKey=[ED25519_KEY])
    add_back_to_eng(slapd)
    assert new_uuid != old_uuid
    before = dave_as_it_is(slapd)
    assert before == {"locked": False, "keys": [ED25519_KEY], "groups": ["dave-eng", "dave-ops"]}

    report = slapd_audit.revoke()
    statuses = by_account(report)
    assert statuses["dave"] == {"target-changed"}
    assert len([o for o in report.outcomes if o.account == "dave"]) == 4  # lock, key, two groups
    assert statuses["erin"] == {"applied"}
    assert all(new_uuid in (o.error or "") for o in report.outcomes if o.account == "dave")

    assert dave_as_it_is(slapd) == before  # still unlocked, same key, same groups
    events = [e for e in slapd_audit.events("target-changed") if e["username"] == "dave"]
    assert len(events) == 4
    assert {e["account_uid"] for e in events} == {old_uuid}
    assert {e["observed_identity"] for e in events} == {new_uuid}
    assert verify_chain(iter_events(slapd_audit.store)).ok


@pytest.mark.slapd
def test_slapd_undo_after_the_entry_was_re_added_is_target_changed_and_restores_nothing(
    slapd: SlapdServer, slapd_audit: Audit
) -> None:
    slapd_audit.run()
    report = slapd_audit.revoke()
    assert by_account(report)["dave"] == {"applied"}
    assert dave_as_it_is(slapd) == {"locked": True, "keys": [], "groups": []}

    # A new dave, created locked (not yet onboarded), without keys or groups.
    new_uuid = replace_dave(slapd, pwdAccountLockedTime=["000001010000Z"])
    before = dave_as_it_is(slapd)
    assert before == {"locked": True, "keys": [], "groups": []}

    undo = slapd_audit.engine().undo_person("E7001", datetime.now(UTC))
    assert undo.outcomes and {o.status for o in undo.outcomes} == {"target-changed"}
    assert all(new_uuid in (o.error or "") for o in undo.outcomes)
    assert dave_as_it_is(slapd) == before  # not unlocked, no key or group put back
    assert len([e for e in slapd_audit.events("target-changed") if e["username"] == "dave"]) == 4


@pytest.mark.slapd
def test_slapd_actions_refuse_a_reused_dn_before_any_modify(slapd: SlapdServer) -> None:
    """The engine's read, and the actions' own re-check right before a modify, refuse a reused DN."""
    slapd.add_entries(
        [
            person("dave", "E7001", sshPublicKey=[ED25519_KEY]),
            (DAVE_ENG, {"objectClass": ["groupOfNames"], "cn": ["dave-eng"], "member": [DAVE, REVOKER_DN]}),
        ]
    )
    src = source(
        REVOKER_PASSWORD, url=slapd.url, bind_dn=REVOKER_DN, base_dn=PEOPLE_DN, group_base_dn=GROUPS_DN
    )
    data = src.collect()
    rev = revoker(REVOKER_PASSWORD, url=slapd.url, bind_dn=REVOKER_DN, base_dn=PEOPLE_DN)
    (account,) = creds_of(data, DAVE, CredentialKind.ACCOUNT)
    (key,) = creds_of(data, DAVE, CredentialKind.SSH_KEY)
    (group,) = creds_of(data, DAVE, CredentialKind.GROUP_MEMBERSHIP)
    targets = {
        LOCK: target_for(data, account),
        REMOVE_SSH_KEY: target_for(data, key),
        LEAVE_GROUP: target_for(data, group),
    }
    assert {t.account_uid for t in targets.values()} == {entry_uuid(slapd, DAVE)}
    assert read_state(rev, LOCK, targets[LOCK]).identity == targets[LOCK].account_uid
    priors = {action: read_state(rev, action, t) for action, t in targets.items()}

    new_uuid = replace_dave(slapd, sshPublicKey=[ED25519_KEY])
    add_back_to_eng(slapd)
    before = dave_as_it_is(slapd)
    for action, target in targets.items():
        assert read_state(rev, action, target).identity == new_uuid
        step = apply_step(rev, action, target)
        assert step.status == "target-changed" and new_uuid in (step.error or "")
        # What the engine read before was the old entry: the change re-checks on its own connection.
        with pytest.raises(TargetChanged, match=new_uuid):
            rev.specs[action].change(target, priors[action])
    assert dave_as_it_is(slapd) == before

    conn: Any = slapd.connect()
    conn.modify(DAVE, {"pwdAccountLockedTime": [(ldap3.MODIFY_REPLACE, ["000001010000Z"])]})
    conn.unbind()
    undone = undo_step(rev, LOCK, targets[LOCK], priors[LOCK])
    assert undone.status == "target-changed" and new_uuid in (undone.error or "")
    restore = rev.specs[LOCK].restore
    assert restore is not None
    with pytest.raises(TargetChanged, match=new_uuid):
        restore(targets[LOCK], ResourceState(exists=True, active=False, identity=new_uuid), priors[LOCK])
    assert dave_as_it_is(slapd)["locked"]

    slapd.delete_entry(DAVE)
    gone = read_state(rev, LOCK, targets[LOCK])
    assert gone.identity is None and not gone.exists
    step = apply_step(rev, REMOVE_SSH_KEY, targets[REMOVE_SSH_KEY])
    assert step.status == "target-changed" and "no longer exists" in (step.error or "")
    with pytest.raises(TargetChanged, match="no longer exists"):
        rev.specs[REMOVE_SSH_KEY].change(targets[REMOVE_SSH_KEY], priors[REMOVE_SSH_KEY])


# --- Active Directory (real Samba AD DC) ----------------------------------------------------

SAMBA_PASSWORD = "Us3r-Passw0rd!"


@pytest.fixture
def samba_audit(samba: SambaDC, tmp_path: Path) -> Iterator[Audit]:
    hr = (
        f"E7101,dleaver@example.com,D Leaver,terminated,{TERMINATED.isoformat()},dleaver\n"
        f"E7102,eleaver@example.com,E Leaver,terminated,{TERMINATED.isoformat()},eleaver\n"
    )
    table = f'url = "{samba.url}"\nbind_dn = "{samba.admin_upn}"\nbase_dn = "{USERS_DN}"\ndialect = "ad"\n'
    yield from make_audit(tmp_path, hr, table, SAMBA_ADMIN_PASSWORD)


def object_guid(dc: SambaDC, dn: str) -> str:
    conn = dc.connect()
    conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["objectGUID"])
    raw = conn.response[0]["raw_attributes"]["objectGUID"][0]
    conn.unbind()
    return guid_string(raw)


def ad_user_as_it_is(dc: SambaDC, dn: str) -> dict[str, Any]:
    conn = dc.connect()
    conn.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=["userAccountControl", "memberOf"])
    raw = conn.response[0]["raw_attributes"]
    conn.unbind()
    return {
        "uac": int(raw["userAccountControl"][0]),
        "groups": sorted(v.decode().lower() for v in raw.get("memberOf", [])),
    }


def bind_ok(dc: SambaDC, sam: str) -> bool:
    try:
        dc.connect(f"{sam}@{dc.realm}", SAMBA_PASSWORD).unbind()
    except ldap3.core.exceptions.LDAPInvalidCredentialsResult:
        return False
    return True


def replace_ad_user(dc: SambaDC, dn: str, sam: str, number: str, uac: int | None = None) -> str:
    conn = dc.connect()
    conn.delete(dn)
    conn.unbind()
    again = dc.add_user(sam, SAMBA_PASSWORD, {"employeeID": [number]})
    assert again.lower() == dn.lower()
    if uac is not None:
        conn = dc.connect()
        conn.modify(dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [str(uac)])]})
        conn.unbind()
    return object_guid(dc, dn)


@pytest.mark.samba
def test_samba_user_re_added_under_the_same_dn_between_plan_and_apply_is_left_untouched(
    samba: SambaDC, samba_audit: Audit
) -> None:
    dleaver = samba.add_user("dleaver", SAMBA_PASSWORD, {"employeeID": ["E7101"]})
    samba.add_user("eleaver", SAMBA_PASSWORD, {"employeeID": ["E7102"]})
    group = samba.add_group("dl-eng", [dleaver])
    old_guid = object_guid(samba, dleaver)
    samba_audit.run()
    planned = samba_audit.engine().plan(datetime.now(UTC))
    assert {a.account_uid for a in planned.actions if a.username == "dleaver"} == {old_guid}

    new_guid = replace_ad_user(samba, dleaver, "dleaver", "E7101")
    conn = samba.connect()
    conn.modify(group, {"member": [(ldap3.MODIFY_ADD, [dleaver])]})
    conn.unbind()
    assert new_guid != old_guid
    before = ad_user_as_it_is(samba, dleaver)
    assert before == {"uac": 512, "groups": [group.lower()]}

    report = samba_audit.revoke()
    statuses = by_account(report)
    assert statuses["dleaver"] == {"target-changed"}
    assert {o.action for o in report.outcomes if o.account == "dleaver"} == {LOCK, LEAVE_GROUP}
    assert statuses["eleaver"] == {"applied"}
    assert not bind_ok(samba, "eleaver")

    assert ad_user_as_it_is(samba, dleaver) == before and bind_ok(samba, "dleaver")
    events = [e for e in samba_audit.events("target-changed") if e["username"] == "dleaver"]
    assert {e["observed_identity"] for e in events} == {new_guid} and len(events) == 2


@pytest.mark.samba
def test_samba_undo_after_the_user_was_re_added_is_target_changed(samba: SambaDC, samba_audit: Audit) -> None:
    dleaver = samba.add_user("dleaver", SAMBA_PASSWORD, {"employeeID": ["E7101"]})
    samba.add_group("dl-eng", [dleaver])
    samba_audit.run()
    assert by_account(samba_audit.revoke())["dleaver"] == {"applied"}

    new_guid = replace_ad_user(samba, dleaver, "dleaver", "E7101", uac=514)  # created disabled
    before = ad_user_as_it_is(samba, dleaver)
    assert before == {"uac": 514, "groups": []}
    undo = samba_audit.engine().undo_person("E7101", datetime.now(UTC))
    assert undo.outcomes and {o.status for o in undo.outcomes} == {"target-changed"}
    assert all(new_guid in (o.error or "") for o in undo.outcomes)
    assert ad_user_as_it_is(samba, dleaver) == before


@pytest.mark.samba
def test_samba_account_uid_is_the_object_guid_as_windows_prints_it(samba: SambaDC) -> None:
    dn = samba.add_user("guidcheck", None)
    data = source(
        SAMBA_ADMIN_PASSWORD, url=samba.url, bind_dn=samba.admin_upn, base_dn=USERS_DN, dialect="ad"
    ).collect()
    (account,) = [a for a in data.accounts if a.account_id.lower() == dn.lower()]
    # samba-tool's own rendering of the GUID (not ours) is the reference.
    assert account.uid == samba_tool_guid(samba, "guidcheck")
    assert str(uuid.UUID(account.uid)) == account.uid  # lower-case, hyphenated, no braces


def samba_tool_guid(dc: SambaDC, sam: str) -> str:
    """objectGUID as Samba's own tool prints it (the domain's smb.conf names the realm)."""
    import subprocess

    out = subprocess.run(
        [
            "samba-tool",
            "user",
            "show",
            sam,
            "--attributes=objectGUID",
            "-H",
            dc.url,
            "-U",
            f"Administrator%{SAMBA_ADMIN_PASSWORD}",
            "-s",
            str(dc.workdir / "etc" / "smb.conf"),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    (line,) = [ln for ln in out.splitlines() if ln.startswith("objectGUID:")]
    return line.split(":", 1)[1].strip()


def test_object_guid_bytes_become_the_windows_guid_string() -> None:
    # GUID 00112233-4455-6677-8899-aabbccddeeff: the first three fields travel little-endian.
    wire = bytes.fromhex("33221100554477668899aabbccddeeff")
    assert guid_string(wire) == "00112233-4455-6677-8899-aabbccddeeff"
    assert AD.identity({"objectGUID": [wire]}) == "00112233-4455-6677-8899-aabbccddeeff"
    assert guid_string("{00112233-4455-6677-8899-AABBCCDDEEFF}") == "00112233-4455-6677-8899-aabbccddeeff"
