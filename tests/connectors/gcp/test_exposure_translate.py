"""Cloud Audit Log entries and inventory payloads -> exposure records, no server.

The entry fixtures are raw LogEntry JSON as the Logging API documents it (``protoPayload`` an
``AuditLog``); each is also parsed into the client library's ``LogEntry`` (``proto_payload`` a
``google.protobuf.Any``) and turned back by ``entry_json``, so live reads and fixtures translate
alike.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.gcp_iam.exposure.states import (
    binding_resource,
    data_read_logging,
    kms_state,
    secret_state,
    service_account_key_state,
)
from connectors.gcp_iam.exposure.translate import MalformedEntry, entry_events, entry_json
from offboard_audit.core.exposure import ObjectRef
from offboard_audit.core.records import CredentialKind, ExposureHow

FIXTURES = Path(__file__).parent / "fixtures" / "audit"


def raw(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text())
    return data


def through_library(entry: dict[str, Any]) -> dict[str, Any]:
    from google.cloud.logging_v2.types import LogEntry

    return entry_json(LogEntry.from_json(json.dumps(entry)))


def events(name: str) -> list[Any]:
    direct = entry_events(raw(name), "gcp", "logs:projects/prod-app")
    assert entry_events(through_library(raw(name)), "gcp", "logs:projects/prod-app") == direct
    return direct


def test_a_secret_version_access_is_a_read_of_the_secret_named_with_the_project_id() -> None:
    [e] = events("access_secret_version")
    assert (e.scope, e.event_id, e.action, e.how) == (
        "prod-app",
        "1x8fjwze3ulk2",
        "AccessSecretVersion",
        ExposureHow.READ,
    )
    assert e.at == datetime(2025, 3, 4, 10, 15, 30, 981765, tzinfo=UTC)
    assert e.target == ObjectRef("prod-app", CredentialKind.SECRET, "projects/prod-app/secrets/signing-key")
    assert (e.actor.identity, e.actor.kind, e.actor.account_id, e.actor.names) == (
        "user:alice@example.com",
        "user",
        "",
        ("alice@example.com",),
    )


def test_a_failed_call_is_not_an_exposure() -> None:
    assert events("access_secret_version_denied") == []


def test_an_impersonated_service_account_acts_for_the_person_named_alone() -> None:
    [e] = events("access_secret_version_impersonated")
    assert (
        e.actor.identity
        == "user:carol@example.com as serviceAccount:deployer@prod-app.iam.gserviceaccount.com"
    )
    assert e.actor.names == ("carol@example.com",)  # the service account is not carol's
    assert e.actor.account_id == ""  # the person decides, not the service account's owner
    assert e.target.object_id == "projects/prod-app/secrets/db-password"


def test_adding_a_secret_version_is_a_creation() -> None:
    [e] = events("add_secret_version")
    assert (e.how, e.target.object_id) == (ExposureHow.CREATED, "projects/prod-app/secrets/api-token")


def test_a_key_made_for_another_service_account_names_the_key_and_its_account() -> None:
    [e] = events("create_service_account_key")
    key = "projects/prod-app/serviceAccounts/svc-deploy@prod-app.iam.gserviceaccount.com/keys/c2a1f0e9d8b7a6c5b4a3f2e1d0c9b8a7f6e5d4c3"
    assert e.target == ObjectRef(
        "prod-app", CredentialKind.SERVICE_ACCOUNT_KEY, key, "svc-deploy@prod-app.iam.gserviceaccount.com"
    )
    assert (e.how, e.action) == (ExposureHow.CREATED, "CreateServiceAccountKey")


def test_a_service_account_making_its_own_key_leaves_nothing_for_another_identity() -> None:
    assert events("create_service_account_key_own") == []


SVC_DEPLOY = "svc-deploy@prod-app.iam.gserviceaccount.com"


def impersonating(entry: dict[str, Any], person: str, service_account: str) -> dict[str, Any]:
    """``entry`` made by ``person`` through ``service_account`` (how the log names impersonation)."""
    entry["protoPayload"]["authenticationInfo"] = {
        "principalEmail": service_account,
        "serviceAccountDelegationInfo": [{"firstPartyPrincipal": {"principalEmail": person}}],
    }
    return entry


def test_a_key_a_person_makes_for_the_service_account_they_impersonate_is_left_for_another() -> None:
    # The service account is not hers: its private key outlives her Google account.
    entry = impersonating(raw("create_service_account_key"), "alice@example.com", SVC_DEPLOY)
    [e] = entry_events(entry, "gcp", "logs:projects/prod-app")
    assert e.actor.identity == f"user:alice@example.com as serviceAccount:{SVC_DEPLOY}"
    assert (e.target.kind, e.target.owner) == (CredentialKind.SERVICE_ACCOUNT_KEY, SVC_DEPLOY)
    assert e.target == entry_events(raw("create_service_account_key"), "gcp")[0].target


def test_a_role_a_person_grants_the_service_account_they_impersonate_is_for_another() -> None:
    entry = raw("set_iam_policy")
    entry["protoPayload"]["serviceData"]["policyDelta"]["bindingDeltas"] = [
        {"action": "ADD", "role": "roles/owner", "member": f"serviceAccount:{SVC_DEPLOY}"},
        {"action": "ADD", "role": "roles/viewer", "member": "user:alice@example.com"},
    ]
    found = entry_events(impersonating(entry, "alice@example.com", SVC_DEPLOY), "gcp")
    # Her own grant is hers; the one to the service account is a door for whoever can use it.
    assert [e.target.object_id for e in found] == [
        f"projects/prod-app/roles/owner/serviceAccount:{SVC_DEPLOY}"
    ]


def test_set_iam_policy_yields_the_roles_granted_to_others_only() -> None:
    found = events("set_iam_policy")
    assert [(e.event_id, e.how, e.target.object_id, e.target.owner) for e in found] == [
        (
            "-ppy2a1e3fk6#0",
            ExposureHow.CHANGED_ACCESS,
            "projects/prod-app/roles/editor/user:mallory@outside.example",
            "user:mallory@outside.example",
        ),
        (
            "-ppy2a1e3fk6#1",
            ExposureHow.CHANGED_ACCESS,
            "projects/prod-app/roles/iam.serviceAccountTokenCreator/group:contractors@outside.example"
            "#condition=" + found[1].target.object_id.rsplit("=", 1)[1],
            "group:contractors@outside.example",
        ),
    ]
    # the self-grant (alice) and the REMOVE delta are not there; the condition is part of the id
    assert len(found[1].target.object_id.rsplit("=", 1)[1]) == 12
    assert {binding_resource(e.target.object_id) for e in found} == {"projects/prod-app"}


def test_kms_create_names_the_new_key_and_a_signature_is_a_use() -> None:
    [created] = events("create_crypto_key")
    [signed] = events("asymmetric_sign")
    key = "projects/prod-app/locations/global/keyRings/release/cryptoKeys/release-signer"
    assert (created.how, created.target.kind, created.target.object_id) == (
        ExposureHow.CREATED,
        CredentialKind.KMS_KEY,
        key,
    )
    assert (signed.how, signed.action, signed.target.object_id) == (ExposureHow.USED, "AsymmetricSign", key)


def test_irrelevant_methods_and_entries_without_an_audit_log_are_skipped() -> None:
    entry = raw("access_secret_version")
    entry["protoPayload"]["methodName"] = "google.cloud.secretmanager.v1.SecretManagerService.GetSecret"
    assert entry_events(entry, "gcp") == []
    assert entry_events({"insertId": "t", "textPayload": "hello"}, "gcp") == []


@pytest.mark.parametrize("missing", ["insertId", "timestamp", "logName"])
def test_a_relevant_entry_without_a_required_field_is_malformed(missing: str) -> None:
    entry = raw("access_secret_version")
    del entry[missing]
    with pytest.raises(MalformedEntry, match="AccessSecretVersion entry"):
        entry_events(entry, "gcp")


def test_a_relevant_entry_without_its_resource_is_malformed() -> None:
    entry = raw("asymmetric_sign")
    del entry["protoPayload"]["resourceName"]
    with pytest.raises(MalformedEntry, match="resourceName"):
        entry_events(entry, "gcp")


# --- inventory -------------------------------------------------------------------------------

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _secret(**extra: Any) -> Any:
    from google.cloud import secretmanager_v1 as sm

    return sm.Secret(
        name="projects/123456789012/secrets/signing-key",
        create_time=T0,
        labels={"purpose": "signing"},
        annotations={"owner": "sec-team@example.com"},
        **extra,
    )


def _version(n: int, created: datetime, state: str) -> Any:
    from google.cloud import secretmanager_v1 as sm

    return sm.SecretVersion(
        name=f"projects/123456789012/secrets/signing-key/versions/{n}",
        create_time=created,
        state=getattr(sm.SecretVersion.State, state),
    )


SIGNING = (("purpose", "signing"),)


def test_a_secret_counts_from_its_oldest_enabled_version() -> None:
    versions = [
        _version(1, T0, "DESTROYED"),
        _version(2, T0 + timedelta(days=10), "ENABLED"),
        _version(3, T0 + timedelta(days=20), "DISABLED"),
        _version(4, T0 + timedelta(days=30), "ENABLED"),
    ]
    s = secret_state("gcp", "prod-app", _secret(), versions, ("owner",), SIGNING)
    assert s.secret_id == "projects/prod-app/secrets/signing-key"
    assert s.aliases == ("projects/123456789012/secrets/signing-key", "projects/prod-app/secrets/signing-key")
    assert (s.current_version_created_at, s.oldest_enabled_version_created_at) == (
        T0 + timedelta(days=30),
        T0 + timedelta(days=10),
    )
    assert (s.enabled, s.exportable, s.signing, s.owner, s.rotation_configured) == (
        True,
        True,
        True,
        "sec-team@example.com",
        False,
    )


def test_a_secret_without_an_enabled_version_is_disabled_and_unread_versions_say_nothing() -> None:
    gone = secret_state("gcp", "prod-app", _secret(), [_version(1, T0, "DISABLED")], ("owner",), SIGNING)
    assert gone.enabled is False
    unread = secret_state("gcp", "prod-app", _secret(), None, ("owner",), SIGNING)
    assert (unread.enabled, unread.current_version_created_at) == (True, None)


def test_a_rotation_schedule_is_rotation_configured() -> None:
    from google.cloud import secretmanager_v1 as sm

    s = secret_state(
        "gcp",
        "p",
        _secret(rotation=sm.Rotation(rotation_period=timedelta(days=30))),
        None,
        ("owner",),
        SIGNING,
    )
    assert s.rotation_configured is True


def _key(
    purpose: str, primary: int | None, versions: list[tuple[int, datetime, str, str]]
) -> tuple[Any, list[Any]]:
    from google.cloud import kms_v1

    name = "projects/prod-app/locations/global/keyRings/release/cryptoKeys/k"
    vs = [
        kms_v1.CryptoKeyVersion(
            name=f"{name}/cryptoKeyVersions/{n}",
            create_time=t,
            state=getattr(kms_v1.CryptoKeyVersion.CryptoKeyVersionState, s),
            import_job=job,
        )
        for n, t, s, job in versions
    ]
    extra: dict[str, Any] = {}
    if primary is not None:
        extra["primary"] = vs[primary - 1]
    key = kms_v1.CryptoKey(
        name=name,
        purpose=getattr(kms_v1.CryptoKey.CryptoKeyPurpose, purpose),
        create_time=T0,
        labels={"owner": "release-team"},
        **extra,
    )
    return key, vs


def test_a_symmetric_key_is_current_from_its_primary_and_usable_from_its_oldest_enabled_version() -> None:
    key, vs = _key(
        "ENCRYPT_DECRYPT",
        2,
        [
            (1, T0, "ENABLED", ""),
            (2, T0 + timedelta(days=5), "ENABLED", ""),
            (3, T0 + timedelta(days=9), "ENABLED", ""),
        ],
    )
    s = kms_state("gcp", "prod-app", key, vs, ("owner",))
    assert (s.current_version_created_at, s.oldest_enabled_version_created_at) == (T0 + timedelta(days=5), T0)
    assert (s.kind, s.signing, s.exportable, s.owner, s.enabled) == (
        CredentialKind.KMS_KEY,
        False,
        False,
        "release-team",
        True,
    )


def test_a_signing_key_without_primary_is_current_from_its_newest_enabled_version_and_imported_is_exportable() -> (
    None
):
    key, vs = _key(
        "ASYMMETRIC_SIGN",
        None,
        [
            (1, T0, "DESTROYED", "projects/p/locations/global/keyRings/r/importJobs/j"),
            (2, T0 + timedelta(days=3), "ENABLED", ""),
        ],
    )
    s = kms_state("gcp", "prod-app", key, vs, ("owner",))
    assert (s.current_version_created_at, s.oldest_enabled_version_created_at) == (
        T0 + timedelta(days=3),
        T0 + timedelta(days=3),
    )
    assert (s.signing, s.exportable) == (True, True)


def test_a_service_account_key_is_present_only_while_enabled_and_unexpired() -> None:
    from google.cloud import iam_admin_v1

    ref = ObjectRef(
        "p",
        CredentialKind.SERVICE_ACCOUNT_KEY,
        "projects/p/serviceAccounts/a@p.iam.gserviceaccount.com/keys/k",
    )
    now = datetime(2025, 6, 1, tzinfo=UTC)
    forever = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)

    def key(disabled: bool, until: datetime) -> Any:
        return iam_admin_v1.ServiceAccountKey(name=ref.object_id, disabled=disabled, valid_before_time=until)

    assert service_account_key_state("gcp", ref, key(False, forever), now).present is True
    assert service_account_key_state("gcp", ref, key(True, forever), now).detail == "disabled"
    assert service_account_key_state("gcp", ref, key(False, now - timedelta(days=1)), now).present is False
    assert service_account_key_state("gcp", ref, None, now).detail == "deleted"


def test_data_read_logging_reads_inherited_audit_configs_and_exemptions() -> None:
    from google.iam.v1 import policy_pb2

    def policy(service: str, log_type: int, exempted: tuple[str, ...] = ()) -> Any:
        config = policy_pb2.AuditConfig(
            service=service,
            audit_log_configs=[policy_pb2.AuditLogConfig(log_type=log_type, exempted_members=list(exempted))],
        )
        return policy_pb2.Policy(audit_configs=[config])

    read = policy_pb2.AuditLogConfig.LogType.DATA_READ
    write = policy_pb2.AuditLogConfig.LogType.DATA_WRITE
    assert data_read_logging([("projects/p", policy_pb2.Policy())], "secretmanager.googleapis.com") == (
        False,
        (),
    )
    assert (
        data_read_logging(
            [("projects/p", policy("secretmanager.googleapis.com", write))], "secretmanager.googleapis.com"
        )[0]
        is False
    )
    org = ("organizations/1", policy("allServices", read, ("user:alice@example.com",)))
    assert data_read_logging([("projects/p", policy_pb2.Policy()), org], "secretmanager.googleapis.com") == (
        True,
        ("user:alice@example.com",),
    )
    assert (
        data_read_logging(
            [("projects/p", policy("cloudkms.googleapis.com", read))], "secretmanager.googleapis.com"
        )[0]
        is False
    )


# --- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exposure", "key", "message"),
    [
        ({"kms_endpoint": "http://127.0.0.1:1"}, "kms_endpoint", "host:port"),
        ({"lookback": "a year"}, "lookback", "not a duration"),
        ({"signing_labels": ["purpose"]}, "signing_labels", "key=value"),
        ({"audit_log": True}, "audit_log", "unknown option"),
        ({"audit_logs": False, "secret_manager": False, "kms": False}, "audit_logs", "nothing to read"),
    ],
)
def test_a_bad_exposure_table_fails_building_the_source_naming_its_key(
    exposure: dict[str, Any], key: str, message: str, tmp_path: Path
) -> None:
    from connectors.gcp_iam import PLUGIN
    from offboard_audit.core.errors import ConfigError
    from offboard_audit.core.options import SourceOptions
    from offboard_audit.core.protocols import SourceContext

    table = {"name": "gcp", "type": "gcp_iam", "projects": ["p1"], "exposure": exposure}
    with pytest.raises(ConfigError, match=message) as err:
        PLUGIN.make_source(SourceOptions(table, prefix="sources[0]"), SourceContext(tmp_path))
    assert err.value.key == f"sources[0].exposure.{key}"


def test_no_exposure_table_means_no_exposure_reader(tmp_path: Path) -> None:
    from connectors.gcp_iam import PLUGIN
    from offboard_audit.core.options import SourceOptions
    from offboard_audit.core.protocols import SourceContext

    assert PLUGIN.make_exposure is not None
    table = {"name": "gcp", "type": "gcp_iam", "projects": ["p1"]}
    assert PLUGIN.make_exposure(SourceOptions(table, prefix="sources[0]"), SourceContext(tmp_path)) is None
