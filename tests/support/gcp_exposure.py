"""Local fakes of Cloud Logging, Secret Manager and Cloud KMS (one plaintext gRPC server on
127.0.0.1), with the tests' knobs, for the ``gcp_iam`` exposure reader.

The real ``google-cloud-logging``, ``google-cloud-secret-manager`` and ``google-cloud-kms``
clients talk to it unchanged: the handlers (de)serialize with the libraries' own message types.
Log entries are kept in their documented JSON shape (``insertId``, ``logName``, ``timestamp``,
``resource``, ``protoPayload`` = an ``AuditLog``) and served as ``LogEntry`` messages whose
``proto_payload`` is a ``google.protobuf.Any`` packing the ``AuditLog``.

``entries.list`` honours ``resource_names``, the filter clauses the reader sends
(``timestamp>=``/``<=``, ``protoPayload.methodName="..."`` and ``:"..."``), ``order_by``
``timestamp asc`` and paging. Secret names carry the project **number**, as the real API's do.

Knobs: ``calls`` (Counter of (method, resource)), ``log_requests`` (every ListLogEntries request),
``failures`` ((method, resource) -> gRPC status name), ``fail_log_page`` (resource -> page number
that fails), ``log_page_size``. The IAM Admin and Resource Manager side is ``tests/support/gcp.py``'s
fake, whose project policies here also carry ``auditConfigs`` (``audit_configs``).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.gcp_iam.demo_fake.state import rfc3339
from tests.support import gcp as gcp_support

SM = "google.cloud.secretmanager.v1.SecretManagerService."
ACTIVITY = "cloudaudit.googleapis.com%2Factivity"
DATA_ACCESS = "cloudaudit.googleapis.com%2Fdata_access"


@dataclass
class FakeSecretVersion:
    number: int
    created: datetime
    state: str = "ENABLED"  # ENABLED | DISABLED | DESTROYED


@dataclass
class FakeSecret:
    project_number: str
    secret_id: str
    created: datetime
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    versions: list[FakeSecretVersion] = field(default_factory=list)
    # (role, member) pairs of the secret's own IAM policy
    bindings: list[tuple[str, str]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"projects/{self.project_number}/secrets/{self.secret_id}"


@dataclass
class FakeKeyVersion:
    number: int
    created: datetime
    state: str = "ENABLED"  # ENABLED | DISABLED | DESTROYED | DESTROY_SCHEDULED
    import_job: str = ""


@dataclass
class FakeCryptoKey:
    name: str  # projects/<id>/locations/<l>/keyRings/<r>/cryptoKeys/<k>
    purpose: str  # ENCRYPT_DECRYPT | ASYMMETRIC_SIGN | MAC
    created: datetime
    labels: dict[str, str] = field(default_factory=dict)
    versions: list[FakeKeyVersion] = field(default_factory=list)
    primary: int | None = None  # version number (ENCRYPT_DECRYPT keys only)
    rotation_days: int = 0
    bindings: list[tuple[str, str]] = field(default_factory=list)


class ExposureFakeState(gcp_support.GcpFakeState):
    """The IAM/Resource Manager fake state plus logs, secrets, keys and the exposure knobs."""

    def __init__(self, page_size: int = 100) -> None:
        super().__init__(page_size)
        # resource ("projects/P", "organizations/N") -> entries in their JSON shape
        self.logs: dict[str, list[dict[str, Any]]] = {}
        self.secrets: dict[str, FakeSecret] = {}
        self.keys: dict[str, FakeCryptoKey] = {}
        # project id -> the auditConfigs of its IAM policy (JSON shape)
        self.audit_configs: dict[str, list[dict[str, Any]]] = {}
        self.log_page_size = 1000
        self.log_requests: list[Any] = []
        self.exposure_calls: Counter[tuple[str, str]] = Counter()
        # (method, resource) -> gRPC status name; resource "*" matches every resource
        self.exposure_failures: dict[tuple[str, str], str] = {}
        # resource -> the page number (1-based) of entries.list that fails with RESOURCE_EXHAUSTED
        # (quota: not retried, unlike UNAVAILABLE which the reader retries within its timeout)
        self.fail_log_page: dict[str, int] = {}
        self._insert = 0

    # --- seeding ----------------------------------------------------------------------------

    def number_of(self, project: str) -> str:
        return self.projects[project].number

    def add_secret(
        self,
        project: str,
        secret_id: str,
        created: datetime,
        versions: list[tuple[datetime, str]],
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> FakeSecret:
        """A secret with versions 1..n ((create time, state) each), named by project number."""
        with self.lock:
            secret = FakeSecret(
                self.number_of(project),
                secret_id,
                created,
                dict(labels or {}),
                dict(annotations or {}),
                [FakeSecretVersion(i + 1, t, s) for i, (t, s) in enumerate(versions)],
            )
            self.secrets[secret.name] = secret
            return secret

    def add_crypto_key(
        self,
        project: str,
        ring: str,
        key_id: str,
        purpose: str,
        created: datetime,
        versions: list[tuple[datetime, str]],
        primary: int | None = None,
        labels: dict[str, str] | None = None,
    ) -> FakeCryptoKey:
        with self.lock:
            name = f"projects/{project}/locations/global/keyRings/{ring}/cryptoKeys/{key_id}"
            key = FakeCryptoKey(
                name,
                purpose,
                created,
                dict(labels or {}),
                [FakeKeyVersion(i + 1, t, s) for i, (t, s) in enumerate(versions)],
                primary,
            )
            self.keys[name] = key
            return key

    def enable_data_access(
        self, project: str, service: str = "allServices", exempted: list[str] | None = None
    ) -> None:
        config: dict[str, Any] = {"logType": "DATA_READ"}
        if exempted:
            config["exemptedMembers"] = list(exempted)
        with self.lock:
            self.audit_configs.setdefault(project, []).append(
                {"service": service, "auditLogConfigs": [config]}
            )

    def audit_entry(
        self,
        resource: str,
        at: datetime,
        service: str,
        method: str,
        principal: str,
        resource_name: str,
        *,
        status_code: int = 0,
        request: dict[str, Any] | None = None,
        response: dict[str, Any] | None = None,
        delegated_by: str | None = None,
        binding_deltas: list[dict[str, Any]] | None = None,
        log: str = ACTIVITY,
        insert_id: str | None = None,
    ) -> dict[str, Any]:
        """Append one audit-log entry (documented JSON shape) to ``resource``'s logs."""
        with self.lock:
            self._insert += 1
            auth: dict[str, Any] = {"principalEmail": principal}
            if delegated_by:
                auth["serviceAccountDelegationInfo"] = [
                    {"firstPartyPrincipal": {"principalEmail": delegated_by}}
                ]
            payload: dict[str, Any] = {
                "@type": "type.googleapis.com/google.cloud.audit.AuditLog",
                "serviceName": service,
                "methodName": method,
                "resourceName": resource_name,
                "authenticationInfo": auth,
                "requestMetadata": {"callerIp": "10.1.2.3"},
            }
            if status_code:
                payload["status"] = {"code": status_code, "message": "PERMISSION_DENIED"}
            if request is not None:
                payload["request"] = request
            if response is not None:
                payload["response"] = response
            if binding_deltas is not None:
                payload["serviceData"] = {
                    "@type": "type.googleapis.com/google.iam.v1.logging.AuditData",
                    "policyDelta": {"bindingDeltas": binding_deltas},
                }
            project_label = resource.split("/", 1)[1] if resource.startswith("projects/") else ""
            entry = {
                "insertId": insert_id or f"ins{self._insert:06d}",
                "logName": f"{resource}/logs/{log}",
                "timestamp": rfc3339(at),
                "receiveTimestamp": rfc3339(at),
                "severity": "NOTICE" if log == ACTIVITY else "INFO",
                "resource": {
                    "type": "audited_resource",
                    "labels": {"project_id": project_label, "service": service},
                },
                "protoPayload": payload,
            }
            self.logs.setdefault(resource, []).append(entry)
            return entry

    # --- knobs ------------------------------------------------------------------------------

    def on_exposure_call(self, method: str, resource: str) -> str | None:
        """Count the call; the status name to fail it with, if a failure is injected."""
        with self.lock:
            self.exposure_calls[(method, resource)] += 1
            return self.exposure_failures.get((method, resource)) or self.exposure_failures.get((method, "*"))

    def exposure_calls_of(self, method: str) -> int:
        with self.lock:
            return sum(n for (m, _r), n in self.exposure_calls.items() if m == method)


# --- the filter subset the reader sends ---------------------------------------------------------

_TS_GE = re.compile(r'timestamp>="([^"]+)"')
_TS_LE = re.compile(r'timestamp<="([^"]+)"')
_METHOD = re.compile(r'protoPayload\.methodName(=|:)"([^"]+)"')


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _entry_ts(entry: dict[str, Any]) -> datetime:
    text = entry["timestamp"].replace("Z", "+00:00")
    m = re.match(r"^(.*?\.\d{6})\d*(.*)$", text)
    return datetime.fromisoformat(m.group(1) + m.group(2) if m else text)


def matches(entry: dict[str, Any], flt: str) -> bool:
    at = _entry_ts(entry)
    lo = _TS_GE.search(flt)
    hi = _TS_LE.search(flt)
    if lo and at < _ts(lo.group(1)):
        return False
    if hi and at > _ts(hi.group(1)):
        return False
    clauses = _METHOD.findall(flt)
    if clauses:
        method = str(entry.get("protoPayload", {}).get("methodName", ""))
        return any(method == v if op == "=" else v in method for op, v in clauses)
    return True


# --- the server ----------------------------------------------------------------------------------


class FakeExposureServer:
    """LoggingServiceV2, SecretManagerService and KeyManagementService on one 127.0.0.1 port."""

    def __init__(self, state: ExposureFakeState) -> None:
        self.state = state
        self._server: Any = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> str:
        import grpc
        from google.cloud import kms_v1, secretmanager_v1
        from google.cloud.logging_v2 import types as lt
        from google.iam.v1 import iam_policy_pb2, policy_pb2

        def h(fn: Callable[[Any, Any], Any], req: Any, resp: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req.deserialize, response_serializer=resp.serialize
            )

        def h_pb(fn: Callable[[Any, Any], Any]) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                fn,
                request_deserializer=iam_policy_pb2.GetIamPolicyRequest.FromString,
                response_serializer=policy_pb2.Policy.SerializeToString,
            )

        sm = secretmanager_v1
        logging_methods = {
            "ListLogEntries": h(self._list_entries, lt.ListLogEntriesRequest, lt.ListLogEntriesResponse)
        }
        secret_methods = {
            "ListSecrets": h(self._list_secrets, sm.ListSecretsRequest, sm.ListSecretsResponse),
            "ListSecretVersions": h(
                self._list_versions, sm.ListSecretVersionsRequest, sm.ListSecretVersionsResponse
            ),
            "AccessSecretVersion": h(
                self._access, sm.AccessSecretVersionRequest, sm.AccessSecretVersionResponse
            ),
            "GetIamPolicy": h_pb(self._secret_policy),
        }
        kms_methods = {
            "GetCryptoKey": h(self._get_key, kms_v1.GetCryptoKeyRequest, kms_v1.CryptoKey),
            "ListCryptoKeyVersions": h(
                self._list_key_versions,
                kms_v1.ListCryptoKeyVersionsRequest,
                kms_v1.ListCryptoKeyVersionsResponse,
            ),
            "GetIamPolicy": h_pb(self._key_policy),
        }
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler("google.logging.v2.LoggingServiceV2", logging_methods),
                grpc.method_handlers_generic_handler(
                    "google.cloud.secretmanager.v1.SecretManagerService", secret_methods
                ),
                grpc.method_handlers_generic_handler("google.cloud.kms.v1.KeyManagementService", kms_methods),
            )
        )
        self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        return self.endpoint

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    def _enter(self, method: str, resource: str, context: Any) -> None:
        import grpc

        failure = self.state.on_exposure_call(method, resource)
        if failure:
            context.abort(getattr(grpc.StatusCode, failure), f"injected {failure} on {method} {resource}")

    # --- Logging ----------------------------------------------------------------------------

    def _list_entries(self, request: Any, context: Any) -> Any:
        import grpc
        from google.cloud.logging_v2 import types as lt

        resource = ",".join(request.resource_names)
        self._enter("logging.ListLogEntries", resource, context)
        page_no = int(request.page_token or 0) // max(1, self._page_size(request)) + 1
        with self.state.lock:
            self.state.log_requests.append(request)
            if self.state.fail_log_page.get(resource) == page_no:
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"injected quota error on page {page_no} of {resource}",
                )
            found = [
                e
                for r in request.resource_names
                for e in self.state.logs.get(r, [])
                if matches(e, request.filter)
            ]
        found.sort(key=_entry_ts)
        size = self._page_size(request)
        start = int(request.page_token or 0)
        page = found[start : start + size]
        token = str(start + size) if start + size < len(found) else ""
        entries = [lt.LogEntry.from_json(json.dumps(e)) for e in page]
        return lt.ListLogEntriesResponse(entries=entries, next_page_token=token)

    def _page_size(self, request: Any) -> int:
        return min(request.page_size or 50, self.state.log_page_size)

    # --- Secret Manager ---------------------------------------------------------------------

    @staticmethod
    def _secret_message(secret: FakeSecret) -> Any:
        from google.cloud import secretmanager_v1 as sm

        return sm.Secret(
            name=secret.name,
            create_time=secret.created,
            labels=secret.labels,
            annotations=secret.annotations,
            replication=sm.Replication(automatic=sm.Replication.Automatic()),
        )

    def _list_secrets(self, request: Any, context: Any) -> Any:
        from google.cloud import secretmanager_v1 as sm

        project = request.parent.removeprefix("projects/")
        self._enter("secretmanager.ListSecrets", project, context)
        with self.state.lock:
            number = self.state.projects[project].number if project in self.state.projects else project
            mine = sorted(
                (s for s in self.state.secrets.values() if s.project_number == number), key=lambda s: s.name
            )
            size = min(request.page_size or 25, 25)
            start = int(request.page_token or 0)
            page = mine[start : start + size]
            token = str(start + size) if start + size < len(mine) else ""
            return sm.ListSecretsResponse(
                secrets=[self._secret_message(s) for s in page], next_page_token=token, total_size=len(mine)
            )

    def _list_versions(self, request: Any, context: Any) -> Any:
        import grpc
        from google.cloud import secretmanager_v1 as sm

        self._enter("secretmanager.ListSecretVersions", request.parent, context)
        with self.state.lock:
            secret = self.state.secrets.get(request.parent)
            if secret is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Secret [{request.parent}] not found.")
            assert secret is not None
            versions = sorted(secret.versions, key=lambda v: -v.number)
            return sm.ListSecretVersionsResponse(
                versions=[
                    sm.SecretVersion(
                        name=f"{secret.name}/versions/{v.number}",
                        create_time=v.created,
                        state=getattr(sm.SecretVersion.State, v.state),
                        **({"destroy_time": v.created} if v.state == "DESTROYED" else {}),
                    )
                    for v in versions
                ],
                total_size=len(versions),
            )

    def _access(self, request: Any, context: Any) -> Any:
        import grpc

        # The reader must never ask for a value: counted, and refused.
        self._enter("secretmanager.AccessSecretVersion", request.name, context)
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "the fake serves no secret values")

    def _secret_policy(self, request: Any, context: Any) -> Any:
        import grpc

        self._enter("secretmanager.GetIamPolicy", request.resource, context)
        with self.state.lock:
            secret = self._find_secret(request.resource)
            if secret is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Secret [{request.resource}] not found.")
            assert secret is not None
            return _policy(secret.bindings)

    def _find_secret(self, name: str) -> FakeSecret | None:
        found = self.state.secrets.get(name)
        if found is not None:
            return found
        m = re.match(r"^projects/([^/]+)/secrets/([^/]+)$", name)
        if m and m.group(1) in self.state.projects:
            return self.state.secrets.get(
                f"projects/{self.state.projects[m.group(1)].number}/secrets/{m.group(2)}"
            )
        return None

    # --- KMS --------------------------------------------------------------------------------

    @staticmethod
    def _version_message(key: FakeCryptoKey, v: FakeKeyVersion) -> Any:
        from google.cloud import kms_v1

        s = kms_v1.CryptoKeyVersion.CryptoKeyVersionState
        return kms_v1.CryptoKeyVersion(
            name=f"{key.name}/cryptoKeyVersions/{v.number}",
            state=getattr(s, v.state),
            create_time=v.created,
            protection_level=kms_v1.ProtectionLevel.HSM,
            import_job=v.import_job,
        )

    def _get_key(self, request: Any, context: Any) -> Any:
        import grpc
        from google.cloud import kms_v1

        self._enter("kms.GetCryptoKey", request.name, context)
        with self.state.lock:
            key = self.state.keys.get(request.name)
            if key is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"{request.name} not found.")
            assert key is not None
            primary = None
            if key.primary is not None:
                primary = self._version_message(key, next(v for v in key.versions if v.number == key.primary))
            msg = kms_v1.CryptoKey(
                name=key.name,
                purpose=getattr(kms_v1.CryptoKey.CryptoKeyPurpose, key.purpose),
                create_time=key.created,
                labels=key.labels,
                **({"primary": primary} if primary is not None else {}),
            )
            if key.rotation_days:
                msg.rotation_period = {"seconds": key.rotation_days * 86400}
            return msg

    def _list_key_versions(self, request: Any, context: Any) -> Any:
        import grpc
        from google.cloud import kms_v1

        self._enter("kms.ListCryptoKeyVersions", request.parent, context)
        with self.state.lock:
            key = self.state.keys.get(request.parent)
            if key is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"{request.parent} not found.")
            assert key is not None
            return kms_v1.ListCryptoKeyVersionsResponse(
                crypto_key_versions=[self._version_message(key, v) for v in key.versions],
                total_size=len(key.versions),
            )

    def _key_policy(self, request: Any, context: Any) -> Any:
        import grpc

        self._enter("kms.GetIamPolicy", request.resource, context)
        with self.state.lock:
            key = self.state.keys.get(request.resource)
            if key is None:
                context.abort(grpc.StatusCode.NOT_FOUND, f"{request.resource} not found.")
            assert key is not None
            return _policy(key.bindings)


def _policy(bindings: list[tuple[str, str]]) -> Any:
    from google.iam.v1 import policy_pb2

    by_role: dict[str, list[str]] = {}
    for role, member in bindings:
        by_role.setdefault(role, []).append(member)
    return policy_pb2.Policy(
        version=1, bindings=[policy_pb2.Binding(role=r, members=m) for r, m in sorted(by_role.items())]
    )


class _AuditConfigRest(gcp_support.FakeGcp.rest_server_class):
    """Resource Manager REST whose project policies carry the state's ``auditConfigs``."""

    state: ExposureFakeState

    def route(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        status, reply = super().route(method, path, body)
        m = re.match(r"^/v3/projects/([^/:]+):getIamPolicy", path)
        if m and status == 200:
            project = self.state.project(m.group(1))
            configs = self.state.audit_configs.get(project.project_id if project else m.group(1))
            if configs:
                reply = dict(reply, auditConfigs=configs)
        return status, reply


class ExposureFake(gcp_support.FakeGcp):
    """IAM Admin + Resource Manager (``tests/support/gcp.py``) and the exposure gRPC server."""

    rest_server_class = _AuditConfigRest
    state: ExposureFakeState

    def __init__(self) -> None:
        super().__init__(ExposureFakeState())
        self.exposure = FakeExposureServer(self.state)

    def start(self) -> ExposureFake:
        super().start()
        try:
            self.exposure.start()
        except BaseException:
            super().stop()
            raise
        return self

    def stop(self) -> None:
        self.exposure.stop()
        super().stop()

    def source_table(self, name: str, **extra: Any) -> dict[str, Any]:
        """A ``gcp_iam`` table with an ``exposure`` sub-table pointing at every fake."""
        exposure = {
            "logging_endpoint": self.exposure.endpoint,
            "secret_manager_endpoint": self.exposure.endpoint,
            "kms_endpoint": self.exposure.endpoint,
            "overlap": "0s",
        }
        exposure.update(extra.pop("exposure", {}))
        return super().source_table(name, exposure=exposure, **extra)


@pytest.fixture
def gcp_exposure_fake() -> Iterator[ExposureFake]:
    fake = ExposureFake().start()
    try:
        yield fake
    finally:
        fake.stop()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)
