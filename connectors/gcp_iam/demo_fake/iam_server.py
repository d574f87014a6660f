"""A gRPC server for ``google.iam.admin.v1.IAM`` on 127.0.0.1, backed by a :class:`GcpFakeState`.

Built from generic handlers and the ``iam_admin_v1`` library's own message classes, so the
real ``IAMClient`` talks to it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent import futures
from datetime import UTC, datetime
from typing import Any

from connectors.gcp_iam.demo_fake.state import FakeApiError, FakeKey, FakeServiceAccount, GcpFakeState


def _sa_project_of(name: str) -> tuple[str, str]:
    """("P", "EMAIL") from projects/P/serviceAccounts/EMAIL[/keys/K]."""
    parts = name.split("/")
    if len(parts) >= 4 and parts[0] == "projects" and parts[2] == "serviceAccounts":
        return parts[1], parts[3]
    return "", ""


class FakeIamServer:
    """``google.iam.admin.v1.IAM`` over plaintext gRPC on 127.0.0.1, backed by a :class:`GcpFakeState`."""

    def __init__(self, state: GcpFakeState, max_workers: int = 16) -> None:
        self.state = state
        self.max_workers = max_workers
        self._server: Any = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> str:
        import grpc
        from google.cloud.iam_admin_v1 import types as t
        from google.protobuf import empty_pb2

        def handler(fn: Callable[[Any, Any], Any], req: Any, resp: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req.deserialize, response_serializer=resp.serialize
            )

        def empty_handler(fn: Callable[[Any, Any], Any], req: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                fn,
                request_deserializer=req.deserialize,
                response_serializer=empty_pb2.Empty.SerializeToString,
            )

        methods = {
            "ListServiceAccounts": handler(
                self._list_service_accounts, t.ListServiceAccountsRequest, t.ListServiceAccountsResponse
            ),
            "GetServiceAccount": handler(
                self._get_service_account, t.GetServiceAccountRequest, t.ServiceAccount
            ),
            "ListServiceAccountKeys": handler(
                self._list_keys, t.ListServiceAccountKeysRequest, t.ListServiceAccountKeysResponse
            ),
            "GetServiceAccountKey": handler(
                self._get_key, t.GetServiceAccountKeyRequest, t.ServiceAccountKey
            ),
            "DisableServiceAccountKey": empty_handler(self._disable_key, t.DisableServiceAccountKeyRequest),
            "EnableServiceAccountKey": empty_handler(self._enable_key, t.EnableServiceAccountKeyRequest),
            "DeleteServiceAccountKey": empty_handler(self._delete_key, t.DeleteServiceAccountKeyRequest),
            "DisableServiceAccount": empty_handler(self._disable_sa, t.DisableServiceAccountRequest),
            "EnableServiceAccount": empty_handler(self._enable_sa, t.EnableServiceAccountRequest),
        }
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self.max_workers))
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("google.iam.admin.v1.IAM", methods),)
        )
        self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        return self.endpoint

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(grace=None).wait()
            self._server = None

    # --- helpers -------------------------------------------------------------------------

    def _enter(self, method: str, project: str, context: Any) -> None:
        import grpc

        if project == "-":
            # "-" means "find the project from the account": the call is reported on the real one.
            return
        try:
            self.state.on_call(method, project)
        except FakeApiError as exc:
            context.abort(getattr(grpc.StatusCode, exc.code), exc.message)

    def _sa_or_abort(self, method: str, name: str, context: Any) -> FakeServiceAccount:
        import grpc

        project, ref = _sa_project_of(name)
        self._enter(method, project, context)
        self.state.before_lookup(method)
        sa = self.state.find_service_account(project, ref)
        if sa is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Service account {ref} does not exist.")
        assert sa is not None
        if project == "-":
            self._enter(method, sa.project, context)
        return sa

    def _key_or_abort(self, method: str, name: str, context: Any) -> tuple[FakeServiceAccount, FakeKey]:
        import grpc

        project, _ref = _sa_project_of(name)
        self._enter(method, project, context)
        self.state.before_lookup(method)
        found = self.state.find_key(name)
        if found is None:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Service account key {name} does not exist.")
        assert found is not None
        if project == "-":
            self._enter(method, found[0].project, context)
        return found

    @staticmethod
    def _sa_message(sa: FakeServiceAccount) -> Any:
        from google.cloud.iam_admin_v1 import types as t

        return t.ServiceAccount(
            name=sa.name,
            project_id=sa.project,
            unique_id=sa.unique_id,
            email=sa.email,
            display_name=sa.display_name,
            description=sa.description,
            disabled=sa.disabled,
            oauth2_client_id=sa.unique_id,
        )

    @staticmethod
    def _key_message(key: FakeKey) -> Any:
        from google.cloud.iam_admin_v1 import types as t

        kt = t.ListServiceAccountKeysRequest.KeyType
        return t.ServiceAccountKey(
            name=key.name,
            valid_after_time=key.created,
            valid_before_time=key.expires or datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
            key_type=kt.SYSTEM_MANAGED if key.system_managed else kt.USER_MANAGED,
            disabled=key.disabled,
            key_algorithm=t.ServiceAccountKeyAlgorithm.KEY_ALG_RSA_2048,
        )

    # --- methods -------------------------------------------------------------------------

    def _list_service_accounts(self, request: Any, context: Any) -> Any:
        import grpc
        from google.cloud.iam_admin_v1 import types as t

        project = request.name.removeprefix("projects/")
        self._enter("iam.ListServiceAccounts", project, context)
        with self.state.lock:
            if project not in self.state.projects:
                context.abort(grpc.StatusCode.NOT_FOUND, f"project {project} not found")
            accounts = sorted(
                (sa for sa in self.state.service_accounts.values() if sa.project == project),
                key=lambda s: s.email,
            )
            size = min(request.page_size or 100, self.state.page_size)
            start = int(request.page_token or 0)
            page = accounts[start : start + size]
            token = str(start + size) if start + size < len(accounts) else ""
            return t.ListServiceAccountsResponse(
                accounts=[self._sa_message(sa) for sa in page], next_page_token=token
            )

    def _get_service_account(self, request: Any, context: Any) -> Any:
        sa = self._sa_or_abort("iam.GetServiceAccount", request.name, context)
        with self.state.lock:
            return self._sa_message(sa)

    def _list_keys(self, request: Any, context: Any) -> Any:
        from google.cloud.iam_admin_v1 import types as t

        sa = self._sa_or_abort("iam.ListServiceAccountKeys", request.name, context)
        kt = t.ListServiceAccountKeysRequest.KeyType
        wanted = set(request.key_types) or {kt.USER_MANAGED, kt.SYSTEM_MANAGED}
        with self.state.lock:
            keys = [
                self._key_message(k)
                for k in sa.keys.values()
                if (kt.SYSTEM_MANAGED if k.system_managed else kt.USER_MANAGED) in wanted
            ]
        return t.ListServiceAccountKeysResponse(keys=keys)

    def _get_key(self, request: Any, context: Any) -> Any:
        _sa, key = self._key_or_abort("iam.GetServiceAccountKey", request.name, context)
        with self.state.lock:
            return self._key_message(key)

    def _set_disabled(self, found: FakeKey | FakeServiceAccount, disabled: bool) -> Any:
        from google.protobuf import empty_pb2

        with self.state.lock:
            found.disabled = disabled
        return empty_pb2.Empty()

    def _disable_key(self, request: Any, context: Any) -> Any:
        _sa, key = self._key_or_abort("iam.DisableServiceAccountKey", request.name, context)
        return self._set_disabled(key, True)

    def _enable_key(self, request: Any, context: Any) -> Any:
        _sa, key = self._key_or_abort("iam.EnableServiceAccountKey", request.name, context)
        return self._set_disabled(key, False)

    def _delete_key(self, request: Any, context: Any) -> Any:
        from google.protobuf import empty_pb2

        sa, key = self._key_or_abort("iam.DeleteServiceAccountKey", request.name, context)
        with self.state.lock:
            sa.keys.pop(key.key_id, None)
        return empty_pb2.Empty()

    def _disable_sa(self, request: Any, context: Any) -> Any:
        return self._set_disabled(self._sa_or_abort("iam.DisableServiceAccount", request.name, context), True)

    def _enable_sa(self, request: Any, context: Any) -> Any:
        return self._set_disabled(self._sa_or_abort("iam.EnableServiceAccount", request.name, context), False)
