"""GcpIamRevoker holes a mutation run found: the clients it is given, the bounded retry and
deadline every API call carries, the policy version it reads, organization and folder policies,
the names it writes by ``uniqueId`` and the exact refusals an operator reads."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from google.api_core.retry import Retry

from connectors.gcp_iam import GcpIamRevoker
from connectors.gcp_iam.clients import GcpClients
from connectors.gcp_iam.demo_fake import FakeApiError, FakePolicyHolder
from connectors.gcp_iam.settings import GcpSettings, parse_settings
from offboard_audit.core.actions import ActionTarget
from offboard_audit.core.errors import RevokeError
from offboard_audit.core.options import SourceOptions
from offboard_audit.engine.steps import apply_step, read_state
from tests.support.gcp import FakeGcp, key_target, planned_binding_target, sa_target

CREATED = datetime(2025, 1, 1, tzinfo=UTC)
# A timeout no default of the client libraries uses: what the calls carry must be this one.
TIMEOUT = 7.0
ORG = "organizations/5"
FOLDER = "folders/10"


def binding_target(scope: str, role: str, member: str) -> ActionTarget:
    return planned_binding_target(scope, role, member)


class Recording:
    """A real client whose ``methods`` record their keyword arguments before forwarding."""

    def __init__(self, client: Any, *methods: str) -> None:
        self._client = client
        self.calls: list[tuple[str, dict[str, Any]]] = []
        for method in methods:
            setattr(self, method, self._recorder(method))

    def _recorder(self, method: str) -> Callable[..., Any]:
        def record(**kwargs: Any) -> Any:
            self.calls.append((method, kwargs))
            return getattr(self._client, method)(**kwargs)

        return record

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@pytest.fixture
def acme(gcp_fake: FakeGcp) -> FakeGcp:
    state = gcp_fake.state
    state.add_project("acme-prod")
    state.add_project("acme-dev")
    state.bind("acme-prod", "roles/owner", "user:alice@example.com")
    state.bind("acme-prod", "roles/editor", "user:grace@example.com")
    state.bind("acme-prod", "roles/editor", "user:bob@example.com")
    state.add_folder(FOLDER, parent=ORG)
    state.bind(ORG, "roles/viewer", "user:grace@example.com")
    state.bind(ORG, "roles/viewer", "user:bob@example.com")
    state.bind(FOLDER, "roles/editor", "user:grace@example.com")
    state.bind(FOLDER, "roles/editor", "user:bob@example.com")
    return gcp_fake


@pytest.fixture
def settings(acme: FakeGcp, gcp_options: Callable[..., SourceOptions]) -> GcpSettings:
    return parse_settings(gcp_options(projects=["acme-prod"], organization=ORG, timeout=TIMEOUT))


@pytest.fixture
def real_clients(
    settings: GcpSettings,
    gcp_options: Callable[..., SourceOptions],
    gcp_clients_for: Callable[..., GcpClients],
) -> GcpClients:
    return gcp_clients_for(gcp_options(projects=["acme-prod"], organization=ORG, timeout=TIMEOUT))


def assert_bounded(kwargs: dict[str, Any]) -> None:
    """The revoker's own retry (transient errors only, for ``TIMEOUT`` seconds in all) and deadline."""
    retry = kwargs["retry"]
    assert isinstance(retry, Retry)
    assert retry.timeout == TIMEOUT
    assert kwargs["timeout"] == TIMEOUT


# --- clients, retry and deadline ---------------------------------------------------------------


def test_the_injected_clients_are_the_ones_the_revoker_uses(settings: GcpSettings) -> None:
    injected = GcpClients(iam=object(), projects=object())
    revoker = GcpIamRevoker(settings, injected)
    assert revoker.clients is injected


def test_call_passes_the_name_the_bounded_retry_and_the_configured_timeout(settings: GcpSettings) -> None:
    seen: list[dict[str, Any]] = []

    def method(**kwargs: Any) -> str:
        seen.append(kwargs)
        return "answer"

    revoker = GcpIamRevoker(settings, GcpClients(iam=object(), projects=object()))
    assert revoker.call(method, "projects/-/serviceAccounts/42") == "answer"
    (kwargs,) = seen
    assert set(kwargs) == {"request", "retry", "timeout"}
    assert kwargs["request"] == {"name": "projects/-/serviceAccounts/42"}
    assert_bounded(kwargs)


def test_policy_reads_ask_for_version_3_and_reads_and_writes_carry_the_bounded_retry_and_timeout(
    acme: FakeGcp, settings: GcpSettings, real_clients: GcpClients
) -> None:
    projects = Recording(real_clients.projects, "get_iam_policy", "set_iam_policy")
    clients = GcpClients(iam=real_clients.iam, projects=projects, folders=real_clients.folders)
    revoker = GcpIamRevoker(settings, clients)
    target = binding_target("acme-prod", "roles/editor", "user:grace@example.com")
    assert apply_step(revoker, "remove_binding", target).status == "applied"
    assert acme.state.members("acme-prod", "roles/editor") == ["user:bob@example.com"]
    # read (engine), read + write (change), re-read (verify)
    assert [m for m, _ in projects.calls] == ["get_iam_policy"] * 2 + ["set_iam_policy", "get_iam_policy"]
    for method, kwargs in projects.calls:
        assert set(kwargs) == {"request", "retry", "timeout"}
        assert_bounded(kwargs)
        if method == "get_iam_policy":
            assert kwargs["request"] == {
                "resource": "projects/acme-prod",
                "options": {"requested_policy_version": 3},
            }
        else:
            assert kwargs["request"]["resource"] == "projects/acme-prod"


def test_a_transient_unavailable_policy_write_is_retried_within_the_same_attempt(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    def unavailable_once(_holder: FakePolicyHolder) -> None:
        raise FakeApiError("UNAVAILABLE", "try again", 503)

    acme.state.before_set_policy["acme-prod"] = [unavailable_once]
    revoker = gcp_revoker(projects=["acme-prod"], timeout=TIMEOUT)
    target = binding_target("acme-prod", "roles/editor", "user:grace@example.com")
    result = apply_step(revoker, "remove_binding", target)
    assert result.status == "applied", result.error
    assert acme.state.calls[("rm.SetIamPolicy", "acme-prod")] == 2  # one 503, one success
    assert acme.state.members("acme-prod", "roles/editor") == ["user:bob@example.com"]


# --- organization and folder policies -------------------------------------------------------------


def test_remove_binding_writes_the_organization_policy(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    revoker = gcp_revoker(organization=ORG)
    result = apply_step(
        revoker, "remove_binding", binding_target(ORG, "roles/viewer", "user:grace@example.com")
    )
    assert result.status == "applied", result.error
    assert acme.state.members(ORG, "roles/viewer") == ["user:bob@example.com"]
    assert acme.state.members(FOLDER, "roles/editor") == ["user:grace@example.com", "user:bob@example.com"]


def test_remove_binding_writes_the_folder_policy(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    revoker = gcp_revoker(organization=ORG)
    result = apply_step(
        revoker, "remove_binding", binding_target(FOLDER, "roles/editor", "user:grace@example.com")
    )
    assert result.status == "applied", result.error
    assert acme.state.members(FOLDER, "roles/editor") == ["user:bob@example.com"]
    assert acme.state.members(ORG, "roles/viewer") == ["user:grace@example.com", "user:bob@example.com"]


def test_an_organization_binding_without_an_organizations_client_names_the_missing_client(
    acme: FakeGcp, settings: GcpSettings, real_clients: GcpClients
) -> None:
    clients = GcpClients(iam=real_clients.iam, projects=real_clients.projects, folders=real_clients.folders)
    revoker = GcpIamRevoker(settings, clients)
    target = binding_target(ORG, "roles/viewer", "user:grace@example.com")
    with pytest.raises(RevokeError) as refused:
        revoker.specs["remove_binding"].read(target)
    assert str(refused.value) == "organizations/5: no Resource Manager organizations client configured"
    assert acme.state.calls_for(ORG) == 0


# --- bindings: refusals ---------------------------------------------------------------------------


def test_a_malformed_binding_credential_id_is_refused_with_the_parsers_message(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    revoker = gcp_revoker(projects=["acme-prod"])
    target = binding_target("acme-prod", "roles/editor", "user:grace@example.com")
    bad = replace(target, credential_id="projects/acme-prod/roles/editor")
    with pytest.raises(RevokeError) as refused:
        revoker.binding_ref(bad)
    assert str(refused.value) == "not a binding credential id: 'projects/acme-prod/roles/editor'"


def test_a_binding_of_a_project_for_a_target_without_scope_is_refused_naming_no_scope(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    revoker = gcp_revoker(projects=["acme-prod"])
    target = binding_target("acme-prod", "roles/editor", "user:grace@example.com")
    unscoped = replace(target, scope="")
    acme.state.reset_calls()
    with pytest.raises(RevokeError) as refused:
        revoker.binding_ref(unscoped)
    assert str(refused.value) == (
        "projects/acme-prod/roles/editor/user:grace@example.com is not in scope (none)"
    )
    result = apply_step(revoker, "remove_binding", unscoped)
    assert result.status == "failed"
    assert "projects/acme-prod/roles/editor/user:grace@example.com is not in scope (none)" in (
        result.error or ""
    )
    assert sum(acme.state.calls.values()) == 0
    assert "user:grace@example.com" in acme.state.members("acme-prod", "roles/editor")


# --- keys and service accounts: names by uniqueId and refusals ------------------------------------


def test_a_key_credential_that_is_not_a_key_name_is_refused_quoting_it(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    ci = acme.state.add_service_account("acme-prod", "ci-deployer")
    revoker = gcp_revoker(projects=["acme-prod"])
    name = f"projects/acme-prod/serviceAccounts/{ci.email}"
    with pytest.raises(RevokeError) as refused:
        revoker.key_by_uid(key_target(ci.email, name, ci.unique_id))
    assert str(refused.value) == f"not a service-account key name: {name!r}"


def test_a_key_of_another_service_account_in_the_same_project_is_refused_before_any_call(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    ci = acme.state.add_service_account("acme-prod", "ci-deployer")
    other = acme.state.add_service_account("acme-prod", "billing")
    key = acme.state.add_key(other.email, created=CREATED)
    revoker = gcp_revoker(projects=["acme-prod"])
    # The plan says ci-deployer, but the key credential names billing's key (same project).
    target = key_target(ci.email, key.name, ci.unique_id)
    with pytest.raises(RevokeError) as refused:
        revoker.key_by_uid(target)
    assert str(refused.value) == f"{key.name} is not a key of {ci.email} in acme-prod"
    acme.state.reset_calls()
    for action in ("disable_key", "delete_key"):
        result = apply_step(revoker, action, target)
        assert result.status == "failed"
        assert f"{key.name} is not a key of {ci.email} in acme-prod" in (result.error or "")
    assert not key.disabled and key.key_id in other.keys
    assert acme.state.calls[("iam.DisableServiceAccountKey", "acme-prod")] == 0
    assert acme.state.calls[("iam.DeleteServiceAccountKey", "acme-prod")] == 0


def test_a_key_of_another_service_account_for_a_target_without_scope_names_any_project(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    ci = acme.state.add_service_account("acme-prod", "ci-deployer")
    other = acme.state.add_service_account("acme-prod", "billing")
    key = acme.state.add_key(other.email, created=CREATED)
    revoker = gcp_revoker(projects=["acme-prod"])
    with pytest.raises(RevokeError) as refused:
        revoker.key_by_uid(key_target(ci.email, key.name, ci.unique_id, project=""))
    assert str(refused.value) == f"{key.name} is not a key of {ci.email} in any project"


def test_service_account_names_by_unique_id_use_the_project_or_a_dash_without_one(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    revoker = gcp_revoker(projects=["acme-prod"])
    email = "ci-deployer@acme-prod.iam.gserviceaccount.com"
    assert revoker.sa_by_uid(sa_target(email, "1234")) == "projects/acme-prod/serviceAccounts/1234"
    assert revoker.sa_by_uid(sa_target(email, "1234", project="")) == "projects/-/serviceAccounts/1234"


def test_a_service_account_target_without_a_project_is_disabled_by_unique_id(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    ci = acme.state.add_service_account("acme-prod", "ci-deployer")
    revoker = gcp_revoker(projects=["acme-prod"])
    target = sa_target(ci.email, ci.unique_id, project="")
    prior = read_state(revoker, "disable_service_account", target)
    assert prior.exists and prior.active and prior.identity == ci.unique_id
    result = apply_step(revoker, "disable_service_account", target)
    assert result.status == "applied", result.error
    assert ci.disabled


def test_get_service_account_looks_in_the_targets_project_only(
    acme: FakeGcp, gcp_revoker: Callable[..., GcpIamRevoker]
) -> None:
    ci = acme.state.add_service_account("acme-prod", "ci-deployer")
    revoker = gcp_revoker(projects=["acme-prod"])
    found = revoker.get_service_account(sa_target(ci.email, ci.unique_id))
    assert found is not None and found.unique_id == ci.unique_id
    # Named in another project, the account is not found there (it is not looked up anywhere).
    assert revoker.get_service_account(sa_target(ci.email, ci.unique_id, project="acme-dev")) is None
    # Without a project, "-" finds it from its email.
    unscoped = revoker.get_service_account(sa_target(ci.email, ci.unique_id, project=""))
    assert unscoped is not None and unscoped.unique_id == ci.unique_id
