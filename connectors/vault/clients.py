"""The Vault / OpenBao client the source, the exposure reader and the revoker share.

:class:`VaultApi` wraps one ``hvac.Client`` (it speaks to Vault and OpenBao alike) with the four
calls the connector makes, by API path: ``read`` (GET), ``list`` (LIST), ``write`` (POST) and
``delete`` (DELETE). ``read`` and ``list`` give None / ``[]`` for a path that does not exist (404);
every other failure is a :class:`VaultCallError` naming the operation, the path and, for a
permission error, the ACL capability the tool's policy lacks.

Tests inject a ready client in ``ctx.clients[<source name>]`` (a ``VaultApi`` or an
``hvac.Client``). Otherwise the client is built on first use, never at import time: ``hvac`` is
imported then, the token taken from ``token_env`` or obtained by an AppRole login
(``role_id`` + ``secret_id_env``, ``auth/<approle_path>/login``), TLS verified against ``ca_cert``
or the system CAs.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from connectors.vault.settings import VaultSettings

# The capability each operation needs in a Vault ACL policy (for error messages).
CAPABILITY = {"read": "read", "list": "list", "write": "update", "delete": "delete"}


class VaultCallError(Exception):
    """One Vault API call failed (not a 404 on a read or list)."""

    def __init__(self, operation: str, path: str, cause: BaseException) -> None:
        self.operation = operation
        self.path = path
        self.cause = cause
        self.status = _status(cause)
        super().__init__(self._text())

    def _text(self) -> str:
        what = f"vault {self.operation} {self.path}"
        detail = " ".join(str(self.cause).split()) or type(self.cause).__name__
        if self.status == 403:
            need = CAPABILITY.get(self.operation, self.operation)
            return f"{what}: permission denied (the tool's policy needs {need!r} on {self.path})"
        return f"{what}: {type(self.cause).__name__}: {detail}"


def _status(exc: BaseException) -> int | None:
    # hvac maps HTTP statuses to exception classes; the class names are stable across versions.
    names = {cls.__name__ for cls in type(exc).__mro__}
    for name, status in (
        ("InvalidRequest", 400),
        ("Unauthorized", 401),
        ("Forbidden", 403),
        ("InvalidPath", 404),
        ("InternalServerError", 500),
        ("VaultDown", 503),
    ):
        if name in names:
            return status
    return None


class VaultApi:
    """Path-level access to one Vault/OpenBao server (see the module docstring)."""

    def __init__(self, settings: VaultSettings, client: Any = None) -> None:
        self.settings = settings
        self._client = client
        self._lock = threading.Lock()

    @classmethod
    def coerce(cls, settings: VaultSettings, injected: Any) -> VaultApi:
        """An injected ``VaultApi`` as it is, an injected ``hvac.Client`` wrapped, else a lazy one."""
        if isinstance(injected, VaultApi):
            return injected
        return cls(settings, injected)

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = _build(self.settings)
            return self._client

    def read(self, path: str) -> dict[str, Any] | None:
        """GET ``path``: the response's ``data``, or None when the path does not exist."""
        try:
            response = self.client.read(path)
        except Exception as exc:
            if _status(exc) == 404:
                return None
            raise VaultCallError("read", path, exc) from exc
        if response is None:
            return None
        data = response.get("data") if isinstance(response, Mapping) else None
        return dict(data) if isinstance(data, Mapping) else {}

    def list(self, path: str) -> list[str]:
        """LIST ``path``: its keys, ``[]`` when there are none (404)."""
        try:
            response = self.client.list(path)
        except Exception as exc:
            if _status(exc) == 404:
                return []
            raise VaultCallError("list", path, exc) from exc
        if not response:
            return []
        return [str(k) for k in (response.get("data") or {}).get("keys") or ()]

    def list_info(self, path: str) -> dict[str, Any]:
        """LIST ``path`` with its ``key_info`` (identity lists give names and aliases)."""
        try:
            response = self.client.list(path)
        except Exception as exc:
            if _status(exc) == 404:
                return {}
            raise VaultCallError("list", path, exc) from exc
        data = (response or {}).get("data") or {}
        info = data.get("key_info") or {}
        return {str(k): info.get(k) or {} for k in data.get("keys") or ()}

    def write(self, path: str, data: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """POST ``data`` to ``path``: the response's ``data`` (None for a 204)."""
        try:
            response = self.client.write_data(path, data=dict(data or {}))
        except Exception as exc:
            raise VaultCallError("write", path, exc) from exc
        if isinstance(response, Mapping):
            body = response.get("data")
            return dict(body) if isinstance(body, Mapping) else {}
        return None

    def delete(self, path: str) -> None:
        try:
            self.client.delete(path)
        except Exception as exc:
            raise VaultCallError("delete", path, exc) from exc


def _build(settings: VaultSettings) -> Any:
    import hvac  # the client library is needed only once a Vault source is used

    verify: bool | str = str(settings.ca_cert) if settings.ca_cert is not None else True
    client = hvac.Client(url=settings.url, verify=verify, namespace=settings.namespace or None)
    if settings.token is not None:
        client.token = settings.token
        return client
    if settings.role_id is None or settings.secret_id is None:
        raise VaultCallError(
            "login", settings.url, ValueError("no token_env or role_id + secret_id_env credentials")
        )
    try:
        client.auth.approle.login(
            role_id=settings.role_id, secret_id=settings.secret_id, mount_point=settings.approle_path
        )
    except Exception as exc:
        raise VaultCallError("write", f"auth/{settings.approle_path}/login", exc) from exc
    return client
