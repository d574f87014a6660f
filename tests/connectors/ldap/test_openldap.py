"""The LDAP connector against a real OpenLDAP slapd (ppolicy, memberof, openssh-lpk)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ldap3
import pytest

from connectors.ldap.revoker import LEAVE_GROUP, LOCK, REMOVE_SSH_KEY
from offboard_audit.core.errors import RevokeError, SourceError
from offboard_audit.core.records import AccountKind, CredentialKind, Person, PersonStatus, SourceData
from offboard_audit.engine.steps import apply_step, undo_step
from tests.connectors.ldap.helpers import (
    ED25519_FP,
    ED25519_KEY,
    RSA_FP,
    RSA_KEY,
    creds_of,
    revoker,
    source,
    target_for,
)
from tests.support.ports import free_port
from tests.support.slapd import (
    AUDITOR_DN,
    AUDITOR_PASSWORD,
    BASE_DN,
    GROUPS_DN,
    LIMITED_DN,
    LIMITED_PASSWORD,
    PEOPLE_DN,
    REVOKER_DN,
    REVOKER_PASSWORD,
    SERVICES_DN,
    SlapdServer,
    start_slapd,
)

pytestmark = pytest.mark.slapd

ALICE = f"uid=alice,{PEOPLE_DN}"
BOB = f"uid=bob,{PEOPLE_DN}"
CAROL = f"uid=carol,{PEOPLE_DN}"
BREAKGLASS = f"uid=breakglass,{PEOPLE_DN}"
ENG = f"cn=eng,{GROUPS_DN}"
OPS = f"cn=ops,{GROUPS_DN}"
AUDIT = f"cn=audit,{GROUPS_DN}"


def person_entry(uid: str, number: str, mail: str, **extra: list[str]) -> tuple[str, dict[str, list[str]]]:
    attrs = {
        "objectClass": ["inetOrgPerson", "ldapPublicKey"],
        "uid": [uid],
        "cn": [uid.title()],
        "sn": [uid],
        "mail": [mail],
        "employeeNumber": [number],
        "userPassword": [f"{uid}-pw"],
    }
    attrs.update(extra)
    return f"uid={uid},{PEOPLE_DN}", attrs


def seed(server: SlapdServer) -> None:
    server.add_entries(
        [
            person_entry("alice", "E1", "alice@example.com", sshPublicKey=[ED25519_KEY, RSA_KEY]),
            person_entry("bob", "E2", "bob@example.com", pwdAccountLockedTime=["000001010000Z"]),
            person_entry("carol", "E3", "carol@example.com"),
            person_entry("breakglass", "E0", "root@example.com"),
            (ENG, {"objectClass": ["groupOfNames"], "cn": ["eng"], "member": [ALICE, CAROL]}),
            (
                OPS,
                {"objectClass": ["posixGroup"], "cn": ["ops"], "gidNumber": ["5000"], "memberUid": ["alice"]},
            ),
            (AUDIT, {"objectClass": ["groupOfUniqueNames"], "cn": ["audit"], "uniqueMember": [ALICE, BOB]}),
            (
                f"cn=backup-bot,{SERVICES_DN}",
                {
                    "objectClass": ["applicationProcess", "simpleSecurityObject"],
                    "cn": ["backup-bot"],
                    "userPassword": ["bot-pw"],
                },
            ),
        ]
    )


def auditor(server: SlapdServer, **extra: object) -> object:
    return source(AUDITOR_PASSWORD, url=server.url, bind_dn=AUDITOR_DN, base_dn=PEOPLE_DN, **extra)


def bind_works(server: SlapdServer, dn: str, password: str) -> bool:
    try:
        conn = server.connect(dn, password)
    except ldap3.core.exceptions.LDAPInvalidCredentialsResult:
        return False
    conn.unbind()  # type: ignore[attr-defined]
    return True


# --- reading --------------------------------------------------------------------------------


def test_collect_translates_lock_state_last_login_keys_and_all_group_kinds(slapd: SlapdServer) -> None:
    seed(slapd)
    before_bind = datetime.now(UTC).replace(microsecond=0)
    assert bind_works(slapd, ALICE, "alice-pw")  # ppolicy records pwdLastSuccess for this bind
    src = auditor(slapd, group_base_dn=GROUPS_DN)
    data = src.collect()  # type: ignore[attr-defined]

    by_dn = {a.account_id: a for a in data.accounts}
    assert set(by_dn) == {ALICE, BOB, CAROL, BREAKGLASS}
    alice, bob = by_dn[ALICE], by_dn[BOB]
    assert alice.enabled and not bob.enabled
    assert alice.username == "alice" and alice.emails == ("alice@example.com",)
    assert ("employeeNumber", "E1") in alice.attributes and ("mail", "alice@example.com") in alice.attributes
    assert alice.kind is AccountKind.HUMAN and alice.scope == PEOPLE_DN
    assert alice.last_login_at is not None and alice.last_login_at >= before_bind - timedelta(seconds=1)
    assert by_dn[CAROL].last_login_at is None  # never bound

    (alice_account,) = creds_of(data, ALICE, CredentialKind.ACCOUNT)
    assert alice_account.credential_id == ALICE and alice_account.active
    assert alice_account.last_used_at == alice.last_login_at
    (bob_account,) = creds_of(data, BOB, CredentialKind.ACCOUNT)
    assert not bob_account.active

    keys = {c.credential_id for c in creds_of(data, ALICE, CredentialKind.SSH_KEY)}
    assert keys == {f"ssh:{ED25519_FP}", f"ssh:{RSA_FP}"}

    groups = {c.detail.lower() for c in creds_of(data, ALICE, CredentialKind.GROUP_MEMBERSHIP)}
    # eng via memberOf/member, ops via memberUid, audit via uniqueMember.
    assert groups == {ENG.lower(), OPS.lower(), AUDIT.lower()}
    assert {c.detail.lower() for c in creds_of(data, BOB, CredentialKind.GROUP_MEMBERSHIP)} == {AUDIT.lower()}
    assert data.failed_scopes == ()
    assert set(data.scopes) == {PEOPLE_DN, GROUPS_DN}


def test_credential_ids_are_stable_across_runs(slapd: SlapdServer) -> None:
    seed(slapd)
    src = auditor(slapd, group_base_dn=GROUPS_DN)
    first = {c.key for c in src.collect().credentials}  # type: ignore[attr-defined]
    second = {c.key for c in src.collect().credentials}  # type: ignore[attr-defined]
    assert first == second and len(first) > 8


def test_memberof_alone_gives_groupofnames_memberships_without_group_base(slapd: SlapdServer) -> None:
    seed(slapd)
    data = auditor(slapd).collect()  # type: ignore[attr-defined]
    groups = {c.detail.lower() for c in creds_of(data, ALICE, CredentialKind.GROUP_MEMBERSHIP)}
    assert groups == {ENG.lower()}
    assert data.scopes == (PEOPLE_DN,)


def test_service_accounts_are_marked_by_object_class_in_an_extra_base(slapd: SlapdServer) -> None:
    seed(slapd)
    data = auditor(
        slapd,
        extra_base_dns=[SERVICES_DN],
        user_filter="(|(objectClass=inetOrgPerson)(objectClass=applicationProcess))",
    ).collect()  # type: ignore[attr-defined]
    bot = next(a for a in data.accounts if a.account_id == f"cn=backup-bot,{SERVICES_DN}")
    assert bot.kind is AccountKind.SERVICE and bot.scope == SERVICES_DN
    assert next(a for a in data.accounts if a.account_id == ALICE).kind is AccountKind.HUMAN


def test_a_missing_extra_base_is_a_failed_scope_while_the_others_are_read(slapd: SlapdServer) -> None:
    seed(slapd)
    missing = f"ou=gone,{BASE_DN}"
    data = auditor(slapd, extra_base_dns=[missing]).collect()  # type: ignore[attr-defined]
    assert [f.scope for f in data.failed_scopes] == [missing]
    assert "noSuchObject" in data.failed_scopes[0].error
    assert set(data.scopes) == {PEOPLE_DN, missing}
    assert {a.account_id for a in data.accounts} == {ALICE, BOB, CAROL, BREAKGLASS}


def test_detail_rereads_fresh_state_of_accounts_the_bulk_pass_did_not_read(slapd: SlapdServer) -> None:
    seed(slapd)
    bulk = auditor(slapd, group_base_dn=GROUPS_DN).collect()  # type: ignore[attr-defined]
    alice = next(a for a in bulk.accounts if a.account_id == ALICE)
    admin = slapd.connect()
    admin.modify(ALICE, {"sshPublicKey": [(ldap3.MODIFY_DELETE, [RSA_KEY])]})  # type: ignore[attr-defined]
    # A source instance that has not bulk-read alice (e.g. a later run, or the webhook path).
    detail = auditor(slapd, group_base_dn=GROUPS_DN).detail([alice])  # type: ignore[attr-defined]
    assert [a.account_id for a in detail.accounts] == [ALICE]
    assert {c.account_id for c in detail.credentials} == {ALICE}
    assert {c.credential_id for c in creds_of(detail, ALICE, CredentialKind.SSH_KEY)} == {f"ssh:{ED25519_FP}"}
    assert len(creds_of(detail, ALICE, CredentialKind.GROUP_MEMBERSHIP)) == 3


def test_detail_adds_nothing_for_accounts_its_own_bulk_pass_read_in_full(slapd: SlapdServer) -> None:
    seed(slapd)
    src = auditor(slapd, group_base_dn=GROUPS_DN)
    bulk = src.collect()  # type: ignore[attr-defined]
    alice = next(a for a in bulk.accounts if a.account_id == ALICE)
    assert src.detail([alice]) == SourceData()  # type: ignore[attr-defined]


def test_collect_for_finds_a_person_by_employee_number_email_or_alias(slapd: SlapdServer) -> None:
    seed(slapd)
    src = auditor(slapd)
    by_number = Person("E3", None, "Carol", PersonStatus.TERMINATED, datetime(2026, 1, 1, tzinfo=UTC))
    by_mail = Person("X9", "bob@example.com", "Bob", PersonStatus.ACTIVE)
    by_alias = Person("X8", None, "Al", PersonStatus.ACTIVE, aliases=("alice",))
    assert [a.account_id for a in src.collect_for(by_number).accounts] == [CAROL]  # type: ignore[attr-defined]
    assert [a.account_id for a in src.collect_for(by_mail).accounts] == [BOB]  # type: ignore[attr-defined]
    found = src.collect_for(by_alias)  # type: ignore[attr-defined]
    assert [a.account_id for a in found.accounts] == [ALICE]
    assert {c.account_id for c in found.credentials} == {ALICE}


# --- hostile input --------------------------------------------------------------------------

INJECTIONS = ("*)(uid=*))(|(uid=*", "*", "alice)(uid=*", "\\2a", "bob@example.com)(|(mail=*")


@pytest.mark.parametrize("evil", INJECTIONS)
def test_filter_injection_in_hr_values_matches_nothing_extra(slapd: SlapdServer, evil: str) -> None:
    seed(slapd)
    src = auditor(slapd)
    person = Person(
        evil, evil, evil, PersonStatus.TERMINATED, datetime(2026, 1, 1, tzinfo=UTC), aliases=(evil,)
    )
    data = src.collect_for(person)  # type: ignore[attr-defined]
    assert data.accounts == () and data.credentials == ()


def test_revoker_acts_only_on_the_exact_target_for_hostile_ids(slapd: SlapdServer) -> None:
    seed(slapd)
    rev = revoker(REVOKER_PASSWORD, url=slapd.url, bind_dn=REVOKER_DN, base_dn=PEOPLE_DN)
    data = auditor(slapd, group_base_dn=GROUPS_DN).collect()  # type: ignore[attr-defined]
    (key,) = [c for c in creds_of(data, ALICE, CredentialKind.SSH_KEY) if c.credential_id.endswith(RSA_FP)]
    # A wildcard "fingerprint" must remove nothing.
    wild = replace(target_for(data, key), credential_id="ssh:*")
    assert apply_step(rev, REMOVE_SSH_KEY, wild).status == "noop"
    # A DN built from hostile text is not a DN we audit: refused.
    hostile = replace(target_for(data, key), account_id=f"uid=*)(uid=*,{PEOPLE_DN}x")
    with pytest.raises(RevokeError):
        rev.specs[REMOVE_SSH_KEY].read(hostile)
    assert apply_step(rev, REMOVE_SSH_KEY, hostile).status == "failed"
    after = auditor(slapd).collect()  # type: ignore[attr-defined]
    assert len(creds_of(after, ALICE, CredentialKind.SSH_KEY)) == 2
    assert all(a.enabled for a in after.accounts if a.account_id != BOB)


# --- revoking -------------------------------------------------------------------------------


def test_lock_makes_the_bind_fail_is_idempotent_and_undo_unlocks(slapd: SlapdServer) -> None:
    seed(slapd)
    data = auditor(slapd).collect()  # type: ignore[attr-defined]
    (account,) = creds_of(data, CAROL, CredentialKind.ACCOUNT)
    rev = revoker(REVOKER_PASSWORD, url=slapd.url, bind_dn=REVOKER_DN, base_dn=PEOPLE_DN)
    target = target_for(data, account, "carol")
    assert bind_works(slapd, CAROL, "carol-pw")

    first = apply_step(rev, LOCK, target)
    assert first.status == "applied" and first.before and first.after
    assert first.before.active and not first.after.active
    assert not bind_works(slapd, CAROL, "carol-pw")

    assert apply_step(rev, LOCK, target).status == "noop"

    undone = undo_step(rev, LOCK, target, first.before)
    assert undone.status == "restored" and undone.after and undone.after.active
    assert bind_works(slapd, CAROL, "carol-pw")


def test_leave_group_updates_memberof_and_undo_restores_each_group_kind(slapd: SlapdServer) -> None:
    seed(slapd)
    src = auditor(slapd, group_base_dn=GROUPS_DN)
    rev = revoker(REVOKER_PASSWORD, url=slapd.url, bind_dn=REVOKER_DN, base_dn=PEOPLE_DN)
    data = src.collect()  # type: ignore[attr-defined]
    memberships = creds_of(data, ALICE, CredentialKind.GROUP_MEMBERSHIP)
    assert len(memberships) == 3
    results = {}
    for cred in memberships:
        results[cred.detail.lower()] = (cred, apply_step(rev, LEAVE_GROUP, target_for(data, cred, "alice")))
        assert results[cred.detail.lower()][1].status == "applied"
    assert creds_of(src.collect(), ALICE, CredentialKind.GROUP_MEMBERSHIP) == []  # type: ignore[attr-defined]
    # Carol is still in eng: only alice's value was removed.
    assert len(creds_of(src.collect(), CAROL, CredentialKind.GROUP_MEMBERSHIP)) == 1  # type: ignore[attr-defined]
    assert apply_step(rev, LEAVE_GROUP, target_for(data, memberships[0], "alice")).status == "noop"

    for cred, result in results.values():
        assert result.before is not None
        undone = undo_step(rev, LEAVE_GROUP, target_for(data, cred, "alice"), result.before)
        assert undone.status == "restored"
    restored = creds_of(src.collect(), ALICE, CredentialKind.GROUP_MEMBERSHIP)  # type: ignore[attr-defined]
    assert {c.credential_id for c in restored} == {c.credential_id for c in memberships}


def test_remove_ssh_key_removes_only_that_key_and_undo_readds_it(slapd: SlapdServer) -> None:
    seed(slapd)
    src = auditor(slapd)
    rev = revoker(REVOKER_PASSWORD, url=slapd.url, bind_dn=REVOKER_DN, base_dn=PEOPLE_DN)
    data = src.collect()  # type: ignore[attr-defined]
    (rsa,) = [c for c in creds_of(data, ALICE, CredentialKind.SSH_KEY) if RSA_FP in c.credential_id]
    result = apply_step(rev, REMOVE_SSH_KEY, target_for(data, rsa))
    assert result.status == "applied" and result.before and result.before.value("sshPublicKey") == RSA_KEY
    left = {c.credential_id for c in creds_of(src.collect(), ALICE, CredentialKind.SSH_KEY)}  # type: ignore[attr-defined]
    assert left == {f"ssh:{ED25519_FP}"}
    assert apply_step(rev, REMOVE_SSH_KEY, target_for(data, rsa)).status == "noop"
    undone = undo_step(rev, REMOVE_SSH_KEY, target_for(data, rsa), result.before)
    assert undone.status == "restored"
    back = {c.credential_id for c in creds_of(src.collect(), ALICE, CredentialKind.SSH_KEY)}  # type: ignore[attr-defined]
    assert back == {f"ssh:{ED25519_FP}", f"ssh:{RSA_FP}"}


def test_revoker_refuses_break_glass_and_its_own_identity(slapd: SlapdServer) -> None:
    seed(slapd)
    data = auditor(slapd, extra_base_dns=[SERVICES_DN], user_filter="(objectClass=person)").collect()  # type: ignore[attr-defined]
    rev = revoker(
        REVOKER_PASSWORD, url=slapd.url, bind_dn=REVOKER_DN, base_dn=PEOPLE_DN, extra_base_dns=[SERVICES_DN]
    )
    (glass,) = creds_of(data, BREAKGLASS, CredentialKind.ACCOUNT)
    (me,) = creds_of(data, REVOKER_DN, CredentialKind.ACCOUNT)
    for cred, reason in ((glass, "protected"), (me, "own bind identity")):
        refused = apply_step(rev, LOCK, target_for(data, cred))
        assert refused.status == "failed" and reason in (refused.error or "")
    assert bind_works(slapd, BREAKGLASS, "breakglass-pw")
    assert bind_works(slapd, REVOKER_DN, REVOKER_PASSWORD)


# --- failures -------------------------------------------------------------------------------


def test_server_down_is_a_source_error_naming_the_url() -> None:
    url = f"ldap://127.0.0.1:{free_port()}"
    src = source(AUDITOR_PASSWORD, url=url, bind_dn=AUDITOR_DN, base_dn=PEOPLE_DN, connect_timeout=2)
    with pytest.raises(SourceError, match="cannot connect") as err:
        src.collect()
    assert url in str(err.value)


def test_a_server_that_never_answers_fails_after_the_receive_timeout() -> None:
    import socket
    import time

    # Listening but never answering: the kernel completes the TCP handshake, then silence.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"ldap://127.0.0.1:{silent.getsockname()[1]}"
        src = source(AUDITOR_PASSWORD, url=url, bind_dn=AUDITOR_DN, base_dn=PEOPLE_DN, receive_timeout=1)
        started = time.monotonic()
        with pytest.raises(SourceError, match="cannot connect"):
            src.collect()
        assert time.monotonic() - started < 10


def test_wrong_password_is_a_source_error_without_the_password(slapd: SlapdServer) -> None:
    src = source("not-the-password", url=slapd.url, bind_dn=AUDITOR_DN, base_dn=PEOPLE_DN)
    with pytest.raises(SourceError, match="invalidCredentials") as err:
        src.collect()
    assert "not-the-password" not in str(err.value)


def test_ldaps_and_starttls_work_with_the_ca_file(slapd: SlapdServer) -> None:
    seed(slapd)
    assert slapd.ca_file is not None
    for url, start_tls in ((slapd.ldaps_url, False), (slapd.url, True)):
        data = source(
            AUDITOR_PASSWORD,
            url=url,
            bind_dn=AUDITOR_DN,
            base_dn=PEOPLE_DN,
            ca_file=str(slapd.ca_file),
            start_tls=start_tls,
        ).collect()
        assert len(data.accounts) == 4


def test_tls_with_an_untrusted_certificate_fails_the_source(slapd: SlapdServer, tmp_path: Path) -> None:
    from tests.support.slapd import make_tls_files

    other_ca, _, _ = make_tls_files(tmp_path)
    for url, start_tls in ((slapd.ldaps_url, False), (slapd.url, True)):
        src = source(
            AUDITOR_PASSWORD,
            url=url,
            bind_dn=AUDITOR_DN,
            base_dn=PEOPLE_DN,
            ca_file=str(other_ca),
            start_tls=start_tls,
            connect_timeout=5,
        )
        with pytest.raises(SourceError, match=r"(?i)certificate|ssl|tls"):
            src.collect()


# --- scale and truncation -------------------------------------------------------------------


@pytest.fixture(scope="module")
def big_directory(tmp_path_factory: pytest.TempPathFactory) -> object:
    entries = [person_entry(f"user{i:05d}", f"N{i:05d}", f"user{i:05d}@example.com") for i in range(1200)]
    server = start_slapd(tmp_path_factory.mktemp("big-slapd"), extra_entries=entries)
    yield server
    server.stop()


def test_paged_search_reads_all_1200_entries_across_pages(big_directory: SlapdServer) -> None:
    data = auditor(big_directory, page_size=100).collect()  # type: ignore[attr-defined]
    assert len(data.accounts) == 1200
    assert len({a.account_id for a in data.accounts}) == 1200
    assert data.failed_scopes == ()


def test_a_bind_capped_at_500_entries_is_reported_not_taken_as_complete(big_directory: SlapdServer) -> None:
    src = source(
        LIMITED_PASSWORD, url=big_directory.url, bind_dn=LIMITED_DN, base_dn=PEOPLE_DN, page_size=100
    )
    with pytest.raises(SourceError, match="truncated") as err:
        src.collect()
    assert "sizeLimitExceeded" in str(err.value)


def test_truncation_of_one_base_is_a_failed_scope_while_a_small_base_still_reads(
    big_directory: SlapdServer,
) -> None:
    src = source(
        LIMITED_PASSWORD,
        url=big_directory.url,
        bind_dn=LIMITED_DN,
        base_dn=PEOPLE_DN,
        extra_base_dns=[SERVICES_DN],
        user_filter="(objectClass=person)",
        page_size=100,
    )
    data = src.collect()
    assert [f.scope for f in data.failed_scopes] == [PEOPLE_DN]
    # Nothing from the truncated base is passed on as if it were the whole base.
    assert {a.scope for a in data.accounts} == {SERVICES_DN}
    assert len(data.accounts) == 3
