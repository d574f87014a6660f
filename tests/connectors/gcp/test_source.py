"""The gcp_iam source against local fake endpoints, through the real client libraries."""

from __future__ import annotations

import socket
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.gcp_iam import PLUGIN, GcpIamSource
from offboard_audit.core.errors import ConfigError, SourceError
from offboard_audit.core.options import SourceOptions
from offboard_audit.core.protocols import AccountSource, SourceContext, TargetedSource
from offboard_audit.core.records import AccountKind, CredentialKind, Person, PersonStatus
from tests.support.gcp import FakeGcp, GcpFakeState

LEFT = datetime(2026, 8, 1, tzinfo=UTC)


def seed_acme(state: GcpFakeState) -> None:
    """Two projects; grace left and owns a CI service account with two keys."""
    state.add_project("acme-prod")
    state.add_project("acme-data")
    state.bind("acme-prod", "roles/owner", "user:alice@example.com")
    state.bind("acme-prod", "roles/editor", "user:grace@example.com")
    state.bind("acme-prod", "roles/viewer", "group:eng@example.com")
    state.bind("acme-data", "roles/viewer", "user:grace@example.com")
    state.bind("acme-data", "roles/storage.admin", "deleted:user:carol@example.com?uid=42")
    ci = state.add_service_account(
        "acme-prod", "ci-deployer", description="owner: grace@example.com", last_auth=LEFT + timedelta(days=3)
    )
    state.add_key(ci.email, created=LEFT - timedelta(days=100), last_auth=LEFT - timedelta(days=5))
    state.add_key(ci.email, created=LEFT + timedelta(days=14), last_auth=LEFT + timedelta(days=20))
    other = state.add_service_account("acme-data", "etl")
    state.add_key(other.email, created=LEFT - timedelta(days=300), disabled=True)


def grace() -> Person:
    return Person("E1007", "grace@example.com", "Grace", PersonStatus.TERMINATED, LEFT, aliases=("grace",))


def test_plugin_is_registered_and_source_satisfies_the_protocols(
    gcp_source: Callable[..., GcpIamSource],
) -> None:
    from offboard_audit.config.registry import plugin_for

    assert plugin_for("gcp_iam") is PLUGIN
    source = gcp_source(projects=["acme-prod"])
    assert isinstance(source, AccountSource) and isinstance(source, TargetedSource)
    assert source.name == "gcp" and source.system == "gcp_iam"


def test_every_config_key_the_connector_reads_is_documented() -> None:
    import dataclasses

    from connectors.gcp_iam.exposure.settings import EXPOSURE_OPTIONS, ExposureSettings
    from connectors.gcp_iam.settings import GcpSettings

    read = {f.name for f in dataclasses.fields(GcpSettings)}
    # "exposure" is the [sources.exposure] table, parsed by connectors/gcp_iam/exposure/settings.py
    assert read | {"type", "exposure"} == set(PLUGIN.options)
    assert {f.name for f in dataclasses.fields(ExposureSettings)} == set(EXPOSURE_OPTIONS)
    assert all(key in PLUGIN.options["exposure"] for key in EXPOSURE_OPTIONS)


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"name": "g", "type": "gcp_iam"}, "projects"),
        ({"name": "g", "organization": "123"}, "organization"),
        ({"name": "g", "folders": ["folder/1"]}, "folders"),
        ({"name": "g", "projects": ["p-1"], "iam_endpoint": "http://127.0.0.1:1"}, "iam_endpoint"),
        (
            {"name": "g", "projects": ["p-1"], "resource_manager_endpoint": "127.0.0.1:1"},
            "resource_manager_endpoint",
        ),
        ({"name": "g", "projects": ["p-1"], "max_workers": 0}, "max_workers"),
        ({"name": "g", "projects": ["p-1"], "owners": {"a": 1}}, "owners"),
        ({"name": "g", "projects": ["p-1"], "key_last_auth": "yes"}, "key_last_auth"),
    ],
)
def test_bad_config_is_a_config_error_naming_the_key(table: dict[str, Any], key: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        PLUGIN.make_source(SourceOptions(table, prefix="sources[3]"), SourceContext(base_dir=tmp_path))
    assert info.value.key == f"sources[3].{key}"


def test_collect_reads_bindings_service_accounts_and_user_managed_keys(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    seed_acme(gcp_fake.state)
    data = gcp_source(projects=["acme-prod", "acme-data"]).collect()
    assert data.scopes == ("acme-prod", "acme-data") and data.failed_scopes == ()
    accounts = {(a.scope, a.account_id): a for a in data.accounts}
    assert ("acme-prod", "projects/acme-prod/user:grace@example.com") in accounts
    assert ("acme-data", "projects/acme-data/user:grace@example.com") in accounts
    ci = accounts[("acme-prod", "ci-deployer@acme-prod.iam.gserviceaccount.com")]
    assert ci.kind is AccountKind.SERVICE and ci.attribute_values("owner") == ("grace@example.com",)
    ci_creds = [c for c in data.credentials if c.account_id == ci.account_id]
    keys = [c for c in ci_creds if c.kind is CredentialKind.SERVICE_ACCOUNT_KEY]
    # The fake also holds a system-managed key per service account: it must not show up.
    assert len(keys) == 2
    assert sorted(k.created_at for k in keys if k.created_at) == [
        LEFT - timedelta(days=100),
        LEFT + timedelta(days=14),
    ]
    assert [c.kind for c in ci_creds].count(CredentialKind.ACCOUNT) == 1
    etl_key = next(
        c
        for c in data.credentials
        if c.account_id.startswith("etl@") and c.kind is CredentialKind.SERVICE_ACCOUNT_KEY
    )
    assert etl_key.active is False
    # Bulk pass: no last-use evidence yet (that is the detail pass, behind key_last_auth).
    assert all(c.last_used_at is None for c in data.credentials)


def test_credential_ids_are_stable_across_runs(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    seed_acme(gcp_fake.state)
    source = gcp_source(projects=["acme-prod", "acme-data"])
    first = sorted(c.key for c in source.collect().credentials)
    second = sorted(c.key for c in source.collect().credentials)
    assert first == second and len(first) == 10


def test_pagination_of_projects_and_service_accounts_loses_nothing(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    state = gcp_fake.state
    state.page_size = 2
    for i in range(5):
        state.add_project(f"proj-{i}", parent="organizations/77")
        for j in range(5):
            state.add_service_account(f"proj-{i}", f"sa-{j}")
    data = gcp_source(organization="organizations/77").collect()
    # The organization's own policy is a scope too.
    assert sorted(data.scopes) == ["organizations/77", *[f"proj-{i}" for i in range(5)]]
    assert len([a for a in data.accounts if a.kind is AccountKind.SERVICE]) == 25


def test_organization_scan_descends_into_folders_and_skips_inactive_projects(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    state = gcp_fake.state
    state.add_folder("folders/10", parent="organizations/5")
    state.add_folder("folders/11", parent="folders/10")
    state.add_folder("folders/12", parent="organizations/5", state="DELETE_REQUESTED")
    state.add_project("top", parent="organizations/5")
    state.add_project("nested", parent="folders/10")
    state.add_project("deep", parent="folders/11")
    state.add_project("in-deleted-folder", parent="folders/12")
    state.add_project("going-away", parent="folders/10", state="DELETE_REQUESTED")
    state.add_project("elsewhere", parent="organizations/6")
    source = gcp_source(organization="organizations/5")
    assert sorted(source.projects()) == ["deep", "nested", "top"]
    only_folder = gcp_source(folders=["folders/11"], projects=["elsewhere"])
    assert sorted(only_folder.projects()) == ["deep", "elsewhere"]


def test_a_failing_project_is_reported_failed_while_the_others_are_read(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    seed_acme(gcp_fake.state)
    gcp_fake.state.failures["acme-data"] = "PERMISSION_DENIED"
    data = gcp_source(projects=["acme-prod", "acme-data"]).collect()
    assert data.scopes == ("acme-prod", "acme-data")
    (failure,) = data.failed_scopes
    assert failure.scope == "acme-data" and "getIamPolicy" in failure.error
    assert {a.scope for a in data.accounts} == {"acme-prod"}


def test_a_quota_error_on_service_accounts_fails_the_project_not_just_empties_it(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    seed_acme(gcp_fake.state)
    # Only the IAM Admin side of acme-data fails: its policy reads fine, its service accounts do not.
    gcp_fake.state.iam_failures["acme-data"] = ("RESOURCE_EXHAUSTED", "Quota exceeded for iam.googleapis.com")
    data = gcp_source(projects=["acme-prod", "acme-data"]).collect()
    (failure,) = data.failed_scopes
    assert failure.scope == "acme-data"
    assert "ListServiceAccounts" in failure.error and "Quota" in failure.error
    # Nothing half-read from the failed project leaks into the result.
    assert {a.scope for a in data.accounts} == {"acme-prod"}


def test_every_project_failing_is_a_source_error(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    seed_acme(gcp_fake.state)
    gcp_fake.state.failures.update({"acme-prod": "PERMISSION_DENIED", "acme-data": "PERMISSION_DENIED"})
    with pytest.raises(SourceError, match="every project failed"):
        gcp_source(projects=["acme-prod", "acme-data"]).collect()


def test_unreachable_endpoints_are_a_source_error_not_empty_data(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # bound, never listening: connections are refused
        table = {
            "name": "gcp",
            "projects": ["acme-prod"],
            "iam_endpoint": f"127.0.0.1:{dead}",
            "resource_manager_endpoint": f"http://127.0.0.1:{dead}",
            "timeout": 2.0,
        }
        source = PLUGIN.make_source(SourceOptions(table), SourceContext(base_dir=tmp_path))
        assert isinstance(source, GcpIamSource)
        try:
            with pytest.raises(SourceError):
                source.collect()
        finally:
            source.close()


def test_project_discovery_failure_is_a_source_error(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    gcp_fake.state.add_project("p-1", parent="organizations/9")
    gcp_fake.state.failures["organizations/9"] = "PERMISSION_DENIED"
    with pytest.raises(SourceError, match="cannot list projects under organizations/9"):
        gcp_source(organization="organizations/9").collect()


def _seed_people(state: GcpFakeState, project: str, people: int) -> None:
    state.add_project(project)
    for i in range(people):
        state.bind(project, f"roles/role{i % 7}", f"user:person{i}@example.com")
    for j in range(3):
        sa = state.add_service_account(project, f"sa-{j}")
        state.add_key(sa.email, created=LEFT)


def test_calls_per_project_do_not_grow_with_the_number_of_people(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    _seed_people(gcp_fake.state, "small", people=5)
    _seed_people(gcp_fake.state, "large", people=500)
    data = gcp_source(projects=["small", "large"]).collect()
    assert len([a for a in data.accounts if a.scope == "large" and a.kind is AccountKind.HUMAN]) == 500
    calls = gcp_fake.state.calls
    assert gcp_fake.state.calls_for("small") == gcp_fake.state.calls_for("large")
    # one policy read, one service-account page, one key list per service account
    assert calls[("rm.GetIamPolicy", "large")] == 1
    assert calls[("iam.ListServiceAccounts", "large")] == 1
    assert calls[("iam.ListServiceAccountKeys", "large")] == 3


def test_detail_attaches_last_authentication_from_the_policy_analyzer(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    seed_acme(gcp_fake.state)
    source = gcp_source(projects=["acme-prod", "acme-data"], key_last_auth=True)
    bulk = source.collect()
    ci = next(a for a in bulk.accounts if a.account_id.startswith("ci-deployer@"))
    grace_binding = next(
        a for a in bulk.accounts if a.account_id == "projects/acme-prod/user:grace@example.com"
    )
    detail = source.detail([ci, grace_binding])
    assert detail.warnings == () and detail.enrichment_failures == ()
    # Only the service account is refined; the binding account has nothing more to say.
    assert [a.account_id for a in detail.accounts] == [ci.account_id]
    assert detail.accounts[0].last_login_at == LEFT + timedelta(days=3)
    keys = sorted(
        (c for c in detail.credentials if c.kind is CredentialKind.SERVICE_ACCOUNT_KEY),
        key=lambda c: c.created_at or LEFT,
    )
    assert [k.last_used_at for k in keys] == [LEFT - timedelta(days=5), LEFT + timedelta(days=20)]
    # The detail credentials replace the bulk ones: the set must be complete.
    bulk_ids = {c.credential_id for c in bulk.credentials if c.account_id == ci.account_id}
    assert {c.credential_id for c in detail.credentials} == bulk_ids
    assert gcp_fake.state.calls[("pa.serviceAccountKeyLastAuthentication", "acme-prod")] == 1
    assert gcp_fake.state.calls[("pa.serviceAccountKeyLastAuthentication", "acme-data")] == 0


def test_detail_without_key_last_auth_has_nothing_more_to_say(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    seed_acme(gcp_fake.state)
    source = gcp_source(projects=["acme-prod"])
    bulk = source.collect()
    assert source.detail(bulk.accounts) == type(bulk)()


def test_missing_policy_analyzer_permission_is_reported_as_a_failed_enrichment_of_the_project(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    seed_acme(gcp_fake.state)
    gcp_fake.state.activity_failures["*"] = (
        403,
        "Permission 'policyanalyzer.serviceAccountKeyLastAuthenticationActivities.query' denied",
    )
    source = gcp_source(projects=["acme-prod"], key_last_auth=True)
    ci = next(a for a in source.collect().accounts if a.account_id.startswith("ci-deployer@"))
    detail = source.detail([ci])
    (failure,) = detail.enrichment_failures
    assert failure.scope == "acme-prod"
    assert "403" in failure.error and "activityAnalysisViewer" in failure.error
    # Keys are still all there, just without last-use evidence.
    keys = [c for c in detail.credentials if c.kind is CredentialKind.SERVICE_ACCOUNT_KEY]
    assert len(keys) == 2 and all(k.last_used_at is None for k in keys)


def test_collect_for_returns_only_that_persons_bindings_and_service_accounts(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    seed_acme(gcp_fake.state)
    data = gcp_source(projects=["acme-prod", "acme-data"], key_last_auth=True).collect_for(grace())
    assert sorted(a.account_id for a in data.accounts) == [
        "ci-deployer@acme-prod.iam.gserviceaccount.com",
        "projects/acme-data/user:grace@example.com",
        "projects/acme-prod/user:grace@example.com",
    ]
    assert data.scopes == ("acme-prod", "acme-data")
    kinds = sorted(c.kind.value for c in data.credentials)
    assert kinds == ["account", "iam_binding", "iam_binding", "service_account_key", "service_account_key"]
    assert any(c.last_used_at == LEFT + timedelta(days=20) for c in data.credentials)


def test_injected_clients_are_used_instead_of_building_new_ones(
    gcp_fake: FakeGcp,
    gcp_options: Callable[..., SourceOptions],
    gcp_clients_for: Callable[..., Any],
    tmp_path: Path,
) -> None:
    seed_acme(gcp_fake.state)
    clients = gcp_clients_for(gcp_options(projects=["acme-prod"]))
    # The table's endpoints point nowhere: only the injected clients can reach the fake.
    table = {"name": "gcp", "projects": ["acme-prod"], "iam_endpoint": "127.0.0.1:9", "timeout": 2.0}
    source = PLUGIN.make_source(
        SourceOptions(table), SourceContext(base_dir=tmp_path, clients={"gcp": clients})
    )
    assert isinstance(source, GcpIamSource)
    assert any(a.account_id.startswith("ci-deployer@") for a in source.collect().accounts)


def test_detail_leaves_out_an_account_whose_keys_cannot_be_re_read(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    seed_acme(gcp_fake.state)
    # UNAVAILABLE is retried, within the per-call timeout.
    source = gcp_source(projects=["acme-prod"], key_last_auth=True, timeout=1.0)
    ci = next(a for a in source.collect().accounts if a.account_id.startswith("ci-deployer@"))
    gcp_fake.state.iam_failures["acme-prod"] = ("UNAVAILABLE", "backend unavailable")
    detail = source.detail([ci])
    # Nothing for the account means the core keeps its bulk credentials instead of losing them.
    assert detail.accounts == () and detail.credentials == ()
    # ... and keeps the last known last use of those credentials: the failure names the project.
    assert [f.scope for f in detail.enrichment_failures] == ["acme-prod"]
    assert "cannot re-read ci-deployer@" in detail.enrichment_failures[0].error


def test_projects_are_scanned_concurrently_but_never_more_than_max_workers_at_once(
    gcp_fake: FakeGcp, gcp_source: Callable[..., GcpIamSource]
) -> None:
    for i in range(12):
        gcp_fake.state.add_project(f"proj-{i:02d}")
    gcp_fake.state.rest_latency = 0.05  # each policy read takes a while, as over a real network
    data = gcp_source(projects=[f"proj-{i:02d}" for i in range(12)], max_workers=3).collect()
    assert len(data.scopes) == 12 and data.failed_scopes == ()
    assert 1 < gcp_fake.state.rest_max_in_flight <= 3
