"""LDAP referrals are never chased and never dropped: the base they come from is a failed scope.

On a real slapd an ``ou`` is turned into a referral object (objectClass ``referral`` +
``extensibleObject``, ``ref: ldap://...``, added with ManageDsaIT as ``ldapadd -M`` does). The
accounts behind it were not read, so nothing under that base may be taken as gone: every read
(bulk, groups, detail, ``collect_for``) reports the base in ``failed_scopes`` with the referral
URL, and the pipeline keeps the earlier findings open (stale) instead of resolving them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.ldap import LdapSource
from connectors.ldap.revoker import LOCK
from offboard_audit.config import load_config
from offboard_audit.core.errors import RevokeError, SourceError
from offboard_audit.core.protocols import SourceContext
from offboard_audit.core.records import CredentialKind, FindingStatus, Person, PersonStatus, SourceData
from offboard_audit.engine.pipeline import Pipeline
from offboard_audit.engine.steps import read_state
from offboard_audit.storage.store import Store
from tests.connectors.ldap.helpers import creds_of, revoker, source, target_for
from tests.support.samba import ADMIN_PASSWORD as SAMBA_ADMIN_PASSWORD
from tests.support.samba import BASE_DN as SAMBA_BASE_DN
from tests.support.samba import SambaDC
from tests.support.slapd import (
    AUDITOR_DN,
    AUDITOR_PASSWORD,
    GROUPS_DN,
    PEOPLE_DN,
    REVOKER_DN,
    REVOKER_PASSWORD,
    SERVICES_DN,
    SlapdServer,
)

PARTNER = f"ou=partner,{PEOPLE_DN}"
PARTNER_URL = "ldap://ldap.partner.invalid/ou=staff,dc=partner,dc=example"
DAVE = f"uid=dave,{PARTNER}"
LOCAL = f"uid=lou,{PEOPLE_DN}"
SERVICE_BOT = f"cn=ref-bot,{SERVICES_DN}"
TERMINATED = datetime.now(UTC) - timedelta(days=30)
EVERYONE = "(|(objectClass=inetOrgPerson)(objectClass=applicationProcess))"


def person(dn: str, uid: str, number: str) -> tuple[str, dict[str, list[str]]]:
    return dn, {
        "objectClass": ["inetOrgPerson"],
        "uid": [uid],
        "cn": [uid],
        "sn": [uid],
        "mail": [f"{uid}@example.com"],
        "employeeNumber": [number],
        "userPassword": [f"{uid}-pw"],
    }


def referral(dn: str, ou: str, url: str) -> tuple[str, dict[str, list[str]]]:
    return dn, {"objectClass": ["referral", "extensibleObject"], "ou": [ou], "ref": [url]}


@pytest.fixture
def partner_ou(slapd: SlapdServer) -> Iterator[SlapdServer]:
    """ou=partner under the people base holding dave; a local account and a service account beside."""
    slapd.add_entries(
        [
            (PARTNER, {"objectClass": ["organizationalUnit"], "ou": ["partner"]}),
            person(DAVE, "dave", "E8001"),
            person(LOCAL, "lou", "E8002"),
            (SERVICE_BOT, {"objectClass": ["applicationProcess"], "cn": ["ref-bot"]}),
        ]
    )
    yield slapd


def turn_partner_into_referral(slapd: SlapdServer) -> None:
    """The partner ou moves to another server: its entries go, a referral object takes its place."""
    slapd.delete_entry(DAVE)
    slapd.delete_entry(PARTNER)
    slapd.add_entries([referral(PARTNER, "partner", PARTNER_URL)], manage_dsa_it=True)


def auditor(slapd: SlapdServer, **extra: object) -> LdapSource:
    return source(
        AUDITOR_PASSWORD,
        url=slapd.url,
        bind_dn=AUDITOR_DN,
        base_dn=PEOPLE_DN,
        extra_base_dns=[SERVICES_DN],
        user_filter=EVERYONE,
        **extra,
    )


@pytest.mark.slapd
def test_continuation_reference_in_the_bulk_read_fails_that_base_naming_the_url(
    partner_ou: SlapdServer,
) -> None:
    turn_partner_into_referral(partner_ou)
    data = auditor(partner_ou).collect()
    assert [f.scope for f in data.failed_scopes] == [PEOPLE_DN]
    assert PARTNER_URL in data.failed_scopes[0].error
    # Nothing from the incomplete base, not even the entries that were read beside the reference.
    assert {a.account_id for a in data.accounts} == {SERVICE_BOT}
    assert set(data.scopes) == {PEOPLE_DN, SERVICES_DN}


@pytest.mark.slapd
def test_a_base_that_is_itself_a_referral_fails_naming_the_url(partner_ou: SlapdServer) -> None:
    turn_partner_into_referral(partner_ou)
    data = source(
        AUDITOR_PASSWORD,
        url=partner_ou.url,
        bind_dn=AUDITOR_DN,
        base_dn=PARTNER,
        extra_base_dns=[SERVICES_DN],
        user_filter=EVERYONE,
    ).collect()
    assert [f.scope for f in data.failed_scopes] == [PARTNER]
    assert "ldap://ldap.partner.invalid/" in data.failed_scopes[0].error


@pytest.mark.slapd
def test_only_base_behind_a_referral_fails_the_whole_source(partner_ou: SlapdServer) -> None:
    turn_partner_into_referral(partner_ou)
    src = source(AUDITOR_PASSWORD, url=partner_ou.url, bind_dn=AUDITOR_DN, base_dn=PEOPLE_DN)
    with pytest.raises(SourceError, match=r"ldap\.partner\.invalid"):
        src.collect()


@pytest.mark.slapd
def test_continuation_reference_under_the_group_base_fails_the_group_scope(partner_ou: SlapdServer) -> None:
    partner_ou.add_entries(
        [referral(f"ou=partner-groups,{GROUPS_DN}", "partner-groups", PARTNER_URL)], manage_dsa_it=True
    )
    data = auditor(partner_ou, group_base_dn=GROUPS_DN).collect()
    assert [f.scope for f in data.failed_scopes] == [GROUPS_DN]
    assert PARTNER_URL in data.failed_scopes[0].error


@pytest.mark.slapd
def test_detail_pass_of_an_account_now_behind_a_referral_is_a_failed_scope(partner_ou: SlapdServer) -> None:
    bulk = auditor(partner_ou).collect()
    dave = next(a for a in bulk.accounts if a.account_id == DAVE)
    (account,) = creds_of(bulk, DAVE, CredentialKind.ACCOUNT)
    turn_partner_into_referral(partner_ou)

    detail = auditor(partner_ou).detail([dave])
    assert detail.accounts == () and detail.credentials == ()
    assert [f.scope for f in detail.failed_scopes] == [PEOPLE_DN]
    assert "ldap://ldap.partner.invalid/" in detail.failed_scopes[0].error

    # The revoker does not take "referred elsewhere" for "gone" either.
    rev = revoker(REVOKER_PASSWORD, url=partner_ou.url, bind_dn=REVOKER_DN, base_dn=PEOPLE_DN)
    with pytest.raises(RevokeError, match=r"ldap\.partner\.invalid"):
        read_state(rev, LOCK, target_for(bulk, account))


@pytest.mark.slapd
def test_collect_for_a_person_with_a_referral_in_the_base_is_a_failed_scope(partner_ou: SlapdServer) -> None:
    turn_partner_into_referral(partner_ou)
    lou = Person("E8002", "lou@example.com", "Lou", PersonStatus.TERMINATED, TERMINATED)
    data = auditor(partner_ou).collect_for(lou)
    assert [f.scope for f in data.failed_scopes] == [PEOPLE_DN]
    assert PARTNER_URL in data.failed_scopes[0].error
    assert data.accounts == ()  # lou was found beside the reference, but the base is incomplete


@pytest.mark.slapd
def test_reference_to_a_dn_listed_in_ignore_referrals_to_is_not_a_failure(partner_ou: SlapdServer) -> None:
    turn_partner_into_referral(partner_ou)
    data = auditor(partner_ou, ignore_referrals_to=["DC=Partner,DC=Example"]).collect()
    assert data.failed_scopes == ()
    assert {a.account_id for a in data.accounts} >= {LOCAL, SERVICE_BOT}
    # Another DN is not covered by the list.
    other = auditor(partner_ou, ignore_referrals_to=["dc=elsewhere,dc=example"]).collect()
    assert [f.scope for f in other.failed_scopes] == [PEOPLE_DN]


@pytest.mark.slapd
def test_pipeline_keeps_a_leavers_finding_open_when_his_ou_became_a_referral(
    partner_ou: SlapdServer, tmp_path: Path
) -> None:
    (tmp_path / "hr.csv").write_text(
        "employee_id,email,name,status,termination_date,aliases\n"
        f"E8001,dave@example.com,Dave Partner,terminated,{TERMINATED.isoformat()},dave\n"
        "E8002,lou@example.com,Lou Local,active,,lou\n",
        encoding="utf-8",
    )
    config_path = tmp_path / "offboard-audit.toml"
    config_path.write_text(
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
url = "{partner_ou.url}"
bind_dn = "{AUDITOR_DN}"
password_env = "LDAP_BIND_PASSWORD"
base_dn = "{PEOPLE_DN}"
extra_base_dns = ["{SERVICES_DN}"]
user_filter = "{EVERYONE}"
""",
        encoding="utf-8",
    )
    env = {"LDAP_BIND_PASSWORD": AUDITOR_PASSWORD}
    config = load_config(config_path, env=env)
    store = Store.open(config.database_url)
    ctx = SourceContext(base_dir=tmp_path, env=env)
    try:
        first = Pipeline(config, store, ctx).run(datetime.now(UTC))
        daves = {
            f.finding_id for f in first.findings if f.account is not None and f.account.account_id == DAVE
        }
        assert daves

        turn_partner_into_referral(partner_ou)
        second = Pipeline(config, store, ctx).run(datetime.now(UTC))
        ldap = next(s for s in second.sources if s.name == "corp-ldap")
        assert [f.scope for f in ldap.failed_scopes] == [PEOPLE_DN]
        assert PARTNER_URL in ldap.failed_scopes[0].error
        stored = {f.finding_id: f for f in store.list_findings(None) if f.finding_id in daves}
        assert stored and all(f.status is FindingStatus.OPEN for f in stored.values()), stored
        assert {f.finding_id for f in second.findings if f.stale} >= daves
    finally:
        store.engine.dispose()


@pytest.mark.samba
def test_ad_domain_root_base_fails_on_the_configuration_reference_unless_ignored(samba: SambaDC) -> None:
    def read(**extra: object) -> SourceData:
        return source(
            SAMBA_ADMIN_PASSWORD,
            url=samba.url,
            bind_dn=samba.admin_upn,
            base_dn=SAMBA_BASE_DN,
            extra_base_dns=[f"CN=Users,{SAMBA_BASE_DN}"],
            dialect="ad",
            **extra,
        ).collect()

    data = read()
    assert [f.scope for f in data.failed_scopes] == [SAMBA_BASE_DN]
    assert f"CN=Configuration,{SAMBA_BASE_DN}" in data.failed_scopes[0].error
    ignored = read(ignore_referrals_to=[f"cn=configuration,{SAMBA_BASE_DN.lower()}"])
    assert ignored.failed_scopes == ()
    assert any(a.username == "Administrator" for a in ignored.accounts)
